"""Fine-tuning a saved property model on new labels (``elprop train --init-model DIR``).

The new data keep the saved model's targets and units; targets the new file lacks (e.g. α in a label file) are
masked in the loss. Every member starts from its saved weights, and the target scaler is the saved one, so the
outputs keep their meaning. A replay sample of the base model's own training molecules joins the training (and
a tenth of that many of its validation molecules join the validation), so accuracy on the old domain does not
collapse while the model learns the new one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from elprop.core.dataset import Dataset, InputError


def base_data(cfg: dict) -> str | None:
    """The data a saved model was trained on, as ``load_data`` names it (``qm9`` for the embedded QM9)."""
    data = str(cfg.get("data") or "")
    return "qm9" if data.lower().startswith("qm9") else (data or None)


def replay_info(base_dir: Path, cfg: dict) -> dict | None:
    """What a model fine-tuned from this one replays, saved in its config as ``replay``: the original data and
    the recipe of its split, inherited through every fine-tuning (a fine-tuned model's own data and split are a
    mix of new and replayed molecules, which cannot be replayed again)."""
    if cfg.get("replay"):
        return dict(cfg["replay"])
    data, spec = base_data(cfg), split_recipe(base_dir, cfg)
    return {"data": data, "split": spec} if data and spec else None


def split_recipe(base_dir: Path, cfg: dict) -> dict | None:
    """The saved recipe of a model's random split (``split_spec``), or, for the first shipped model, which
    predates it, the recipe from its config's sizes (``base_split`` checks it against its test_indices.json).
    None when the split was not a reproducible random one."""
    spec = cfg.get("split_spec")
    if spec is None and (base_dir / "test_indices.json").is_file():
        spec = {"kind": "random", "n_train": cfg.get("domain", {}).get("n_train"), "n_val": 10000,
                "seed": cfg.get("split_seed", 0)}
    return spec if spec and spec.get("kind") == "random" and spec.get("n_train") else None


def base_split(base_dir: Path, cfg: dict, n: int) -> dict:
    """The base model's train/val/test indices of its data: the recipe it carries from an earlier fine-tuning
    (``replay``), else ``split.json`` beside the model folder (a run) or inside it, else its saved split recipe
    (``split_spec``), else (the first shipped model) a random split with the config's sizes, checked against its
    ``test_indices.json``."""
    from elprop.data.splits import load_split, random_split
    if cfg.get("replay"):
        spec = cfg["replay"]["split"]
        return random_split(n, int(spec["n_train"]), int(spec["n_val"]), int(spec["seed"]))
    for p in (base_dir / "split.json", base_dir.parent / "split.json"):
        if p.is_file():
            return load_split(p, n)
    spec = split_recipe(base_dir, cfg)
    if spec is None:
        raise InputError(f"{base_dir}: no split.json or split recipe, so its training molecules (to replay) are "
                         "unknown; give --replay 0")
    sp = random_split(n, int(spec["n_train"]), int(spec["n_val"]), int(spec["seed"]))
    test_path = base_dir / "test_indices.json"
    if test_path.is_file():
        saved = json.loads(test_path.read_text())
        test = np.sort(np.asarray(saved["test"] if isinstance(saved, dict) else saved, dtype=np.int64))
        if not np.array_equal(test, sp["test"]):
            raise InputError(f"{base_dir}: its split recipe does not reproduce test_indices.json; give --replay 0")
    return sp


def write_base_split(base_dir, path) -> None:
    """Write the training/validation/test indices of a saved model's data (``base_split``) to ``path``."""
    from elprop.data.load import DataSpec, load_data
    from elprop.data.splits import save_split
    from elprop.train.saved import read_config
    base_dir = Path(base_dir)
    cfg = read_config(base_dir)
    n = len(load_data(DataSpec(base_data(cfg))))
    save_split(base_split(base_dir, cfg, n), path)


def with_targets(ds: Dataset, targets: list[str], units: dict) -> Dataset:
    """``ds`` with exactly the columns ``targets`` (NaN where ``ds`` lacks one); refuses other units."""
    have = [t for t in targets if t in ds.target_names]
    if not have:
        raise InputError(f"{ds.source}: none of the model's targets ({', '.join(targets)}) is in the data; it has "
                         f"{', '.join(ds.target_names) or 'no target columns'}")
    for t in have:
        u = (ds.target_units or {}).get(t)
        if u and u != units.get(t):
            raise InputError(f"{ds.source}: target {t} is in {u}, the model's in {units.get(t)}")
    y = np.full((len(ds), len(targets)), np.nan)
    for k, t in enumerate(targets):
        if t in ds.target_names:
            y[:, k] = ds.target(t)
    return Dataset(ds.z, ds.pos, ds.offsets, ds.smiles, ds.names, y, list(targets), ds.source,
                   target_units={t: units[t] for t in targets if t in units})


def concat(parts: list[Dataset], source: str) -> Dataset:
    """One Dataset from several with the same target columns (positions kept only if every part has them)."""
    has_pos = all(p.pos is not None for p in parts)
    z = np.concatenate([p.z for p in parts])
    pos = np.concatenate([p.pos for p in parts]) if has_pos else None
    sizes = np.concatenate([np.diff(p.offsets) for p in parts])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return Dataset(z, pos, offsets, np.concatenate([np.asarray(p.smiles, dtype=object) for p in parts]),
                   np.concatenate([np.asarray(p.names, dtype=object) for p in parts]),
                   np.concatenate([p.y for p in parts]), list(parts[0].target_names), source,
                   target_units=parts[0].target_units)


def oversample_new(train: np.ndarray, n_new_rows: int, n_replay: int, fraction: float) -> tuple[np.ndarray, int]:
    """Training rows with each new one (row < ``n_new_rows``) repeated k times, k the smallest count for which the
    new molecules make up at least ``fraction`` of an epoch beside ``n_replay`` replayed ones. Returns (rows, k)."""
    train = np.asarray(train, dtype=np.int64)
    new = train[train < n_new_rows]
    if not len(new) or not n_replay or fraction <= 0:
        return train, 1
    k = max(1, int(np.ceil(fraction * n_replay / ((1 - fraction) * len(new)))))
    return np.concatenate([np.repeat(new, k), train[train >= n_new_rows]]), k


def replay_data(base, base_dir: Path, n_replay: int, source: str | None, seed: int, log=print):
    """(train part, val part) of the base model's own data: ``n_replay`` training molecules and a tenth as many
    validation molecules, seeded."""
    from elprop.data.load import DataSpec, load_data
    cfg = base.saved_config
    src = source or (cfg.get("replay") or {}).get("data") or base_data(cfg)
    if not src:
        raise InputError(f"{base_dir}: the model does not say which data it was trained on; give --replay-data")
    old = load_data(DataSpec(src))
    sp = base_split(base_dir, cfg, len(old))
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.choice(sp["train"], min(n_replay, len(sp["train"])), replace=False))
    va_n = min(max(1, n_replay // 10), len(sp.get("val", [])))
    va = np.sort(rng.choice(sp["val"], va_n, replace=False)) if va_n else np.zeros(0, np.int64)
    log(f"replay: {len(tr)} training and {len(va)} validation molecules of {src} (the base model's split)")
    targets, units = base.config["targets"], {t.name: t.unit for t in base.specs}
    return with_targets(old.subset(tr), targets, units), with_targets(old.subset(va), targets, units)

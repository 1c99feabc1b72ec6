"""Train/validation/test splits: seeded random, Bemis-Murcko scaffold, or index files. Saved with every run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from elprop.core.cache import atomic_write
from elprop.core.dataset import InputError


def _sizes(n: int, n_train, n_val) -> tuple[int, int]:
    def resolve(v):
        return int(round(v * n)) if isinstance(v, float) and v <= 1.0 else int(v)
    tr, va = resolve(n_train), resolve(n_val)
    if tr + va > n or tr <= 0:
        raise InputError(f"split sizes train={tr}, val={va} do not fit {n} molecules")
    return tr, va


def random_split(n: int, n_train=0.8, n_val=0.1, seed: int = 0, n_test=None) -> dict[str, np.ndarray]:
    tr, va = _sizes(n, n_train, n_val)
    perm = np.random.default_rng(seed).permutation(n)
    te = n - tr - va if n_test is None else int(n_test)
    return {"train": np.sort(perm[:tr]), "val": np.sort(perm[tr:tr + va]), "test": np.sort(perm[tr + va:tr + va + te])}


def scaffold_split(smiles, n_train=0.8, n_val=0.1, seed: int = 0) -> dict[str, np.ndarray]:
    """Bemis-Murcko scaffold split: whole scaffold groups go to one side. Large groups fill train first, the
    rest are shuffled (seeded) into validation and test, so test scaffolds are unseen in training."""
    from elprop.chem.rdkit_utils import murcko_scaffold

    n = len(smiles)
    tr, va = _sizes(n, n_train, n_val)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        groups.setdefault(murcko_scaffold(s), []).append(i)
    rng = np.random.default_rng(seed)
    big = sorted((g for g in groups.values() if len(g) > (va / 2)), key=len, reverse=True)
    small = [g for g in groups.values() if len(g) <= (va / 2)]
    order = big + [small[i] for i in rng.permutation(len(small))]
    out = {"train": [], "val": [], "test": []}
    for g in order:
        key = "train" if len(out["train"]) + len(g) <= tr else ("val" if len(out["val"]) + len(g) <= va else "test")
        out[key].extend(g)
    return {k: np.sort(np.array(v, dtype=np.int64)) for k, v in out.items()}


def save_split(split: dict[str, np.ndarray], path) -> None:
    data = {k: [int(i) for i in v] for k, v in split.items()}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data)))


def load_split(path, n: int | None = None) -> dict[str, np.ndarray]:
    """A split file: JSON ``{"train": [...], "val": [...], "test": [...]}`` or ``.npz`` with those arrays."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: split file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path) as f:
                split = {k: np.asarray(f[k], dtype=np.int64) for k in ("train", "val", "test") if k in f}
        else:
            split = {k: np.asarray(v, dtype=np.int64) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: not a split file ({e})") from None
    if not split or not set(split) & {"train", "val", "test"}:
        raise InputError(f"{path}: split file has none of 'train', 'val', 'test'")
    for k, v in split.items():
        if n is not None and len(v) and (v.min() < 0 or v.max() >= n):
            raise InputError(f"{path}: '{k}' indices out of range for {n} molecules")
    return split


def make_split(kind: str, n: int, smiles=None, n_train=0.8, n_val=0.1, seed: int = 0, path=None):
    if kind == "random":
        return random_split(n, n_train, n_val, seed)
    if kind == "scaffold":
        return scaffold_split(smiles, n_train, n_val, seed)
    if kind == "file":
        return load_split(path, n)
    raise InputError(f"unknown split {kind!r}; use random, scaffold or file")


def rows_of(indices, ds, where: str = "split") -> np.ndarray:
    """Indices of the full data (a store's records, the uncut file's molecules) -> rows of ``ds``, which may be
    a cut of it (``ds.parent_index``). An index that is not among ``ds``'s molecules is an input error."""
    idx = np.asarray(indices, dtype=np.int64)
    if ds.parent_index is None:
        bad = idx[(idx < 0) | (idx >= len(ds))]
        rows = idx
    else:
        order = np.argsort(ds.parent_index, kind="stable")
        sorted_pi = ds.parent_index[order]
        pos = np.clip(np.searchsorted(sorted_pi, idx), 0, max(len(sorted_pi) - 1, 0))
        hit = sorted_pi[pos] == idx if len(sorted_pi) else np.zeros(len(idx), bool)
        bad = idx[~hit]
        rows = order[pos]
    if len(bad):
        raise InputError(f"{where}: index {int(bad[0])} (and {len(bad) - 1} more) is not among the "
                         f"{len(ds)} molecules of the data" if len(bad) > 1 else
                         f"{where}: index {int(bad[0])} is not among the {len(ds)} molecules of the data")
    return rows

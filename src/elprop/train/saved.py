"""Saved models: one folder, one format for every family.

A saved model is a directory with ``config.json`` (the family under ``"model"``, its options, targets with units),
the weights as ``member_<k>.safetensors`` (torch families) or the library's native text format (LightGBM, JSON),
never pickle, and ``card.md`` (data, split, metrics with units, versions). ``load_model(path)`` reads the family
from the config and returns that family's estimator.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from elprop.core.cache import atomic_write
from elprop.core.dataset import InputError


def read_config(path) -> dict:
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise InputError(f"{path}: not a saved elprop model (no config.json)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise InputError(f"{cfg_path}: malformed config ({e})") from None
    if isinstance(cfg, dict) and "model" not in cfg and "kind" in cfg:  # a materials model's config
        return cfg
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise InputError(f"{cfg_path}: not an elprop model config (no 'model' entry)")
    return cfg


def write_model_dir(path, config: dict, members: list, card: str | None = None, arrays: dict | None = None) -> Path:
    """Write ``config.json`` (with versions and the time), one ``member_<k>.safetensors`` per state dict in
    ``members``, ``domain.safetensors`` from the numpy ``arrays`` (the applicability domain), and ``card.md``;
    every file atomically. Member files beyond ``members`` (from an earlier, larger ensemble) are removed."""
    import torch
    from safetensors.torch import save_file

    from elprop import __version__
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for k, sd in enumerate(members):
        sd = {n: p.detach().cpu().contiguous() for n, p in sd.items()}
        atomic_write(path / f"member_{k}.safetensors", lambda tmp, sd=sd: save_file(sd, tmp))
    for old in path.glob("member_*.safetensors"):
        if int(old.stem.split("_")[1]) >= len(members):
            old.unlink()
    if arrays:
        from safetensors.numpy import save_file as save_np
        atomic_write(path / "domain.safetensors", lambda tmp: save_np(arrays, tmp))
    cfg = dict(config, elprop_version=__version__, torch_version=torch.__version__,
               saved=time.strftime("%Y-%m-%d %H:%M:%S"))
    atomic_write(path / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(cfg, indent=1)))
    if card is not None:
        atomic_write(path / "card.md", lambda tmp: Path(tmp).write_text(card))
    return path


def read_members(path) -> list:
    from safetensors.torch import load_file
    path = Path(path)
    files = sorted(path.glob("member_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise InputError(f"{path}: saved model has no member_*.safetensors weights")
    return [load_file(f) for f in files]


def load_model(path):
    """The estimator saved in ``path``: a PropertyModel (graph, points and volume families), a DensityModel
    (hk-unet), a SubgraphModel (sparse-linear, boosted-trees, slda) or a MaterialsEstimator (gbr, lgbm, rf, gp,
    krr on materials tables)."""
    cfg = read_config(path)
    if "model" not in cfg:
        from elprop.materials.estimator import MaterialsEstimator
        return MaterialsEstimator.load(path)
    from elprop.subgraph.estimator import PREDICTING
    if cfg["model"] in PREDICTING:
        from elprop.subgraph.estimator import SubgraphModel
        return SubgraphModel.load(path)
    if cfg["model"] == "hk-unet":
        from elprop.train.density_run import DensityModel
        return DensityModel.load(path)
    from elprop.models.registry import MODELS, _load_plugins
    _load_plugins()
    if cfg["model"] not in MODELS:
        raise InputError(f"{path}: a {cfg['model']!r} model; `elprop evaluate/predict` read the families "
                         f"{', '.join(MODELS)}, sparse-linear, boosted-trees and slda")
    from elprop.train.estimator import PropertyModel
    return PropertyModel.load(path)

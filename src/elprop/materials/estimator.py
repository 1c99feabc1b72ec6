"""A saved materials model as an estimator of the common shape, so that ``elprop evaluate`` and ``elprop predict``
serve it like the molecular families: ``MaterialsEstimator.load(dir)`` (the folder ``elprop materials fit``
writes: the model's ``config.json`` and native files, and ``materials.json`` with the target, its unit and the
descriptors), ``specs`` (the target with its unit), ``read(table)`` and ``predict(table) -> Prediction``.
Tables are CSV files or embedded names (``dband-overlayers``, ``adsorption-h``, ...)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from elprop.core.dataset import InputError
from elprop.core.units import UNITLESS, TargetSpec

KINDS = ("gbr", "lgbm", "rf", "gp", "krr")


class MaterialsEstimator:
    representation = "table"

    def __init__(self, model, meta: dict):
        self.model, self.meta = model, meta
        self.specs = [TargetSpec(meta["target"], meta.get("unit") or UNITLESS)]
        self.config = {"model": model.kind, "targets": [meta["target"]], "kind": meta.get("kind", "pair")}

    @classmethod
    def load(cls, path) -> "MaterialsEstimator":
        from elprop.materials.models import MaterialsModel
        path = Path(path)
        try:
            meta = json.loads((path / "materials.json").read_text())
        except (OSError, ValueError):
            raise InputError(f"{path}: no materials.json (fit it with `elprop materials fit`)") from None
        return cls(MaterialsModel.load(path), meta)

    def read(self, table, require_target: bool = False):
        from elprop.data.embedded import resolve
        from elprop.materials.table import read_table
        t = read_table(resolve(table), self.meta["target"] if require_target else None,
                       descriptors=self.meta["descriptors"], require_target=require_target)
        missing = [c for c in self.model.features if c not in t.X.columns]
        if missing:
            raise InputError(f"{table}: lacks the model's feature columns {', '.join(missing[:4])}")
        return t

    def predict(self, table):
        """Predictions for the rows of a table; ``flags`` marks rows with elements outside the training data."""
        from elprop.train.estimator import Prediction
        t = table if hasattr(table, "X") else self.read(table)
        mu, sd = self.model.predict(t.X[self.model.features], return_std=True)
        seen = set(self.meta.get("elements") or [])
        flags = []
        for h, g in zip(t.hosts or [None] * len(mu), t.guests or [None] * len(mu)):
            out = sorted({e for e in (h, g) if e is not None and seen and e not in seen})
            flags.append(f"element(s) {', '.join(out)} outside the training data" if out else "")
        return Prediction(np.asarray(mu, float)[:, None], np.asarray(sd, float)[:, None], flags, {}, t)

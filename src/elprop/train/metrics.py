"""Regression metrics per target, with units."""
from __future__ import annotations

import numpy as np

from elprop.core.units import TargetSpec, unit


def regression_metrics(y_true, y_pred, std=None) -> dict:
    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    t, p = y_true[ok], y_pred[ok]
    if len(t) == 0:
        return {"n": 0, "mae": np.nan, "rmse": np.nan, "r2": np.nan}
    err = p - t
    ss = float(np.sum((t - t.mean()) ** 2))
    out = {"n": int(len(t)), "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
           "r2": float(1 - np.sum(err ** 2) / ss) if ss > 0 else np.nan}
    if std is not None:
        s = std[ok]
        out["coverage_1sigma"] = float(np.mean(np.abs(err) <= s))  # ~0.68 when calibrated
        out["spearman_err_std"] = float(_spearman(np.abs(err), s)) if len(t) > 2 else np.nan
    return out


def _spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return np.corrcoef(ra, rb)[0, 1]


def metrics_table(targets, y_true, y_pred, std=None, split="test") -> list[dict]:
    """One row per target; ``targets`` are TargetSpecs (their units) or names from elprop's table."""
    rows = []
    for k, t in enumerate(targets):
        m = regression_metrics(y_true[:, k], y_pred[:, k], None if std is None else std[:, k])
        name, u = (t.name, t.unit) if isinstance(t, TargetSpec) else (t, unit(t))
        rows.append({"split": split, "target": name, "unit": u, **m})
    return rows

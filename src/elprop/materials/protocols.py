"""Evaluation protocols for the small materials tables.

- ``learning_curve``: repeated random splits at each training fraction (10 %–90 %), RMSE and MAE on the rest as
  mean ± sd over repeats (the protocol of Takigawa et al., RSC Adv. 2016).
- ``leave_one_group_out``: every row that involves a held-out metal (host or guest) or material is test, the
  rest train; the harder, design-relevant extrapolation. Its RMSE is over every (row, fold) prediction.
- ``descriptor_search``: which k elemental descriptors suffice, by greedy forward selection on repeated-split
  RMSE (pair features of the chosen descriptors: host, guest, difference, ratio).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from elprop.materials.models import MaterialsModel


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def learning_curve(X: pd.DataFrame, y, kind="gbr", fractions=(0.1, 0.25, 0.5, 0.75, 0.9), repeats=20, seed=0,
                   params=None, progress=None) -> pd.DataFrame:
    y = np.asarray(y, float)
    rows = []
    rng = np.random.default_rng(seed)
    for f in fractions:
        n_tr = max(3, int(round(f * len(y))))
        rm, ma = [], []
        for r in range(repeats):
            p = rng.permutation(len(y))
            tr, te = p[:n_tr], p[n_tr:]
            if len(te) == 0:
                continue
            m = MaterialsModel(kind, seed=seed + r, uncertainty=False, **(params or {})).fit(X.iloc[tr], y[tr])
            pred = m.predict(X.iloc[te])
            rm.append(_rmse(pred, y[te]))
            ma.append(float(np.mean(np.abs(pred - y[te]))))
            if progress is not None:
                progress()
        rows.append({"model": kind, "train_fraction": f, "n_train": n_tr, "repeats": len(rm),
                     "rmse_mean": float(np.mean(rm)), "rmse_sd": float(np.std(rm)),
                     "mae_mean": float(np.mean(ma)), "mae_sd": float(np.std(ma))})
    return pd.DataFrame(rows)


@dataclass
class GroupOut:
    """Leave-one-group-out results: ``table`` per held-out group, ``per_fold`` every (row, fold) prediction,
    ``rmse``/``mae`` over all of those predictions (a row involving two metals is scored in both folds), and
    ``pooled``: per row the mean over the folds that tested it (for parity plots)."""
    table: pd.DataFrame
    per_fold: pd.DataFrame
    pooled: np.ndarray
    rmse: float
    mae: float

    def __iter__(self):  # table, pooled = leave_one_group_out(...)
        return iter((self.table, self.pooled))


def leave_one_group_out(X: pd.DataFrame, y, groups, kind="gbr", seed=0, params=None) -> GroupOut:
    """``groups``: per row, the set of group labels it involves (e.g. {host, guest}); each label is held out in
    turn, and every row that involves it is in that fold's test set."""
    y = np.asarray(y, float)
    labels = sorted({g for gs in groups for g in gs})
    rows, preds = [], []
    for lab in labels:
        te = np.array([lab in gs for gs in groups])
        if te.all() or not te.any():
            continue
        m = MaterialsModel(kind, seed=seed, uncertainty=False, **(params or {})).fit(X[~te], y[~te])
        p = m.predict(X[te])
        preds += [{"row": int(i), "held_out": lab, "pred": float(v)} for i, v in zip(np.nonzero(te)[0], p)]
        rows.append({"held_out": lab, "n_test": int(te.sum()), "rmse": _rmse(p, y[te]),
                     "mae": float(np.mean(np.abs(p - y[te])))})
    per_fold = pd.DataFrame(preds, columns=["row", "held_out", "pred"])
    err = per_fold["pred"].to_numpy() - y[per_fold["row"].to_numpy(dtype=np.int64)]
    pooled = per_fold.groupby("row")["pred"].mean().reindex(range(len(y))).to_numpy(float)
    return GroupOut(pd.DataFrame(rows), per_fold, pooled,
                    float(np.sqrt(np.mean(err ** 2))) if len(err) else float("nan"),
                    float(np.mean(np.abs(err))) if len(err) else float("nan"))


def descriptor_search(features_of, candidates, y, k_max=4, kind="gbr", fraction=0.25, repeats=10, seed=0):
    """Greedy forward selection: at each step add the descriptor that lowers the repeated-split RMSE most.
    ``features_of(descriptors)`` returns the feature table for a descriptor list. Returns the steps."""
    chosen, steps = [], []
    for _ in range(min(k_max, len(candidates))):
        best = None
        for c in candidates:
            if c in chosen:
                continue
            lc = learning_curve(features_of(chosen + [c]), y, kind, (fraction,), repeats, seed)
            r = float(lc["rmse_mean"].iloc[0])
            if best is None or r < best[1]:
                best = (c, r, float(lc["rmse_sd"].iloc[0]))
        chosen.append(best[0])
        steps.append({"k": len(chosen), "added": best[0], "descriptors": ", ".join(chosen), "rmse_mean": best[1],
                      "rmse_sd": best[2]})
    return pd.DataFrame(steps)

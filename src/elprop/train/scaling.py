"""Per-target scaling with atom-reference fits for extensive targets.

For an extensive target (energies, polarizability ...), a least-squares fit of the target on element counts
gives per-element reference values; the model learns the standardized residual. Intensive targets are
standardized by mean and standard deviation.
"""
from __future__ import annotations

import numpy as np


class TargetScaler:
    def __init__(self, mean, std, atomref, extensive):
        self.mean = np.asarray(mean, np.float64)
        self.std = np.asarray(std, np.float64)
        self.atomref = np.asarray(atomref, np.float64)  # [n_count_columns, n_targets]
        self.extensive = np.asarray(extensive, bool)

    @classmethod
    def fit(cls, y: np.ndarray, counts: np.ndarray, extensive) -> "TargetScaler":
        t = y.shape[1]
        atomref = np.zeros((counts.shape[1], t))
        for k in range(t):
            ok = np.isfinite(y[:, k])
            if extensive[k] and ok.sum() > counts.shape[1]:
                atomref[:, k] = np.linalg.lstsq(counts[ok].astype(np.float64), y[ok, k], rcond=None)[0]
        r = y - counts @ atomref
        mean = np.nanmean(r, 0)
        std = np.nanstd(r, 0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean, std, atomref, extensive)

    def transform(self, y, counts):
        return (y - counts @ self.atomref - self.mean) / self.std

    def inverse(self, z, counts, var=None):
        y = z * self.std + self.mean + counts @ self.atomref
        return y if var is None else (y, var * self.std ** 2)

    def to_dict(self):
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "atomref": self.atomref.tolist(),
                "extensive": self.extensive.tolist()}

    @classmethod
    def from_dict(cls, d):
        return cls(d["mean"], d["std"], d["atomref"], d["extensive"])

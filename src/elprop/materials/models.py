"""Tabular models for materials targets, with the project's fit / predict / save / load shape and uncertainty.

Families (``MaterialsModel(kind)``):
- ``gbr``: scikit-learn gradient boosting (squared loss); uncertainty from two quantile models (16th and 84th
  percentiles): σ = (q84 − q16) / 2;
- ``lgbm``: LightGBM; uncertainty from quantile objectives the same way;
- ``rf``: random forest; σ = spread of the trees' predictions;
- ``gp``: Gaussian process (constant × Matérn with one length scale per feature + white noise; ν = 3/2
  by default (``nu=``), which beat ν = 5/2, RBF and an additive host + guest kernel on the d-band table;
  hyperparameters by marginal likelihood, targets normalised); σ = the predictive standard deviation;
- ``krr``: kernel ridge regression (RBF), α and γ by 5-fold CV; σ from a bootstrap ensemble of 20 fits.
Features are imputed with the training median and, for gp and krr, standardised.

Saving never pickles. A saved model is a folder: ``config.json`` (kind, hyperparameters, feature names, imputation
and scaling constants, the seed), ``train.npz`` (the training features and targets) and, for LightGBM, the
booster's native text files. scikit-learn estimators are refitted from the training data on load (every family
is deterministic given its seed; these data sets have a few hundred rows, so this takes well under a second),
and ``load`` checks the refit against predictions stored at save time.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from elprop.core.cache import atomic_write
from elprop.core.dataset import InputError

KINDS = ("gbr", "lgbm", "rf", "gp", "krr")


class MaterialsModel:
    def __init__(self, kind: str = "gbr", seed: int = 0, uncertainty: bool = True, **params):
        if kind not in KINDS:
            raise InputError(f"unknown model {kind!r}; known: {', '.join(KINDS)}")
        self.kind, self.seed, self.uncertainty, self.params = kind, int(seed), bool(uncertainty), dict(params)
        self.features: list[str] = []
        self._fitted = False

    # --- helpers ---------------------------------------------------------------------------------------------
    def _prep(self, X, fit=False):
        import pandas as pd
        if isinstance(X, pd.DataFrame):
            if fit:
                self.features = [str(c) for c in X.columns]
            else:
                missing = [c for c in self.features if c not in X.columns]
                if missing:
                    raise InputError(f"missing feature columns: {', '.join(missing[:5])}")
                X = X[self.features]
            X = X.to_numpy(dtype=float)
        X = np.asarray(X, dtype=float)
        if fit:
            if not self.features:
                self.features = [f"x{k}" for k in range(X.shape[1])]
            med = np.nanmedian(X, axis=0)
            self.median = np.where(np.isfinite(med), med, 0.0)
        X = np.where(np.isfinite(X), X, self.median)
        if self.kind in ("gp", "krr"):
            if fit:
                self.mu, sd = X.mean(0), X.std(0)
                self.sd = np.where(sd > 0, sd, 1.0)
            X = (X - self.mu) / self.sd
        return X

    def _build(self, X, y):
        k, s, p = self.kind, self.seed, self.params
        if k == "gbr":
            from sklearn.ensemble import GradientBoostingRegressor
            kw = dict(n_estimators=p.get("n_estimators", 300), learning_rate=p.get("learning_rate", 0.05),
                      max_depth=p.get("max_depth", 3), subsample=p.get("subsample", 0.8), random_state=s)
            self.est = GradientBoostingRegressor(**kw).fit(X, y)
            if self.uncertainty:
                self.q = [GradientBoostingRegressor(loss="quantile", alpha=a, **kw).fit(X, y) for a in (0.16, 0.84)]
        elif k == "lgbm":
            import lightgbm as lgb
            kw = dict(n_estimators=p.get("n_estimators", 400), learning_rate=p.get("learning_rate", 0.05),
                      num_leaves=p.get("num_leaves", 15), min_child_samples=p.get("min_child_samples", 3),
                      subsample=0.8, subsample_freq=1, random_state=s, verbose=-1, n_jobs=1)
            self.est = lgb.LGBMRegressor(**kw).fit(X, y)
            if self.uncertainty:
                self.q = [lgb.LGBMRegressor(objective="quantile", alpha=a, **kw).fit(X, y) for a in (0.16, 0.84)]
        elif k == "rf":
            from sklearn.ensemble import RandomForestRegressor
            self.est = RandomForestRegressor(n_estimators=p.get("n_estimators", 300), min_samples_leaf=1,
                                             random_state=s, n_jobs=1).fit(X, y)
        elif k == "gp":
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
            kern = ConstantKernel(1.0) * Matern(length_scale=np.ones(X.shape[1]), nu=p.get("nu", 1.5),
                                                length_scale_bounds=(1e-2, 1e3)) + WhiteKernel(0.1, (1e-6, 1e1))
            self.est = GaussianProcessRegressor(kern, normalize_y=True, n_restarts_optimizer=p.get("restarts", 2),
                                                random_state=s).fit(X, y)
        else:
            from sklearn.kernel_ridge import KernelRidge
            from sklearn.model_selection import GridSearchCV
            grid = {"alpha": np.logspace(-4, 1, 6), "gamma": np.logspace(-3, 0, 6) / max(X.shape[1], 1)}
            cv = min(5, len(y))
            gs = GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=cv, scoring="neg_mean_squared_error").fit(X, y)
            self.best = gs.best_params_
            self.est = gs.best_estimator_
            if self.uncertainty:
                rng = np.random.default_rng(s)
                self.boot = []
                for _ in range(20):
                    i = rng.integers(0, len(y), len(y))
                    self.boot.append(KernelRidge(kernel="rbf", **self.best).fit(X[i], y[i]))

    # --- the estimator shape ----------------------------------------------------------------------------------
    def fit(self, X, y):
        y = np.asarray(y, dtype=float)
        if not np.all(np.isfinite(y)):
            raise InputError(f"the target has {int((~np.isfinite(y)).sum())} missing/NaN values")
        if len(y) < 3:
            raise InputError(f"need at least 3 rows to fit, got {len(y)}")
        Xn = self._prep(X, fit=True)
        self._X, self._y = Xn, y
        self._raw = np.asarray(X.to_numpy(dtype=float) if hasattr(X, "to_numpy") else X, dtype=float)
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        with warnings.catch_warnings():  # GP length scales at their bounds mean irrelevant features: expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._build(Xn, y)
        self._fitted = True
        return self

    def predict(self, X, return_std: bool = False):
        if not self._fitted:
            raise RuntimeError("the model is not fitted")
        Xn = self._prep(X)
        if self.kind == "gp":
            mean, std = self.est.predict(Xn, return_std=True)
        else:
            mean = self.est.predict(Xn)
            std = np.full(len(mean), np.nan)
            if self.uncertainty and self.kind in ("gbr", "lgbm"):
                lo, hi = (q.predict(Xn) for q in self.q)
                std = np.abs(hi - lo) / 2
            elif self.kind == "rf":
                std = np.std([t.predict(Xn) for t in self.est.estimators_], axis=0)
            elif self.uncertainty and self.kind == "krr":
                std = np.std([b.predict(Xn) for b in self.boot], axis=0)
        return (mean, std) if return_std else mean

    def feature_importance(self) -> dict:
        """Impurity/gain importance (trees) or inverse length scales (gp); empty for krr."""
        if self.kind in ("gbr", "rf", "lgbm"):
            imp = np.asarray(self.est.feature_importances_, float)
        elif self.kind == "gp":
            ls = self.est.kernel_.k1.k2.length_scale
            imp = 1.0 / np.asarray(ls, float)
        else:
            return {}
        imp = imp / imp.sum() if imp.sum() > 0 else imp
        return dict(sorted(zip(self.features, imp.tolist()), key=lambda t: -t[1]))

    def save(self, path, card: str | None = None) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        probe = self.predict(self._raw[:min(len(self._raw), 20)])
        cfg = {"kind": self.kind, "seed": self.seed, "uncertainty": self.uncertainty, "params": self.params,
               "features": self.features, "median": self.median.tolist(), "probe_predictions": probe.tolist()}
        if self.kind in ("gp", "krr"):
            cfg["scale_mean"], cfg["scale_sd"] = self.mu.tolist(), self.sd.tolist()
        if self.kind == "lgbm":
            atomic_write(path / "booster.txt", lambda tmp: self.est.booster_.save_model(tmp))
        atomic_write(path / "train.npz", lambda tmp: np.savez(open(tmp, "wb"), X=self._raw, y=self._y))
        from elprop.train.saved import write_model_dir  # config.json and card.md, as for every family
        return write_model_dir(path, cfg, [], card)

    @classmethod
    def load(cls, path) -> "MaterialsModel":
        import pandas as pd
        path = Path(path)
        try:
            cfg = json.loads((path / "config.json").read_text())
            data = np.load(path / "train.npz")
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: not a saved elprop materials model ({e})") from None
        m = cls(cfg["kind"], cfg["seed"], cfg["uncertainty"], **cfg["params"])
        m.fit(pd.DataFrame(data["X"], columns=cfg["features"]), data["y"])
        probe = m.predict(data["X"][:len(cfg["probe_predictions"])])
        if not np.allclose(probe, cfg["probe_predictions"], rtol=1e-6, atol=1e-8):
            raise InputError(f"{path}: the refitted model does not reproduce the saved predictions "
                             "(different library versions?)")
        return m

"""Paired comparison of the chain's cnn3d inputs on the same test molecules (after `benchmarks/volumetric.py`).

    python benchmarks/volumetric_paired.py --out benchmarks/out/volumetric1k [--inputs dft,hk,promolecular]

Each cnn3d model of the chain (runs/cnn3d-KIND/model) predicts the test molecules of OUT/split.json from
OUT/chain.zarr; per target, the mean difference of absolute errors between two inputs, with a 95 % interval from
5,000 bootstrap resamples of the test molecules (seed 0). The interval covers the choice of test molecules only,
not the training seed. Writes OUT/paired_bootstrap.json; asserts nothing.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from volumetric import PROPS as TARGETS  # the chain's five targets


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/out/volumetric1k")
    ap.add_argument("--inputs", default="dft,hk,promolecular")
    ap.add_argument("--resamples", type=int, default=5000)
    a = ap.parse_args()
    from elprop.represent.volume import VolumeSet, store_dataset
    from elprop.train.estimator import PropertyModel
    out = Path(a.out)
    store = out / "chain.zarr"
    test = np.asarray(json.loads((out / "split.json").read_text())["test"])
    ds = store_dataset(store)
    y = np.column_stack([ds.target(t) for t in TARGETS])[test]
    err = {}
    for k in a.inputs.split(","):
        m = PropertyModel.load(out / "runs" / f"cnn3d-{k}" / "model")
        mu, _ = m.predict_rep(VolumeSet(store, m.config["channels"]), test)
        err[k] = np.abs(mu - y)
        print(f"{k}: test MAE " + ", ".join(f"{t} {v:.4f}" for t, v in zip(TARGETS, err[k].mean(0))))
    draws = np.random.default_rng(0).integers(0, len(test), (a.resamples, len(test)))
    res = {}
    for p, q in itertools.combinations(err, 2):
        d = err[p] - err[q]
        lo, hi = np.percentile(d[draws].mean(1), [2.5, 97.5], axis=0)
        res[f"{p} - {q}"] = {t: [float(d[:, i].mean()), float(lo[i]), float(hi[i])] for i, t in enumerate(TARGETS)}
        print(f"{p} - {q}: " + ", ".join(f"{t} {d[:, i].mean():+.3f} [{lo[i]:+.3f}, {hi[i]:+.3f}]"
                                         for i, t in enumerate(TARGETS)))
    (out / "paired_bootstrap.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

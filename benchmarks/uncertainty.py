"""Which ensemble gives an epistemic σ worth its cost: deep ensembles against snapshot ensembles.

    python benchmarks/uncertainty.py [--n-train 5000] [--k 4] [--epochs 12] [--seeds 0,1,2]
        [--dim 64] [--layers 3] [--out benchmarks/out/uncertainty]

On QM9 (a seeded random sample: n-train training, n-train/10 validation molecules) four bondgraph models per
seed, same architecture:
- single: one model, E epochs (cost 1);
- snapshot: one training of E epochs whose learning rate restarts K times, a member per cycle (cost 1);
- snapshot-long: the same with K*E epochs (cost K, the deep ensemble's);
- deep: K independent models of E epochs each (cost K).
Each is scored on 2,000 held-out QM9 molecules and on the shift set (embedded `shift` labels) for the gap:
MAE, Spearman(σ, |error|), fraction within ±2σ, AUROC of σ, of the epistemic σ and of the domain score for
|error| > 0.3 eV, and on the pool of both. The training time of each is measured here, on the same machine, in
the same run. Writes uncertainty.json and .md; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/uncertainty"))
    ap.add_argument("--summarize", action="store_true", help="only rebuild the table from a finished run's files")
    a = ap.parse_args()
    if a.summarize:
        return summarize(Path(a.out), json.loads((Path(a.out) / "uncertainty.json").read_text()))
    from shift_eval import metrics

    from elprop.data.embedded import embedded_path
    from elprop.data.load import DataSpec, load_data
    from elprop.train.run import train_run

    out = Path(a.out)
    qm9 = load_data(DataSpec("qm9"))
    shift = pd.read_csv(embedded_path("shift"))
    shift = shift[np.isfinite(shift["gap [eV]"])]
    methods = {"single": (1, "deep", a.epochs), "snapshot": (a.k, "snapshot", a.epochs),
               "snapshot-long": (a.k, "snapshot", a.k * a.epochs), "deep": (a.k, "deep", a.epochs)}
    res = {"config": vars(a), "runs": {}}
    for seed in (int(s) for s in a.seeds.split(",")):
        perm = np.random.default_rng(100 + seed).permutation(len(qm9))
        n_val = a.n_train // 10
        idx = perm[: a.n_train + n_val + 2000]
        ds = qm9.subset(np.sort(idx))
        pos = {int(j): i for i, j in enumerate(np.sort(idx))}
        sp = {"train": np.array([pos[int(j)] for j in perm[: a.n_train]]),
              "val": np.array([pos[int(j)] for j in perm[a.n_train: a.n_train + n_val]]),
              "test": np.array([pos[int(j)] for j in perm[a.n_train + n_val: a.n_train + n_val + 2000]])}
        for name, (k, mode, epochs) in methods.items():
            t0 = time.time()
            est, _ = train_run(ds, out / f"seed{seed}" / name, targets=["gap"], dim=a.dim, layers=a.layers,
                               ensemble=k, ensemble_mode=mode, split=sp, seed=seed, epochs=epochs, progress=False,
                               log=lambda *x: None)
            train_s = time.time() - t0
            r = {"train_s": round(train_s, 1)}
            parts = []
            for set_name, smiles, y in (("qm9", list(ds.smiles[sp["test"]]), ds.target("gap")[sp["test"]]),
                                        ("shift", shift["smiles"].tolist(), shift["gap [eV]"].to_numpy(float))):
                p = est.predict(smiles)
                row = (y, p.mean[:, 0], p.std[:, 0], p.epistemic[:, 0], p.domain_score, p.flags)
                r[set_name] = metrics(*row)
                parts.append(row)
            r["pooled"] = metrics(*[np.concatenate([np.asarray(p[j], dtype=object if j == 5 else float)
                                                    for p in parts]) for j in range(6)])
            res["runs"].setdefault(name, {})[seed] = r
            print(name, seed, json.dumps({s: {k2: round(v, 3) for k2, v in r[s].items() if k2 in
                                              ("mae", "auroc_sigma", "auroc_epistemic", "within_2sigma")}
                                          for s in ("qm9", "shift", "pooled")}), f"{train_s:.0f} s", flush=True)
            out.mkdir(parents=True, exist_ok=True)
            (out / "uncertainty.json").write_text(json.dumps(res, indent=1))
    return summarize(out, res)


def summarize(out: Path, res: dict) -> int:
    """The markdown table; cost as optimiser steps (from each run's history.csv), which machine load does not
    change, beside the measured seconds."""
    keys = [("qm9", "mae"), ("shift", "mae"), ("qm9", "spearman_sigma_abs_err"), ("shift", "within_2sigma"),
            ("pooled", "auroc_sigma"), ("pooled", "auroc_epistemic"), ("shift", "spearman_sigma_abs_err")]
    lines = ["| ensemble | optimiser steps | training s | " + " | ".join(f"{s} {m}" for s, m in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for name, runs in res["runs"].items():
        cell = []
        for s, m in keys:
            v = np.array([r[s][m] for r in runs.values()], dtype=float)
            cell.append(f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}")
        ts = np.mean([r["train_s"] for r in runs.values()])
        steps = np.mean([pd.read_csv(out / f"seed{sd}" / name / "history.csv")["steps"].sum() for sd in runs])
        lines.append(f"| {name} | {steps:.0f} | {ts:.0f} | " + " | ".join(cell) + " |")
    lines.append(f"\ngap; mean ± sd over seeds {', '.join(map(str, next(iter(res['runs'].values()))))}; MAE in eV; "
                 "training seconds include the domain fit and depend on the machine's load at the time.")
    (out / "uncertainty.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

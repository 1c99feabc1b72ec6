"""How close `elprop label` comes to QM9's own labels: the noise floor of every later comparison.

    python benchmarks/label_consistency.py --n 30 --seed 0 [--workers 2]

Draws N QM9 molecules (seeded) and labels them three times with `elprop label` at the QM9 level of theory:
from their SMILES with an xTB geometry (the default), from their SMILES with the MMFF geometry only, and at
QM9's own geometry (--opt none). Reports the MAE against QM9 for HOMO, LUMO, gap and μ, and the cost per
molecule. Resumable: rerun the same command after a kill. Writes benchmarks/out/label_consistency.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks/out"
TARGETS = {"homo": "eV", "lumo": "eV", "gap": "eV", "mu": "D"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    from elprop.data.load import DataSpec, load_data
    ds = load_data(DataSpec("qm9"))
    idx = np.sort(np.random.default_rng(a.seed).choice(len(ds), a.n, replace=False))
    base = OUT / f"labels/qm9-{a.n}-seed{a.seed}"
    base.mkdir(parents=True, exist_ok=True)
    (base / "indices.txt").write_text("\n".join(map(str, idx)))
    (base / "smiles.smi").write_text("".join(f"{ds.smiles[i]} {ds.names[i]}\n" for i in idx))
    elprop = str(Path(sys.executable).with_name("elprop"))
    runs = {"xtb": [str(base / "smiles.smi"), "--opt", "xtb"], "mmff": [str(base / "smiles.smi"), "--opt", "mmff"],
            "qm9": ["qm9", "--subset", f"@{base / 'indices.txt'}", "--opt", "none"]}
    ref = pd.DataFrame({t: ds.target(t)[idx] for t in TARGETS}, index=[str(ds.names[i]) for i in idx])
    results, rows = {}, []
    for geo, args in runs.items():
        d = base / geo
        subprocess.run([elprop, "label", *args, "--out", str(d), "--workers", str(a.workers), "--no-progress"],
                       check=True)
        lab = pd.read_csv(d / "labels.csv")
        lab.index = lab["name"].astype(str)
        common = lab.index.intersection(ref.index)
        res = {"n": int(len(common)), "failures": int(len(idx) - len(common)),
               "median_wall_s": float(lab["wall_s"].median()), "mean_wall_s": float(lab["wall_s"].mean())}
        for t, u in TARGETS.items():
            err = lab.loc[common, f"{t} [{u}]"].to_numpy() - ref.loc[common, t].to_numpy()
            res[t] = {"mae": float(np.abs(err).mean()), "mean_signed": float(err.mean()),
                      "max_abs": float(np.abs(err).max())}
        results[geo] = res
        rows.append(f"| {geo} | {res['n']} | " + " | ".join(f"{res[t]['mae']:.3f} ({res[t]['mean_signed']:+.3f})"
                                                         for t in TARGETS) + f" | {res['median_wall_s']:.1f} |")
    (OUT / "label_consistency.json").write_text(json.dumps({"n": a.n, "seed": a.seed, "indices": idx.tolist(),
                                                           "results": results}, indent=1))
    md = ["| geometry | n | HOMO [eV] | LUMO [eV] | gap [eV] | μ [D] | median s/molecule |", "|---|---|---|---|---|---|---|",
          *rows, "", "MAE against QM9 (mean signed error in brackets)."]
    (OUT / "label_consistency.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

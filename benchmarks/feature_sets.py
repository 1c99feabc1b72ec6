"""Compare the bondgraph model's atom feature sets (element, ecfp, extended) on the same QM9 split and budget.

    python benchmarks/feature_sets.py --budget 300 --n-train 10000

Each feature set trains with `elprop train` on the same seeded 10,000 / 1,000 / 10,000 molecules for the same
training-time budget; prints test MAE (eV) for gap, HOMO, LUMO and U0 atomization, and writes results.md to
--out. Asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TARGETS = ["gap", "homo", "lumo", "U0_atom"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=300)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--out", default=str(HERE / "out" / "feature_sets"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from elprop.data.qm9 import load_qm9
    n = len(load_qm9())
    perm = np.random.default_rng(args.seed).permutation(n)
    a, b = args.n_train, args.n_train + args.n_val
    split = {"train": np.sort(perm[:a]).tolist(), "val": np.sort(perm[a:b]).tolist(),
             "test": np.sort(perm[b:b + args.n_test]).tolist()}
    (out / "split.json").write_text(json.dumps(split))
    results = {}
    for fs in ("element", "ecfp", "extended"):
        cmd = [sys.executable, "-m", "elprop.cli.main", "train", "--data", "qm9", "--targets", ",".join(TARGETS),
               "--features", fs, "--split", "file", "--split-file", str(out / "split.json"), "--time-budget",
               str(args.budget), "--epochs", "100000", "--dim", str(args.dim), "--name", fs, "--runs-dir",
               str(out), "--no-progress"]
        with open(out / f"{fs}.log", "w") as fh:
            subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True)
        rows = list(csv.DictReader(open(out / fs / "metrics.csv")))
        results[fs] = {r["target"]: float(r["mae"]) for r in rows if r["split"] == "test"}
        print(fs, results[fs], flush=True)
    lines = [f"bondgraph feature sets on QM9: {args.n_train} train / {args.n_val} val / {args.n_test} test "
             f"(seed {args.seed}), {args.budget:.0f} s training each, width {args.dim}, {platform.machine()}, "
             f"{os.cpu_count()} cores", "", "| test MAE (eV) | " + " | ".join(TARGETS) + " |",
             "|---|" + "---|" * len(TARGETS)]
    lines += [f"| {fs} | " + " | ".join(f"{results[fs][t]:.4f}" for t in TARGETS) + " |" for fs in results]
    table = "\n".join(lines)
    print(table)
    (out / "results.md").write_text(table + "\n")


if __name__ == "__main__":
    main()

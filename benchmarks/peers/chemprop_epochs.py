"""Chemprop on one seed's draw of `benchmarks/qm9_budget.py` with a given number of epochs: the check that its
epoch calibration did not leave Chemprop short of the budget.

    python benchmarks/peers/chemprop_epochs.py --seed-dir benchmarks/out/qm9_budget/seed0 --epochs 60

Trains exactly as qm9_budget.py does (same data.csv and split column, same options) but with --epochs instead of
the calibrated count, predicts the test molecules, and prints the test MAE per target (eV) and the wall time of
training (start-up and featurisation included) beside the budget it is meant to fill. Writes
SEED_DIR/chemprop_epochsN.json. Asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from qm9_budget import LABEL, TARGETS, mae, sh  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed-dir", required=True, help="a seedN folder of qm9_budget.py's --out")
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--peers-venv", default=os.path.expanduser("~/.cache/elprop/peers-venv"))
    a = ap.parse_args()
    d, peers = Path(a.seed_dir), Path(a.peers_venv) / "bin"
    run = d / "chemprop" / f"epochs{a.epochs}"
    wall = sh([peers / "chemprop", "train", "-i", d / "data.csv", "-s", "smiles", "--target-columns", *TARGETS,
               "--splits-column", "split", "-t", "regression", "--num-workers", 0, "--accelerator", "cpu",
               "--epochs", a.epochs, "-o", run], d / f"chemprop_epochs{a.epochs}.log")
    ckpt = sorted(glob.glob(str(run / "**" / "best*.pt"), recursive=True))
    preds = d / f"chemprop_epochs{a.epochs}_test_preds.csv"
    sh([peers / "chemprop", "predict", "-i", d / "test.csv", "-s", "smiles", "--model-paths", ckpt[0], "-o", preds,
        "--num-workers", 0, "--accelerator", "cpu"], d / f"chemprop_epochs{a.epochs}_predict.log")
    rows = list(csv.DictReader(open(d / "data.csv")))
    test = json.loads((d / "split.json").read_text())["test"]
    y = np.array([[float(rows[i][t]) for t in TARGETS] for i in test])
    p = list(csv.DictReader(open(preds)))
    res = {"epochs": a.epochs, "train_wall_s": round(wall, 1),
           "mae_eV": {LABEL[t]: mae(y[:, k], [float(r[t]) for r in p]) for k, t in enumerate(TARGETS)}}
    (d / f"chemprop_epochs{a.epochs}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The shipped model on QM9's smallest molecules, by heavy-atom count: why water or ethanol get a warning.

    python benchmarks/small_molecules.py [--model shipped] [--max-heavy 6]

QM9 holds few molecules with fewer than 7 heavy atoms, so their atom environments are rare in training and the
applicability domain flags them. This scores every QM9 molecule with at most --max-heavy heavy atoms (whatever its
split: most were training molecules) plus the model's QM9 test molecules with more: gap MAE, the fraction
flagged and the median σ per heavy-atom count. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--max-heavy", type=int, default=6)
    a = ap.parse_args()
    from elprop.data.load import DataSpec, load_data
    from elprop.pretrained import model_path
    from elprop.train.saved import load_model

    qm9 = load_data(DataSpec("qm9"))
    heavy = np.array([int((qm9.z[s:e] > 1).sum()) for s, e in zip(qm9.offsets[:-1], qm9.offsets[1:])])
    path = model_path() if a.model == "shipped" else a.model
    test = np.asarray(json.loads((model_path() / "test_indices.json").read_text())["test"])
    idx = np.union1d(np.flatnonzero(heavy <= a.max_heavy), test[heavy[test] > a.max_heavy])
    model = load_model(path)
    pred = model.predict(list(qm9.smiles[idx]))
    k = model.config["targets"].index("gap")
    err = np.abs(pred.mean[:, k] - qm9.target("gap")[idx])
    flag = np.array([bool(f) for f in pred.flags])
    print("| heavy atoms | molecules | gap MAE [eV] | flagged | median gap σ [eV] |\n|---|---|---|---|---|")
    for h in range(1, heavy.max() + 1):
        q = heavy[idx] == h
        if q.any():
            print(f"| {h} | {q.sum()} | {err[q].mean():.3f} | {flag[q].mean():.2f} | {np.median(pred.std[q, k]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

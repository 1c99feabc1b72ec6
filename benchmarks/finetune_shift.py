"""Fine-tuning on new labels: learn the shift set's chemistry without forgetting QM9.

    python benchmarks/finetune_shift.py --model runs/qm9-snapshot/model [--seeds 0,1,2] [--epochs 10]
        [--lr 3e-4] [--replay 2000] [--out benchmarks/out/finetune_shift]

For each seed: the shift set (embedded `shift` labels, or --shift) is split in two halves, stratified by motif.
`elprop train --init-model MODEL --data halfA.csv --replay N` fine-tunes every member on half A (80 % of it for
training, 20 % for validation, beside N replayed QM9 training molecules and N/10 validation ones). Then the base
and the fine-tuned model are scored on half B (never seen) and on all QM9 test molecules of the shipped split.
The options (epochs, learning rate, replay size) are fixed in advance, not tuned on half B or the QM9 test set.
Writes finetune_shift.json and .md into --out; asserts nothing. A seed whose fine-tuned model exists is scored,
not retrained.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
TARGETS = ["gap", "homo", "lumo"]


def halves(shift: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = [], []
    for _, grp in shift.groupby("motif", sort=True):
        idx = rng.permutation(grp.index.to_numpy())
        k = len(idx) // 2 + (rng.random() < 0.5 if len(idx) % 2 else 0)
        a += list(idx[:k])
        b += list(idx[k:])
    return np.sort(a), np.sort(b)


def score(model, smiles, y: dict) -> dict:
    from shift_eval import metrics
    pred = model.predict(list(smiles))
    out = {}
    for t in TARGETS:
        k = model.config["targets"].index(t)
        epi = pred.epistemic[:, k] if pred.epistemic is not None else np.full(len(smiles), np.nan)
        out[t] = metrics(y[t], pred.mean[:, k], pred.std[:, k], epi, pred.domain_score, pred.flags)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--shift", default="shift")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--replay", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/finetune_shift"))
    a = ap.parse_args()
    from elprop.data.embedded import embedded_path
    from elprop.data.load import DataSpec, load_data
    from elprop.pretrained import model_path
    from elprop.train.saved import load_model

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    shift = pd.read_csv(embedded_path("shift") if a.shift == "shift" else a.shift)
    shift = shift[np.isfinite(shift["gap [eV]"])].reset_index(drop=True)
    qm9 = load_data(DataSpec("qm9"))
    test = np.asarray(json.loads((model_path() / "test_indices.json").read_text())["test"])
    q_smiles, q_y = qm9.smiles[test], {t: qm9.target(t)[test] for t in TARGETS}
    base = load_model(a.model)
    t0 = time.time()
    base_qm9 = score(base, q_smiles, q_y)
    res = {"model": a.model, "epochs": a.epochs, "lr": a.lr, "replay": a.replay, "n_shift": len(shift),
           "n_qm9_test": len(test), "base_qm9_test": base_qm9, "qm9_predict_s": round(time.time() - t0, 1),
           "seeds": {}}
    elprop = str(Path(sys.executable).with_name("elprop"))
    for seed in (int(s) for s in a.seeds.split(",")):
        A, B = halves(shift, seed)
        d = out / f"seed{seed}"
        d.mkdir(exist_ok=True)
        shift.iloc[A].to_csv(d / "half_A.csv", index=False)
        (d / "halves.json").write_text(json.dumps({"A": A.tolist(), "B": B.tolist()}))
        run = d / "run"
        t1 = time.time()
        if not (run / "model" / "config.json").is_file():  # a finished fine-tuning is kept (rerun to resume)
            subprocess.run([elprop, "train", "--init-model", a.model, "--data", str(d / "half_A.csv"), "--n-train",
                            "0.8", "--n-val", "0.2", "--replay", str(a.replay), "--epochs", str(a.epochs), "--lr",
                            str(a.lr), "--seed", str(seed), "--out", str(run), "--no-progress"], check=True)
        tune_s = time.time() - t1
        tuned = load_model(run / "model")
        yB = {t: shift.iloc[B][f"{t} [eV]"].to_numpy(float) for t in TARGETS}
        sB = shift.iloc[B]["smiles"].tolist()
        res["seeds"][seed] = {"n_A": len(A), "n_B": len(B), "finetune_s": round(tune_s, 1),
                              "base_B": score(base, sB, yB), "tuned_B": score(tuned, sB, yB),
                              "tuned_qm9_test": score(tuned, q_smiles, q_y)}
        (out / "finetune_shift.json").write_text(json.dumps(res, indent=1))
    lines = ["| target | half B MAE base [eV] | half B MAE fine-tuned [eV] | QM9 test MAE base [eV] | "
             "QM9 test MAE fine-tuned [eV] | QM9 change |", "|---|---|---|---|---|---|"]
    for t in TARGETS:
        b = [r["base_B"][t]["mae"] for r in res["seeds"].values()]
        f = [r["tuned_B"][t]["mae"] for r in res["seeds"].values()]
        q = [r["tuned_qm9_test"][t]["mae"] for r in res["seeds"].values()]
        q0 = base_qm9[t]["mae"]
        lines.append(f"| {t} | {np.mean(b):.3f} ± {np.std(b):.3f} | {np.mean(f):.3f} ± {np.std(f):.3f} | {q0:.4f} | "
                     f"{np.mean(q):.4f} ± {np.std(q):.4f} | {100 * (np.mean(q) / q0 - 1):+.1f} % |")
    lines.append(f"\nmean ± sd over seeds {a.seeds} (a fresh half A/B split per seed).")
    (out / "finetune_shift.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Choose the fine-tuning options (replay size, learning rate) on validation data only.

    python benchmarks/finetune_select.py --model runs/qm9-snapshot/model [--half HALF_A.csv] \
        --configs 2000:3e-4,2000:1e-4,6000:3e-4,6000:1e-4 \
        [--epochs 10] [--qm9-val 3000] [--max-qm9-loss 1.03] [--out runs/ft-select]

For each ``REPLAY:LR``, `elprop train --init-model MODEL --data HALF --replay REPLAY --lr LR` fine-tunes every
member (seed 0: 80 % of the half for training, 20 % for validation). Each result is scored on two validation sets
only: the half's own validation molecules (the new chemistry) and QM9 validation molecules of the base model's
split (a seeded draw of --qm9-val of them; the old chemistry). No test molecule (QM9 test, the other shift
half) is read here.

The rule, fixed before the first run: among the options whose QM9 validation gap MAE stays within
--max-qm9-loss × the base model's, take the one with the lowest gap MAE on the half's validation molecules.
Resumable: a finished option (its model folder exists) is scored, not retrained. Writes select.json and
select.md into --out.
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

TARGETS = ["gap", "homo", "lumo"]


def mae(model, smiles, y: dict) -> dict:
    pred = model.predict(list(smiles))
    return {t: float(np.nanmean(np.abs(pred.mean[:, model.config["targets"].index(t)] - y[t]))) for t in TARGETS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--half", help="the labels to fine-tune on (a CSV of `elprop label`; default: half A of the "
                                   "embedded shift set for --seed, as benchmarks/finetune_shift.py draws it)")
    ap.add_argument("--configs", default="2000:3e-4,2000:1e-4,6000:3e-4,6000:1e-4", help="REPLAY:LR,...")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qm9-val", type=int, default=3000)
    ap.add_argument("--max-qm9-loss", type=float, default=1.03)
    ap.add_argument("--out", default="runs/ft-select")
    a = ap.parse_args()
    from elprop.data.load import DataSpec, load_data
    from elprop.data.splits import load_split
    from elprop.train.finetune import base_split
    from elprop.train.saved import load_model, read_config

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    base_dir = Path(a.model)
    qm9 = load_data(DataSpec("qm9"))
    val = base_split(base_dir, read_config(base_dir), len(qm9))["val"]
    qv = np.sort(np.random.default_rng(a.seed).choice(val, min(a.qm9_val, len(val)), replace=False))
    q_smiles, q_y = qm9.smiles[qv], {t: qm9.target(t)[qv] for t in TARGETS}
    if a.half is None:  # half A of the shift set, drawn as finetune_shift.py draws it
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from elprop.data.embedded import embedded_path
        from finetune_shift import halves
        shift = pd.read_csv(embedded_path("shift"))
        shift = shift[np.isfinite(shift["gap [eV]"])].reset_index(drop=True)
        a.half = str(out / f"half_A_seed{a.seed}.csv")
        shift.iloc[halves(shift, a.seed)[0]].to_csv(a.half, index=False)
    half = pd.read_csv(a.half)
    base = load_model(base_dir)
    res = {"model": a.model, "half": a.half, "epochs": a.epochs, "seed": a.seed, "n_qm9_val": len(qv),
           "max_qm9_loss": a.max_qm9_loss, "base_qm9_val": mae(base, q_smiles, q_y), "configs": {}}
    elprop = str(Path(sys.executable).with_name("elprop"))
    for cfg in a.configs.split(","):
        replay, lr = cfg.split(":")
        run = out / f"r{replay}-lr{lr}"
        t0 = time.time()
        if not (run / "model" / "config.json").is_file():
            subprocess.run([elprop, "train", "--init-model", a.model, "--data", a.half, "--n-train", "0.8",
                            "--n-val", "0.2", "--replay", replay, "--epochs", str(a.epochs), "--lr", lr,
                            "--seed", str(a.seed), "--out", str(run), "--no-progress"], check=True)
        rows = np.asarray(load_split(run / "split.json")["val"])
        rows = rows[rows < len(half)]  # the half's own validation molecules (replayed ones come after them)
        hv = half.iloc[rows]
        hy = {t: hv[f"{t} [eV]"].to_numpy(float) for t in TARGETS}
        if "base_half_val" not in res:  # the same rows for every option (the split of the half is seeded)
            res["base_half_val"] = mae(base, hv["smiles"], hy)
        tuned = load_model(run / "model")
        res["configs"][cfg] = {"replay": int(replay), "lr": float(lr), "s": round(time.time() - t0, 1),
                               "n_half_val": len(rows),
                               "half_val": mae(tuned, hv["smiles"], hy),
                               "qm9_val": mae(tuned, q_smiles, q_y)}
        (out / "select.json").write_text(json.dumps(res, indent=1))
    q0 = res["base_qm9_val"]["gap"]
    ok = {c: r for c, r in res["configs"].items() if r["qm9_val"]["gap"] <= a.max_qm9_loss * q0}
    res["chosen"] = min(ok, key=lambda c: ok[c]["half_val"]["gap"]) if ok else None
    (out / "select.json").write_text(json.dumps(res, indent=1))
    lines = ["| replay | lr | half-A validation gap MAE [eV] | QM9 validation gap MAE [eV] | QM9 change | chosen |",
             "|---|---|---|---|---|---|",
             f"| (base) | — | {res['base_half_val']['gap']:.3f} | {q0:.4f} | | |"]
    for c, r in res["configs"].items():
        g = r["qm9_val"]["gap"]
        lines.append(f"| {r['replay']} | {r['lr']:g} | {r['half_val']['gap']:.3f} | {g:.4f} | "
                     f"{100 * (g / q0 - 1):+.1f} % | {'**yes**' if c == res['chosen'] else ''} |")
    lines.append(f"\n{len(qv)} QM9 validation molecules; {res['configs'][next(iter(res['configs']))]['n_half_val']} "
                 f"validation molecules of the half. Rule: QM9 validation gap within {a.max_qm9_loss:g}× the base's, "
                 "then the lowest gap MAE on the half's validation molecules.")
    (out / "select.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

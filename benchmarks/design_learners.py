"""How should the design loop learn from its verified labels? Out-of-sample check on labels the loop has already
paid for, before the next round's proposals are labelled.

    python benchmarks/design_learners.py --labels-dir benchmarks/out/design/task1/labels \
        --train benchmarks/out/design/task1/loop/rounds/01 \
        --eval benchmarks/out/design/task1/loop/rounds/02,benchmarks/out/design/task1/ga/rounds/02 \
        [--fractions 0,0.25] [--target gap] [--out benchmarks/out/design-learners]

The learners see the labels of the --train rounds' batches only and predict the --eval rounds' batches (molecules
that a design run proposed next, so the same kind of chemistry the loop must learn). Learners:
  base          the model as shipped, no learning
  ft F          `elprop train --init-model` on the verified labels (the loop's recipe: 80/20 split, replay 2000,
                10 epochs, lr 3e-4), new molecules repeated to about F of each epoch (--new-fraction; 0: once)
  +gp           the same network with the residual GP on fingerprints over its errors on the training labels
Prints and writes learners.json / .md: MAE, bias and the fraction within ±2σ on the eval molecules, and how many of
them each learner puts inside the goal window (with how many truly are). Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def labelled(batches: list[Path], labels_dir: Path, target: str) -> pd.DataFrame:
    from elprop.label.run import item_key
    rows, seen = [], set()
    for b in batches:
        for smi in pd.read_csv(b / "batch.csv")["smiles"]:
            key = item_key(smi)
            p = labels_dir / "results" / f"{key}.json"
            if key in seen or not p.exists():
                continue
            r = json.loads(p.read_text())
            if r.get("ok") and r.get(target) is not None:
                seen.add(key)
                rows.append({"smiles": smi, "key": key, **{t: r.get(t) for t in ("homo", "lumo", "gap", "mu")}})
    return pd.DataFrame(rows)


def finetune(train: pd.DataFrame, out: Path, fraction: float, seed: int) -> Path:
    model = out / "model"
    if (model / "config.json").exists():
        return model
    from elprop.core.units import TARGETS
    data = out.parent / "train.csv"
    cols = {t: f"{t} [{TARGETS[t].unit}]" for t in ("homo", "lumo", "gap", "mu")}
    train[["smiles", *cols]].rename(columns=cols).to_csv(data, index=False)
    cmd = [sys.executable, "-m", "elprop.cli.main", "train", "--init-model", "shipped", "--data", str(data),
           "--n-train", "0.8", "--n-val", "0.2", "--replay", "2000", "--epochs", "10", "--lr", "3e-4",
           "--seed", str(seed), "--out", str(out), "--allow-missing", "--no-progress",
           "--new-fraction", str(fraction)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    (out.parent / f"{out.name}.log").write_text(r.stdout + r.stderr)
    if r.returncode:
        sys.exit(f"fine-tuning failed: {r.stderr.strip().splitlines()[-1:]}")
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels-dir", required=True)
    ap.add_argument("--train", required=True, help="comma-separated round folders whose labels the learners see")
    ap.add_argument("--eval", required=True, help="comma-separated round folders to predict")
    ap.add_argument("--fractions", default="0,0.25")
    ap.add_argument("--target", default="gap")
    ap.add_argument("--window", default="3.0:3.5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/out/design-learners")
    a = ap.parse_args()
    from elprop.design.gp import ResidualGP
    from elprop.pretrained import model_path
    from elprop.train.saved import load_model
    lab_dir = Path(a.labels_dir)
    train = labelled([Path(p) for p in a.train.split(",")], lab_dir, a.target)
    ev = labelled([Path(p) for p in a.eval.split(",")], lab_dir, a.target)
    ev = ev[~ev["key"].isin(train["key"])].reset_index(drop=True)
    lo, hi = (float(v) for v in a.window.split(":"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(train)} training labels, {len(ev)} eval molecules ({int(ev[a.target].between(lo, hi).sum())} "
          f"truly in {lo}-{hi})")
    nets = {"base": model_path()}
    for f in (float(v) for v in a.fractions.split(",")):
        nets[f"ft {f:g}"] = finetune(train.copy(), out / f"ft-{f:g}-seed{a.seed}", f, a.seed)
    rows = []
    y = ev[a.target].to_numpy(dtype=float)
    for name, path in nets.items():
        m = load_model(path)
        k = m.config["targets"].index(a.target)
        pe, pt = m.predict(ev["smiles"].tolist()), m.predict(train["smiles"].tolist())
        mean, std = pe.mean[:, k], pe.std[:, k]
        gp = ResidualGP().fit(train["smiles"].tolist(), train[a.target].to_numpy(dtype=float) - pt.mean[:, k])
        shift, shrink = gp.predict(ev["smiles"].tolist())
        for tag, mu, sd in ((name, mean, std), (f"{name} +gp", mean + shift, std * np.sqrt(shrink))):
            err = mu - y
            inside = (mu >= lo) & (mu <= hi)
            rows.append({"learner": tag, "n": len(y), "mae": float(np.abs(err).mean()), "bias": float(err.mean()),
                         "within_2sigma": float((np.abs(err) <= 2 * sd).mean()),
                         "predicted_in_window": int(inside.sum()),
                         "of_those_truly_in": int((inside & (y >= lo) & (y <= hi)).sum())})
    res = {"train": a.train, "eval": a.eval, "target": a.target, "window": [lo, hi], "seed": a.seed,
           "n_train": len(train), "rows": rows}
    (out / "learners.json").write_text(json.dumps(res, indent=1))
    lines = [f"{len(train)} training labels ({a.train}); {len(ev)} eval molecules ({a.eval}); {a.target}, seed "
             f"{a.seed}", "", "| learner | MAE | bias | within ±2σ | predicted in window | of those truly in |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['learner']} | {r['mae']:.3f} | {r['bias']:+.3f} | {r['within_2sigma']:.2f} | "
              f"{r['predicted_in_window']} | {r['of_those_truly_in']} |" for r in rows]
    (out / "learners.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

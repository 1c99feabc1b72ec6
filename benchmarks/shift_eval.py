"""How a model's σ and applicability domain behave on the shift set and on QM9 test molecules.

    python benchmarks/shift_eval.py --model shipped [--model runs/x/model ...] [--shift LABELS.csv]
        [--qm9-n 2000] [--rows test|all] [--out benchmarks/out/shift_eval]

For every model, on the shift set (default: the embedded `shift` labels; `--shift` any labels.csv written by
`elprop label`) and on a seeded sample of QM9 test molecules (the shipped model's test indices), per target
(gap, HOMO, LUMO by default):
- MAE;
- Spearman correlation of σ with |error|;
- the fraction of errors within ±2σ;
- AUROC of σ, of the epistemic σ and of the domain score for detecting |error| > 0.3 eV;
- the fraction of molecules with |error| > 0.5 eV that are flagged in the warning column or within 2σ.
`--rows` picks the shift rows: a `--split-file` part (e.g. the held-out half of the fine-tuning demo) or all.
Writes JSON and a markdown table; asserts nothing.
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


def auroc(score, positive) -> float:
    from sklearn.metrics import roc_auc_score
    ok = np.isfinite(score)
    pos = np.asarray(positive)[ok]
    if pos.all() or not pos.any() or np.nanstd(np.asarray(score)[ok]) == 0:
        return float("nan")
    return float(roc_auc_score(pos, np.asarray(score)[ok]))


def metrics(y, mean, std, epi, dom, flags, big=0.3, huge=0.5) -> dict:
    from scipy.stats import spearmanr
    ok = np.isfinite(y) & np.isfinite(mean)
    err = np.abs(mean - y)[ok]
    s, e, d = std[ok], epi[ok], dom[ok]
    fl = np.array([bool(f) for f in np.asarray(flags, dtype=object)[ok]])
    within2 = err <= 2 * s
    hit = err > huge
    return {"n": int(ok.sum()), "mae": float(err.mean()), "spearman_sigma_abs_err": float(spearmanr(s, err)[0]),
            "within_2sigma": float(within2.mean()), "n_err_gt_0.3": int((err > big).sum()),
            "auroc_sigma": auroc(s, err > big), "auroc_epistemic": auroc(e, err > big),
            "auroc_domain": auroc(d, err > big), "flagged_fraction": float(fl.mean()),
            "n_err_gt_0.5": int(hit.sum()),
            "err_gt_0.5_flagged_or_within_2sigma": float((fl | within2)[hit].mean()) if hit.any() else float("nan")}


def predict(model, smiles):
    t0 = time.time()
    pred = model.predict(list(smiles))
    return pred, time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="model folder, or 'shipped' (repeatable)")
    ap.add_argument("--shift", default="shift", help="labels CSV (default: the embedded shift set)")
    ap.add_argument("--split-file", help="JSON with row indices of the shift labels (e.g. the fine-tuning split)")
    ap.add_argument("--rows", default="all", help="part of --split-file to score (default: all rows)")
    ap.add_argument("--qm9-n", type=int, default=2000, help="QM9 test molecules (seeded sample; 0: none)")
    ap.add_argument("--targets", default="gap,homo,lumo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/shift_eval"))
    a = ap.parse_args()
    from elprop.data.embedded import embedded_path
    from elprop.data.load import DataSpec, load_data
    from elprop.pretrained import model_path
    from elprop.train.saved import load_model

    path = embedded_path("shift") if a.shift == "shift" else Path(a.shift)
    shift = pd.read_csv(path)
    shift = shift[np.isfinite(shift["gap [eV]"])].reset_index(drop=True)  # molecules whose labelling failed: none
    if a.split_file and a.rows != "all":
        shift = shift.iloc[json.loads(Path(a.split_file).read_text())[a.rows]].reset_index(drop=True)
    targets = a.targets.split(",")
    sets = {"shift": (shift["smiles"].tolist(),
                      {t: shift[f"{t} [eV]"].to_numpy(float) if f"{t} [eV]" in shift else None for t in targets})}
    if a.qm9_n:
        qm9 = load_data(DataSpec("qm9"))
        test = np.asarray(json.loads((model_path() / "test_indices.json").read_text())["test"])
        pick = np.sort(np.random.default_rng(a.seed).choice(test, min(a.qm9_n, len(test)), replace=False))
        sets["qm9-test"] = (list(qm9.smiles[pick]), {t: qm9.target(t)[pick] for t in targets})
    out = {"shift_file": str(path), "rows": a.rows, "n_shift": len(shift), "models": {}}
    lines = ["| model | set | target | n | MAE [eV] | Spearman(σ, abs err) | within ±2σ | AUROC σ | AUROC epistemic "
             "| AUROC domain | flagged | abs err > 0.5 flagged or within 2σ |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mdir in a.model:
        model = load_model(model_path() if mdir == "shipped" else mdir)
        res = out["models"][mdir] = {}
        pooled = {}
        for name, (smiles, ys) in sets.items():
            pred, dt = predict(model, smiles)
            res[name] = {"predict_s": round(dt, 2)}
            epi = pred.epistemic if pred.epistemic is not None else np.full_like(pred.std, np.nan)
            dom = pred.domain_score if pred.domain_score is not None else np.full(len(smiles), np.nan)
            for t in targets:
                if ys[t] is None or t not in model.config["targets"]:
                    continue
                k = model.config["targets"].index(t)
                res[name][t] = m = metrics(ys[t], pred.mean[:, k], pred.std[:, k], epi[:, k], dom, pred.flags)
                pooled.setdefault(t, []).append((ys[t], pred.mean[:, k], pred.std[:, k], epi[:, k], dom, pred.flags))
                lines.append(_line(mdir, name, t, m))
        for t, parts in pooled.items():  # shift and QM9 together: does σ/domain pick out the shift set's errors?
            if len(parts) < 2:
                continue
            cat = [np.concatenate([np.asarray(p[j], dtype=object if j == 5 else float) for p in parts])
                   for j in range(6)]
            res.setdefault("pooled", {})[t] = m = metrics(*cat)
            lines.append(_line(mdir, "pooled", t, m))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    Path(a.out, "shift_eval.json").write_text(json.dumps(out, indent=1))
    Path(a.out, "shift_eval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _line(model, name, t, m):
    f = lambda v: "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.2f}"  # noqa: E731
    return (f"| {model} | {name} | {t} | {m['n']} | {m['mae']:.3f} | {f(m['spearman_sigma_abs_err'])} | "
            f"{m['within_2sigma']:.2f} | {f(m['auroc_sigma'])} | {f(m['auroc_epistemic'])} | {f(m['auroc_domain'])} | "
            f"{m['flagged_fraction']:.2f} | {f(m['err_gt_0.5_flagged_or_within_2sigma'])} |")


if __name__ == "__main__":
    sys.exit(main())

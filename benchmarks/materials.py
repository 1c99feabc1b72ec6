"""Materials models on the embedded tables (src/elprop/data/materials), side by side in one run.

    .venv/bin/python benchmarks/materials.py [--data DIR] [--repeats 100] [--skip ads]

1. d-band centres of the 110 pseudomorphic overlayers (Ruban et al. 1997). Two targets: εd − EF of the
   overlayer system (`eps_d_minus_EF_eV`, with the derived `shift_eV` column dropped), and the shift itself
   (with `eps_d_minus_EF_eV` dropped). Two feature sets: the full pair features (host, guest, difference,
   ratio) and the two metals' descriptors alone. RMSE at 25 % training over --repeats random splits for every
   model family (the RSC Adv. 2016 protocol, whose best was < 0.5 eV), leave-one-metal-out (RMSE over every
   (row, fold) prediction: a pair is tested in its host's fold and in its guest's), and the full
   learning curve of the best on the absolute target.
2. Adsorption energies (Vassilev-Galindo et al. 2024): H, O and OH, each on its own. Random 80/20 splits
   (--ads-repeats) and leave-one-material-out, elprop's features (composition statistics of elemental
   descriptors plus the file's own columns) against a plain scikit-learn GBR on the file's own descriptor
   columns only. MAE in eV.
Writes results.json and results.md to --out. Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def ads_eval(X, y, groups, kind, repeats, seed=0):
    """MAE over ``repeats`` random 80/20 splits (mean, sd) and pooled over 10 leave-material-out folds.
    ``kind`` is a MaterialsModel family, or "plain" for scikit-learn's GBR with its defaults."""
    from sklearn.ensemble import GradientBoostingRegressor

    from elprop.materials.models import MaterialsModel

    def model(s):
        return GradientBoostingRegressor(random_state=s) if kind == "plain" else \
            MaterialsModel(kind, seed=s, uncertainty=False)
    rng = np.random.default_rng(seed)
    maes = []
    for r in range(repeats):
        p = rng.permutation(len(y))
        tr, te = p[:int(0.8 * len(y))], p[int(0.8 * len(y)):]
        m = model(seed + r).fit(X.iloc[tr], y[tr])
        maes.append(float(np.mean(np.abs(m.predict(X.iloc[te]) - y[te]))))
    mats = sorted(set(groups))
    # leave-one-material-out as 10 folds of whole materials (each material's rows all in one test fold)
    fold = {m: k % 10 for k, m in enumerate(np.random.default_rng(seed).permutation(mats))}
    f = np.array([fold[g] for g in groups])
    pred = np.full(len(y), np.nan)
    for k in range(10):
        te = f == k
        m = model(seed).fit(X[~te], y[~te])
        pred[te] = m.predict(X[te])
    return float(np.mean(maes)), float(np.std(maes)), float(np.mean(np.abs(pred - y)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder of the tables (default: the ones inside elprop)")
    ap.add_argument("--out", default=str(HERE / "out" / "materials"))
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--ads-repeats", type=int, default=5)
    ap.add_argument("--models", default="gbr,lgbm,rf,gp,krr")
    ap.add_argument("--skip", default="")
    args = ap.parse_args()
    from elprop.materials.protocols import learning_curve, leave_one_group_out
    from elprop.materials.table import read_table
    from elprop.data.embedded import embedded_path
    data = Path(args.data) if args.data else embedded_path("dband-overlayers").parent
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from elprop.train.device import machine_description
    res = {"machine": f"{machine_description()}, {os.cpu_count()} cores",
           "command": " ".join(sys.argv)}
    if "dband" not in args.skip:
        rows, tables = [], {}
        for target, drop in (("eps_d_minus_EF_eV", ["shift_eV"]), ("shift_eV", ["eps_d_minus_EF_eV"])):
            for parts in (("host", "guest", "diff", "ratio"), ("host", "guest")):
                fs = ", ".join(parts)
                t = tables[target, fs] = read_table(data / "dband_overlayers_long.csv", target, drop_columns=drop,
                                                    pair_parts=parts)
                for kind in args.models.split(","):
                    t0 = time.time()
                    lc = learning_curve(t.X, t.y, kind, (0.25,), args.repeats, 0)
                    go = leave_one_group_out(t.X, t.y, t.groups(), kind)
                    rows.append({"target": target, "features": fs, "n_features": t.X.shape[1], "model": kind,
                                 "rmse_25": float(lc.rmse_mean.iloc[0]), "sd_25": float(lc.rmse_sd.iloc[0]),
                                 "lomo_rmse": go.rmse,  # over every (row, fold) prediction
                                 "target_std": float(np.std(t.y)), "seconds": round(time.time() - t0, 1)})
                    print(rows[-1], flush=True)
        best = min((r for r in rows if r["target"] == "eps_d_minus_EF_eV"), key=lambda r: r["rmse_25"])
        t = tables[best["target"], best["features"]]
        curve = learning_curve(t.X, t.y, best["model"], (0.1, 0.25, 0.5, 0.75, 0.9), args.repeats, 0)
        res["dband"] = {"rows": rows, "best": f"{best['model']} on {best['features']}",
                        "curve": curve.to_dict("records"), "n": len(t.y)}
        (out / "results.json").write_text(json.dumps(res, indent=1))
    if "ads" not in args.skip:
        ads = {}
        for ad, fname in (("H", "adsorption_H_alloys.csv"), ("O", "adsorption_O_OH_alloys.csv"),
                          ("OH", "adsorption_O_OH_alloys.csv")):
            t = read_table(data / fname, "Eads", where=[f"adsorbate={ad}"])
            own = t.frame[[c for c in t.frame.columns if c not in ("Eads", "label", "Material", "adsorbate",
                                                                    "Binding site")]].astype(float)
            own = pd.concat([own, pd.get_dummies(t.frame["Binding site"], prefix="site", dtype=float)], axis=1)
            groups = list(t.formulas)
            row = {"rows": len(t.y), "materials": len(set(groups))}
            for name, X in (("elprop features", t.X), ("file's own columns", own)):
                for kind in ("gbr", "lgbm"):
                    m, s, lomo = ads_eval(X, t.y, groups, kind, args.ads_repeats)
                    row[f"{kind} on {name}"] = {"mae_random": m, "sd": s, "mae_lomo": lomo}
            # the plain baseline: scikit-learn's GBR with its defaults on the file's columns, same splits
            m, s, lomo = ads_eval(own, t.y, groups, "plain", args.ads_repeats)
            row["plain GBR (defaults) on the file's columns"] = {"mae_random": m, "sd": s, "mae_lomo": lomo}
            ads[ad] = row
            print(ad, row, flush=True)
        res["adsorption"] = ads
        (out / "results.json").write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text(report(res))
    print(report(res))


def report(res):
    lines = [f"- machine: {res['machine']}", f"- command: `{res['command']}`", ""]
    if "dband" in res:
        d = res["dband"]
        lines += [f"d-band overlayers: {d['n']} rows", "",
                  "| target (sd) | features | model | RMSE at 25 % training (eV, mean ± sd) | "
                  "leave-one-metal-out RMSE (eV) | s |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['target']} ({r['target_std']:.2f}) | {r['features']} ({r['n_features']}) | {r['model']} | "
                  f"{r['rmse_25']:.3f} ± {r['sd_25']:.3f} | {r['lomo_rmse']:.3f} | {r['seconds']} |"
                  for r in d["rows"]]
        lines += ["", f"learning curve ({d['best']}):", "", "| training % | RMSE (eV) | MAE (eV) |", "|---|---|---|"]
        lines += [f"| {100 * c['train_fraction']:.0f} | {c['rmse_mean']:.3f} ± {c['rmse_sd']:.3f} | "
                  f"{c['mae_mean']:.3f} ± {c['mae_sd']:.3f} |" for c in d["curve"]]
        lines.append("")
    if "adsorption" in res:
        lines += ["| adsorbate | model and features | MAE random 80/20 (eV) | MAE leave-material-out (eV) |",
                  "|---|---|---|---|"]
        for ad, row in res["adsorption"].items():
            for k, v in row.items():
                if isinstance(v, dict):
                    lines.append(f"| {ad} ({row['rows']} rows, {row['materials']} materials) | {k} | "
                                 f"{v['mae_random']:.3f} ± {v['sd']:.3f} | {v.get('mae_lomo', float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

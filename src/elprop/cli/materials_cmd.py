"""``elprop materials fit|evaluate|predict|screen``: d-band centres and adsorption energies from elemental
descriptors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from elprop.core.cache import atomic_write, write_csv
from elprop.core.dataset import InputError

EPILOG = """examples:
  elprop materials fit --data dband-overlayers --target eps_d_minus_EF_eV --drop-columns shift_eV \\
      --out runs/dband
  elprop materials evaluate --data dband-overlayers --target eps_d_minus_EF_eV \\
      --drop-columns shift_eV --models gbr,lgbm,gp --out runs/dband-eval
  elprop materials fit --data adsorption-o-oh --target Eads --where adsorbate=O --out runs/ads-O
  elprop materials fit --data my_alloys.csv --target Eads --units Eads=eV --out runs/mine
  elprop materials predict --model runs/dband/model --data new_pairs.csv -o preds.csv
  elprop materials screen --model runs/dband/model --elements Fe,Co,Ni,Cu,Ru,Rh,Pd,Ag,Ir,Pt,Au,Os,Re,Zn \\
      --out runs/dband-screen

Input: a CSV with host/guest element columns (host*/substrate*, guest*/overlayer*), or an element x element
matrix (rows hosts, columns guests), or a formula column (formula/material/alloy, e.g. Ti3In). Other numeric
columns (strain, GCN, ...) are kept as features; short text columns (site, adsorbate) are one-hot encoded;
identifier columns (label, id) and --drop-columns are left out.
"""


def add_parser(sub):
    p = sub.add_parser("materials", help="d-band centres and adsorption energies from elemental descriptors",
                       description="Predict d-band centres of metals and bimetallic surfaces, and adsorption "
                                   "energies on alloys, from elemental descriptors (mendeleev).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = p.add_subparsers(dest="subcommand", metavar="subcommand")
    ssub.required = True

    def data_args(q, target=True):
        q.add_argument("--data", required=True,
                       help="the CSV (see the shapes above), or an embedded table: dband-overlayers, "
                            "dband-overlayer-matrix, dband-pure, adsorption-h, adsorption-o-oh (`elprop data info "
                            "NAME`)")
        if target:
            q.add_argument("--target", help="the column to learn (a matrix file: value)")
            q.add_argument("--units", metavar="T=UNIT", help="the target's unit, e.g. Eads=eV (default: the "
                                                             "embedded table's, a header 'name [unit]', else unitless)")
        q.add_argument("--host-column")
        q.add_argument("--guest-column")
        q.add_argument("--formula-column")
        q.add_argument("--descriptors", help="comma list of elemental descriptors (default: 13 standard ones)")
        q.add_argument("--pair-features", default="host,guest,diff,ratio",
                       help="pair tables: which features to build from the two metals' descriptors (default: all "
                            "four; host,guest was best for the d-band table's absolute εd with the GP)")
        q.add_argument("--drop-columns", default="", help="comma list of columns not to use as features")
        q.add_argument("--where", action="append", help="keep rows with column=value (repeatable)")

    f = ssub.add_parser("fit", help="fit a model, write it and its report")
    data_args(f)
    f.add_argument("--model", default="gbr", choices=["gbr", "lgbm", "rf", "gp", "krr"])
    f.add_argument("--train-fraction", type=float, default=0.25,
                   help="training share of the repeated splits behind the parity plot (default 0.25)")
    f.add_argument("--repeats", type=int, default=20, help="repeated random splits per fraction (default 20)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True)
    f.set_defaults(func=run_fit)

    e = ssub.add_parser("evaluate", help="learning curves, leave-one-metal-out and descriptor search")
    data_args(e)
    e.add_argument("--models", default="gbr,lgbm,rf,gp,krr")
    e.add_argument("--fractions", default="0.1,0.25,0.5,0.75,0.9")
    e.add_argument("--repeats", type=int, default=20)
    e.add_argument("--subset-k", type=int, default=4, help="descriptor search up to k descriptors (0: skip)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", required=True)
    e.set_defaults(func=run_evaluate)

    pr = ssub.add_parser("predict", help="predict with a saved model")
    data_args(pr, target=False)
    pr.add_argument("--model", required=True, help="a saved model folder (materials fit --out X: X/model)")
    pr.add_argument("-o", "--output", required=True)
    pr.set_defaults(func=run_predict)

    s = ssub.add_parser("screen", help="rank every candidate host/guest pair of given elements")
    s.add_argument("--model", required=True)
    s.add_argument("--elements", help="comma list of element symbols (default: those of the training data)")
    s.add_argument("--top", type=int, default=20)
    s.add_argument("--ascending", action="store_true", help="rank from the lowest prediction")
    s.add_argument("--out", required=True)
    s.set_defaults(func=run_screen)


def _split(s):
    return [t.strip() for t in (s or "").split(",") if t.strip()]


def _read(args, require_target=True):
    from elprop.data.embedded import resolve
    from elprop.materials.table import read_table
    return read_table(resolve(args.data), getattr(args, "target", None), args.host_column, args.guest_column,
                      args.formula_column, _split(args.descriptors) or None, _split(args.drop_columns), args.where,
                      require_target=require_target, pair_parts=tuple(_split(args.pair_features)))


def _unit(args, target):
    """The target's unit by the target contract: --units, else the embedded table's metadata or a header
    'name [unit]', else unitless. No guessing from the name."""
    from elprop.core.units import UNITLESS, resolve_targets, split_header
    from elprop.data.embedded import EMBEDDED
    name, header_unit = split_header(target)
    known = dict(EMBEDDED[args.data].units) if args.data in EMBEDDED else {}
    if header_unit:
        known[target] = header_unit
    units = getattr(args, "units", None)
    spec = resolve_targets([target], units=units, data_units=known)[0]
    return spec.unit if spec.unit else UNITLESS


def run_fit(args) -> int:
    from elprop.materials.models import MaterialsModel
    from elprop.materials.protocols import learning_curve
    from elprop.materials import report as R
    from tqdm import tqdm
    t = _read(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    unit = _unit(args, t.target)
    # out-of-sample predictions from repeated splits at --train-fraction (parity), learning curve
    rng = np.random.default_rng(args.seed)
    n_tr = max(3, int(round(args.train_fraction * len(t.y))))
    preds = [[] for _ in range(len(t.y))]
    bar = tqdm(total=args.repeats * 6, desc="repeated splits", disable=len(t.y) < 50)  # parity + 5 fractions
    for r in range(args.repeats):
        p = rng.permutation(len(t.y))
        m = MaterialsModel(args.model, seed=args.seed + r, uncertainty=False).fit(t.X.iloc[p[:n_tr]], t.y[p[:n_tr]])
        for i, v in zip(p[n_tr:], m.predict(t.X.iloc[p[n_tr:]])):
            preds[i].append(v)
        bar.update(1)
    oos = np.array([np.mean(v) if v else np.nan for v in preds])
    lc = learning_curve(t.X, t.y, args.model, (0.1, 0.25, 0.5, 0.75, 0.9), args.repeats, args.seed,
                        progress=lambda: bar.update(1))
    bar.close()
    model = MaterialsModel(args.model, seed=args.seed).fit(t.X, t.y)
    imp = model.feature_importance()
    top = [k for k in imp if k in t.X.columns][:3] if imp else list(t.X.columns[:3])
    R.learning_curve_plot(out / "learning_curve.png", lc, t.target, unit)
    R.parity_plot(out / "parity.png", t.y, oos, t.target, unit, f"{int(100 * args.train_fraction)} % training,")
    images = [("learning curve: RMSE over repeated random splits", "learning_curve.png"),
              (f"parity: out-of-sample predictions, {args.repeats} splits with {n_tr} training rows", "parity.png")]
    if imp:
        R.importance_plot(out / "importance.png", imp)
        images.append(("feature importance", "importance.png"))
    R.partial_dependence_plot(out / "partial_dependence.png", model, t.X, top, t.target, unit)
    images.append(("partial dependence on the top features", "partial_dependence.png"))
    if t.kind == "pair":
        fitted = model.predict(t.X)
        R.heatmap_plot(out / "heatmap.png", t.hosts, t.guests, fitted, t.target, unit, "fitted")
        images.append(("host × guest heat map of the fitted model", "heatmap.png"))
    write_csv(out / "learning_curve.csv", lc.to_dict("records"))
    rmse_oos = float(np.sqrt(np.nanmean((oos - t.y) ** 2)))
    card = (f"# elprop materials model: {args.model} for {t.target}\n\n- data: {args.data} ({len(t.y)} rows, "
            f"{t.kind} table)\n- features: {t.X.shape[1]} ({', '.join(t.descriptors)} for "
            f"{'pair features: ' + args.pair_features if t.kind == 'pair' else 'composition statistics'}"
            f"{'; extra columns: ' + ', '.join(map(str, t.extra)) if t.extra else ''})\n"
            f"- out-of-sample RMSE at {int(100 * args.train_fraction)} % training ({args.repeats} splits): "
            f"{rmse_oos:.3f} {unit}\n")
    model.save(out / "model", card=card)
    meta = {"kind": t.kind, "descriptors": t.descriptors, "target": t.target, "unit": unit, "extra": list(map(str, t.extra)),
            "elements": sorted(set(t.hosts) | set(t.guests)) if t.kind == "pair" else [],
            "extra_defaults": {c: float(np.median(t.X[c])) for c in map(str, t.extra) if c in t.X.columns}}
    (out / "model" / "materials.json").write_text(json.dumps(meta, indent=1))
    summary = [f"{args.model} on {len(t.y)} rows of {args.data}, target {t.target} ({unit})",
               f"out-of-sample RMSE {rmse_oos:.3f} {unit} at {int(100 * args.train_fraction)} % training "
               f"({args.repeats} repeated splits); learning curve below",
               f"saved model: {out / 'model'}"]
    R.html_page(out / "report.html", f"materials: {t.target}", summary, images, [("learning curve", lc)])
    print("\n".join(summary))
    print(f"report: {out / 'report.html'}")
    return 0


def run_evaluate(args) -> int:
    import pandas as pd
    from elprop.materials import report as R
    from elprop.materials.protocols import descriptor_search, learning_curve, leave_one_group_out
    from elprop.data.embedded import resolve
    from elprop.materials.table import read_table
    t = _read(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    unit = _unit(args, t.target)
    fr = tuple(float(x) for x in _split(args.fractions))
    curves, lomo = [], []
    for kind in _split(args.models):
        curves.append(learning_curve(t.X, t.y, kind, fr, args.repeats, args.seed))
        go = leave_one_group_out(t.X, t.y, t.groups(), kind, args.seed)
        tab = go.table
        lomo.append({"model": kind, "folds": len(tab), "predictions": len(go.per_fold), "rmse": go.rmse,
                     "mae": go.mae, "worst_held_out": tab.sort_values("rmse").iloc[-1]["held_out"] if len(tab)
                     else ""})
        print(f"{kind}: " + ", ".join(f"{100 * r.train_fraction:.0f} %: {r.rmse_mean:.3f} ± {r.rmse_sd:.3f}"
                                      for r in curves[-1].itertuples()) + f"; leave-one-out RMSE "
              f"{lomo[-1]['rmse']:.3f} {unit}", flush=True)
    lc = pd.concat(curves)
    write_csv(out / "learning_curves.csv", lc.to_dict("records"))
    write_csv(out / "leave_one_group_out.csv", lomo)
    R.learning_curve_plot(out / "learning_curves.png", lc, t.target, unit)
    tables = [("learning curves (RMSE mean ± sd over repeats)", lc),
              ("leave one " + ("metal" if t.kind == "pair" else "material") + " out", pd.DataFrame(lomo))]
    if args.subset_k:
        def feats(desc):
            return read_table(resolve(args.data), t.target, args.host_column, args.guest_column, args.formula_column, desc,
                              _split(args.drop_columns), args.where, pair_parts=tuple(_split(args.pair_features))).X
        best_kind = min(curves, key=lambda c: float(c[c.train_fraction == min(fr, key=lambda f: abs(f - 0.25))]
                                                    .rmse_mean.iloc[0]))["model"].iloc[0]
        steps = descriptor_search(feats, t.descriptors, t.y, args.subset_k, best_kind, 0.25,
                                  max(2, args.repeats // 2), args.seed)
        write_csv(out / "descriptor_search.csv", steps.to_dict("records"))
        tables.append((f"greedy descriptor search ({best_kind}, 25 % training)", steps))
    R.html_page(out / "report.html", f"materials evaluation: {t.target}",
                [f"{len(t.y)} rows of {args.data}, target {t.target} ({unit})"],
                [("learning curves", "learning_curves.png")], tables)
    print(f"report: {out / 'report.html'}")
    return 0


def _load(model_dir):
    from elprop.materials.models import MaterialsModel
    p = Path(model_dir)
    m = MaterialsModel.load(p)
    try:
        meta = json.loads((p / "materials.json").read_text())
    except OSError:
        raise InputError(f"{p}: no materials.json (fit it with `elprop materials fit`)") from None
    return m, meta


def run_predict(args) -> int:
    m, meta = _load(args.model)
    args.descriptors = ",".join(meta["descriptors"])
    t = _read(args, require_target=False)
    missing = [c for c in m.features if c not in t.X.columns]
    if missing:
        raise InputError(f"{args.data}: lacks the model's feature columns {', '.join(missing[:4])}")
    mu, sd = m.predict(t.X, return_std=True)
    df = t.frame.copy()
    df[f"{meta['target']}_pred"] = mu
    df[f"{meta['target']}_std"] = sd
    atomic_write(args.output, lambda tmp: df.to_csv(tmp, index=False))
    print(f"wrote {len(df)} predictions ({meta['target']}, {meta['unit']}) to {args.output}")
    return 0


def run_screen(args) -> int:
    import pandas as pd
    from elprop.materials import report as R
    from elprop.materials.descriptors import check_symbols, element_table
    from elprop.materials.table import candidate_pairs
    m, meta = _load(args.model)
    if meta["kind"] != "pair":
        raise InputError("screen ranks host/guest pairs; this model was fitted on alloy formulas")
    els = _split(args.elements) or meta["elements"]
    check_symbols(els, where="--elements: ")
    t = element_table()
    lacking = [e for e in els if t.loc[e, meta["descriptors"]].isna().any()]
    if lacking:
        print(f"note: {', '.join(lacking)} lack some descriptors; the model imputes them with training medians")
    hosts, guests, X = candidate_pairs(els, meta["descriptors"], meta.get("extra_defaults"))
    mu, sd = m.predict(X[m.features], return_std=True)
    df = pd.DataFrame({"host": hosts, "guest": guests, f"{meta['target']}_pred": mu, f"{meta['target']}_std": sd,
                       "in_training_elements": [h in meta["elements"] and g in meta["elements"]
                                                for h, g in zip(hosts, guests)]})
    df = df.sort_values(f"{meta['target']}_pred", ascending=args.ascending).reset_index(drop=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "ranking.csv", lambda tmp: df.to_csv(tmp, index=False))
    R.heatmap_plot(out / "heatmap.png", hosts, guests, mu, meta["target"], meta["unit"])
    summary = [f"{len(df)} host/guest pairs of {len(els)} elements scored with {args.model}",
               f"{int((~df.in_training_elements).sum())} pairs involve elements outside the training data "
               "(extrapolation: check their σ)"]
    R.html_page(out / "report.html", f"screen: {meta['target']}", summary,
                [("predicted host × guest map", "heatmap.png")], [(f"top {args.top}", df.head(args.top))])
    print("\n".join(summary))
    print(df.head(args.top).to_string(index=False))
    print(f"wrote {out / 'ranking.csv'} and {out / 'report.html'}")
    return 0

"""``elprop subgraph mine|fit|path``: learning over all subgraphs of molecules."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from elprop.core.cache import atomic_write, write_csv
from elprop.core.dataset import InputError

EPILOG = """examples:
  elprop subgraph mine --data qm9 --limit 2000 --min-support 0.02 --max-edges 6 --out runs/sg-mine
  elprop subgraph fit --model sparse-linear --data qm9 --limit 3000 --target gap --lambda 0.01 --out runs/sg-lasso
  elprop subgraph fit --model boosted-trees --data mols.csv --target logS --n-estimators 200 --out runs/sg-gbt
  elprop subgraph fit --model slda --data qm9 --limit 3000 --target gap --topics 20 --out runs/sg-slda
  elprop subgraph path --data qm9 --limit 3000 --target gap --n-lambdas 15 --out runs/sg-path

Molecules are graphs of heavy atoms labelled by element (options: --aromatic, --charge, --hydrogens) with bonds
labelled single/double/triple/aromatic (--kekulize: Kekulé orders). Each command writes a CSV table and
report.html (substructures drawn with their weights and supports) into --out; fit and path also write
metrics.csv (train/test MAE, RMSE, R²), model.json (the substructures as SMARTS with their coefficients) and
model/ (the same as a saved model that `elprop predict` and `elprop evaluate` read).
"""


def add_parser(sub):
    p = sub.add_parser("subgraph", help="mine subgraphs; sparse models, boosted trees and topic models over them",
                       description="Learning over all subgraphs: a gSpan miner, sparse linear models over the "
                                   "complete subgraph feature set, subgraph-split boosted trees, and supervised "
                                   "topic models over bags of subgraphs.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = p.add_subparsers(dest="subcommand", metavar="subcommand")
    ssub.required = True

    def common(q, target=True):
        q.add_argument("--data", default="qm9", help="'qm9' (default), a QM9 tarball/folder, or a CSV/SDF/SMILES "
                                                     "file (any file with SMILES and targets)")
        if target:
            q.add_argument("--target", required=True, help="the target column (see `elprop data info qm9`)")
        q.add_argument("--smiles-column", help="SMILES column of a CSV")
        if target:
            q.add_argument("--units", metavar="T=UNIT",
                           help="unit of your own target, e.g. logS=log(mol/L) (default: from a CSV header "
                                "'logS [log(mol/L)]', else unitless)")
        q.add_argument("--limit", type=int, help="use N molecules of a seeded shuffle")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--min-support", type=float, default=0.01,
                       help="minimum support: a count of molecules, or a fraction if below 1 (default 0.01)")
        q.add_argument("--max-edges", type=int, default=6, help="largest pattern, in bonds (default 6)")
        q.add_argument("--aromatic", action="store_true", help="label atoms aromatic or not")
        q.add_argument("--charge", action="store_true", help="label atoms with their formal charge")
        q.add_argument("--hydrogens", action="store_true", help="keep hydrogens as vertices")
        q.add_argument("--kekulize", action="store_true", help="Kekulé bond orders instead of aromatic bonds")
        q.add_argument("--out", required=True, help="output folder")

    m = ssub.add_parser("mine", help="frequent subgraphs (gSpan) with their support",
                        description="Mine all subgraphs with at least --min-support occurrences (gSpan).")
    common(m, target=False)
    m.add_argument("--top", type=int, default=60, help="patterns drawn in the report (default 60)")
    m.set_defaults(func=run_mine)

    f = ssub.add_parser("fit", help="fit a model over subgraph features and evaluate it on a test split")
    common(f)
    f.add_argument("--model", required=True, choices=["sparse-linear", "boosted-trees", "slda"])
    f.add_argument("--n-train", type=float, default=0.8, help="training share or count (default 0.8; rest test)")
    f.add_argument("--loss", choices=["squared", "logistic"], default="squared",
                   help="sparse-linear: squared (regression) or logistic (0/1 targets)")
    f.add_argument("--lambda", dest="lam", type=float,
                   help="sparse-linear: the penalty λ (default: λ_max / 100)")
    f.add_argument("--l1-ratio", type=float, default=1.0, help="sparse-linear: α in (0, 1]; 1 is the lasso")
    f.add_argument("--n-estimators", type=int, default=100, help="boosted-trees: trees (default 100)")
    f.add_argument("--learning-rate", type=float, default=0.1, help="boosted-trees: shrinkage (default 0.1)")
    f.add_argument("--max-depth", type=int, default=3, help="boosted-trees: depth (default 3)")
    f.add_argument("--min-samples-leaf", type=int, default=5, help="boosted-trees: leaf size (default 5)")
    f.add_argument("--topics", type=int, default=20, help="slda: topics (default 20)")
    f.add_argument("--bag", choices=["ecfp", "wl"], default="ecfp", help="slda: subgraph words (default ecfp)")
    f.add_argument("--radius", type=int, default=2, help="slda: ECFP radius or WL iterations (default 2)")
    f.add_argument("--iterations", type=int, default=500, help="slda: Gibbs sampling iterations (default 500)")
    f.set_defaults(func=run_fit)

    pa = ssub.add_parser("path", help="the sparse-linear regularisation path from λ_max down")
    common(pa)
    pa.add_argument("--n-train", type=float, default=0.8, help="training share or count (default 0.8)")
    pa.add_argument("--n-val", type=float, default=0.1,
                    help="validation share or count (default 0.1), on which λ is chosen; the rest is test, "
                         "scored once at the chosen λ")
    pa.add_argument("--n-lambdas", type=int, default=15)
    pa.add_argument("--ratio", type=float, default=0.01, help="smallest λ / λ_max (default 0.01)")
    pa.add_argument("--loss", choices=["squared", "logistic"], default="squared")
    pa.add_argument("--l1-ratio", type=float, default=1.0)
    pa.set_defaults(func=run_path)


def _data(args, need_target=True):
    from elprop.cli.options import data_spec
    from elprop.core.units import resolve_targets
    from elprop.data.load import load_data
    ds = load_data(data_spec(args, [args.target] if need_target else []))
    y = None
    if need_target:
        args.target_spec = resolve_targets([args.target], units=args.units, data_units=ds.target_units)[0]
        if args.target not in ds.target_names:
            raise InputError(f"target {args.target!r} is not in the data; it has: {', '.join(ds.target_names)}")
        y = ds.target(args.target)
        bad = ~np.isfinite(y)
        if bad.any():
            raise InputError(f"target {args.target!r} has {int(bad.sum())} missing/NaN values (first: row "
                             f"{int(np.nonzero(bad)[0][0]) + 1})")
    return ds, y


def _graphs(args, smiles):
    from elprop.subgraph.molgraph import Labeling, smiles_graphs
    lab = Labeling(args.aromatic, args.charge, args.hydrogens, args.kekulize)
    return smiles_graphs(list(smiles), lab)


def _min_support(args, n):
    from elprop.subgraph.estimator import min_support_count
    return min_support_count(args.min_support, n)


def _split(args, n):
    from elprop.data.splits import random_split
    n_train = int(args.n_train) if args.n_train > 1 else args.n_train
    sp = random_split(n, n_train, 0, args.seed)
    return np.sort(sp["train"]), np.sort(np.concatenate([sp.get("val", []), sp["test"]]).astype(np.int64))


def _contains(smarts_list, mols):
    """Indicator matrix [molecules, patterns] by RDKit substructure matches (the miner's occurrence relation)."""
    from rdkit import Chem
    qs = [Chem.MolFromSmarts(s) for s in smarts_list]
    return np.array([[m.HasSubstructMatch(q) for q in qs] for m in mols], dtype=bool).reshape(len(mols), len(qs))


def _metrics(y_true, y_pred, split, spec):
    from elprop.train.metrics import regression_metrics
    return {"split": split, "target": spec.name, "unit": spec.unit,
            **regression_metrics(np.asarray(y_true, float), np.asarray(y_pred, float))}


def run_mine(args) -> int:
    from elprop.subgraph.gspan import GSpan
    from elprop.subgraph.molgraph import pattern_smarts
    from elprop.subgraph.report import write_report
    ds, _ = _data(args, need_target=False)
    graphs, mols, lab = _graphs(args, ds.smiles)
    ms = _min_support(args, len(graphs))
    t0 = time.time()
    miner = GSpan(graphs, ms, max_edges=args.max_edges)
    pats = miner.mine()
    dt = time.time() - t0
    rows = [{"smarts": pattern_smarts(p.code, lab, p.vertex_label), "support": p.support,
             "support_fraction": round(p.support / len(graphs), 5), "n_edges": p.n_edges,
             "n_vertices": p.n_vertices, "dfs_code": json.dumps([list(e) for e in p.code]),
             "example": int(p.gids[0])} for p in pats]
    rows.sort(key=lambda r: (-r["n_edges"], -r["support"]))
    summary = [f"{len(graphs)} molecules from {ds.source}; minimum support {ms}; at most {args.max_edges} bonds",
               f"{len(pats)} frequent subgraphs in {dt:.2f} s (gSpan)",
               "labels: " + json.dumps({k: v for k, v in lab.to_dict().items() if k != "vocab"})]
    path = write_report(args.out, "frequent subgraphs", rows[:args.top] + rows[args.top:], mols, summary,
                        weight_name="support_fraction", max_drawn=args.top)
    print("\n".join(summary))
    print(f"wrote {Path(args.out) / 'patterns.csv'} and {path}")
    return 0


def run_fit(args) -> int:
    ds, y = _data(args)
    n = len(ds)
    tr, te = _split(args, n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    est = None
    if args.model in ("sparse-linear", "boosted-trees"):
        from elprop.subgraph.estimator import SubgraphModel
        from tqdm import tqdm
        params = ({"loss": args.loss, "l1_ratio": args.l1_ratio, "lambda": args.lam}
                  if args.model == "sparse-linear" else
                  {"n_estimators": args.n_estimators, "learning_rate": args.learning_rate,
                   "max_depth": args.max_depth, "min_samples_leaf": args.min_samples_leaf})
        est = SubgraphModel.new(args.model, args.target_spec, labels=_label_options(args),
                                min_support=args.min_support, max_edges=args.max_edges, params=params)
        bar = tqdm(total=args.n_estimators, desc="trees", unit="tree",
                   disable=args.model != "boosted-trees" or args.n_estimators < 5)
        est.fit(ds, [args.target], {"train": tr}, progress=lambda h: bar.update(1))
        bar.close()
        mols, lab, ms = est.mols, est.labeling, est.config["min_support"]
        report = _report_sparse if args.model == "sparse-linear" else _report_trees
        rows, pred_tr, pred_te, summary, model = report(args, est, y, tr, te)
    else:
        graphs, mols, lab = _graphs(args, ds.smiles)
        ms = _min_support(args, len(tr))
        rows, pred_tr, pred_te, summary, model = _fit_slda(args, [mols[i] for i in tr], y[tr],
                                                         [mols[i] for i in te], tr)
    dt = time.time() - t0
    metrics = [dict(_metrics(y[tr], pred_tr, "train", args.target_spec), model=args.model),
               dict(_metrics(y[te], pred_te, "test", args.target_spec), model=args.model)]
    topic_model = model.pop("_topic_model", None)
    for name, pred in model.pop("_baselines", {}).items():  # baselines on the same bags of subgraphs
        metrics.append(dict(_metrics(y[te], pred, "test", args.target_spec), model=f"{name} on the same bags"))
    write_csv(out / "metrics.csv", metrics)
    model.update({"target": args.target, "labels": lab.to_dict(), "min_support": ms, "max_edges": args.max_edges,
                  "n_train": int(len(tr)), "data": str(ds.source), "seed": args.seed})
    atomic_write(out / "model.json", lambda tmp: Path(tmp).write_text(json.dumps(model, indent=1)))
    # the same model as a saved-model folder, which `elprop evaluate` and `elprop predict` read
    from elprop.subgraph.estimator import SubgraphModel
    saved = est if args.model != "slda" else SubgraphModel(dict(model, targets=[args.target],
                                                               target_spec=args.target_spec.to_dict(),
                                                               labels=lab.to_dict()))
    saved.config.update({"data": str(ds.source), "seed": args.seed, "max_edges": args.max_edges})
    if topic_model is not None:  # tomotopy's binary state beside config.json
        (out / "model").mkdir(parents=True, exist_ok=True)
        saved.config["slda"] = topic_model.save(out / "model" / "slda.bin")
    test_rows = [m for m in metrics if m["split"] == "test"][:1]
    card = "\n".join([f"# elprop subgraph model: {args.model} ({args.target_spec.label})", "",
                      f"- data: {ds.source}, {len(tr)} training / {len(te)} test molecules (seed {args.seed})",
                      f"- subgraphs: minimum support {ms}, at most {args.max_edges} bonds",
                      f"- test MAE {test_rows[0]['mae']:.4g} {args.target_spec.unit}" if test_rows else "",
                      "- prediction: RDKit substructure matches of the SMARTS in config.json"]) + "\n"
    saved.save(out / "model", card=card)
    summary = [f"{args.model} on {len(tr)} training / {len(te)} test molecules from {ds.source}, target "
               f"{args.target}; fitted in {dt:.1f} s"] + summary + \
        [f"{m['model']}, {m['split']}: MAE {m['mae']:.4g} {m['unit']}, RMSE {m['rmse']:.4g}, R² {m['r2']:.3f}"
         for m in metrics]
    from elprop.subgraph.report import write_report
    weight = {"sparse-linear": "coefficient", "boosted-trees": "total gain", "slda": "topic coefficient"}
    path = write_report(out, f"{args.model}: {args.target}", rows, mols, summary, weight_name=weight[args.model],
                        table_name="selected.csv")
    print("\n".join(summary))
    print(f"wrote {out / 'selected.csv'}, {out / 'metrics.csv'}, {out / 'model.json'} and {path}")
    return 0


def _label_options(args) -> dict:
    return {"aromatic": args.aromatic, "charge": args.charge, "hydrogens": args.hydrogens, "kekulize": args.kekulize}


def _report_sparse(args, est, y, tr, te):
    """Report rows, train/test predictions and summary of a fitted sparse-linear SubgraphModel."""
    m = est.learner
    sel = m.selected()
    smarts = [f["smarts"] for f in est.config["features"]]
    coefs = np.array([f["coefficient"] for f in est.config["features"]])
    f_te = m.b + (_contains(smarts, [est.mols[i] for i in te]).astype(float) @ coefs if len(sel) else 0.0)
    f_tr = m.decision()
    if args.loss == "logistic":
        f_te, f_tr = 1 / (1 + np.exp(-f_te)), 1 / (1 + np.exp(-f_tr))
    rows = [{"smarts": s, "coefficient": b, "support": p.support, "n_edges": p.n_edges, "example": int(tr[p.gids[0]])}
            for s, (p, b) in zip(smarts, sel)]
    h = m.history[-1]
    lam = est.config["lambda"]
    summary = [f"λ = {lam:.4g}, α = {args.l1_ratio}: {len(sel)} subgraphs selected; working set {h['working_set']}, "
               f"{h['outer']} search rounds, {h['tree_nodes']} enumeration-tree nodes explored",
               f"intercept {m.b:.4g}; objective {h['objective']:.6g}"]
    if not h["converged"]:
        summary.append("WARNING: the solver stopped before convergence (see the warning above); the coefficients "
                       "are not optimal at this λ")
    return rows, f_tr, f_te, summary, _model_json(est)


def _report_trees(args, est, y, tr, te):
    """Report rows, train/test predictions and summary of fitted boosted subgraph trees."""
    b = est.learner
    keys = list(est.smarts_of)
    X = _contains([est.smarts_of[k] for k in keys], [est.mols[i] for i in te])
    col = {k: j for j, k in enumerate(keys)}
    f_te = b.predict(lambda p: X[:, col[p.key()]], len(te))
    rows = [{"smarts": est.smarts_of[p.key()], "total gain": g, "support": p.support, "uses": c,
             "example": int(tr[p.gids[0]])} for p, g, c in b.feature_importance()]
    summary = [f"{len(b.trees)} trees of depth {args.max_depth}, shrinkage {args.learning_rate}; "
               f"{len(rows)} distinct split subgraphs; {b.tree.size} enumeration-tree nodes explored"]
    return rows, b.train_pred, f_te, summary, _model_json(est)


def _model_json(est) -> dict:
    """model.json: the fitted model's own entries (as saved before the estimator existed)."""
    keep = ("model", "loss", "lambda", "l1_ratio", "converged", "intercept", "features", "init", "learning_rate",
            "trees")
    return {k: est.config[k] for k in keep if k in est.config}


def _fit_slda(args, train_mols, y, test_mols, tr):
    from elprop.subgraph.bags import SLDATopicModel, SubgraphBags, bag_baselines
    bags = SubgraphBags(args.bag, args.radius).fit(train_mols)
    X, docs = bags.transform()
    Xt, docs_t = bags.transform(test_mols)
    m = SLDATopicModel(k=args.topics, iterations=args.iterations, seed=args.seed).fit(docs, y)
    f_tr, f_te = m.predict(docs), m.predict(docs_t)
    base = bag_baselines(X, y, Xt, args.seed)
    topics = m.topics(bags.fragments)
    rows = []
    for t in topics:
        for w, frag, prob in t["words"]:
            rows.append({"smarts": frag, "topic coefficient": t["coef"], "support": "",
                         "note": f"topic {t['topic']}, word {w}, p = {prob:.3f}", "example": None})
    summary = [f"supervised LDA over {args.bag} words (radius {args.radius}), {args.topics} topics, "
               f"{len(bags.vocab)} distinct words; top words per topic below, topics by coefficient"]
    model = {"model": "slda", "topics": topics, "_baselines": base, "bag": args.bag, "radius": args.radius,
             "_topic_model": m}
    return rows, f_tr, f_te, summary, model


def run_path(args) -> int:
    """The regularisation path, scored on a validation split at each λ; the test split is scored once, at the λ
    with the lowest validation MAE."""
    from elprop.data.splits import random_split
    from elprop.subgraph.molgraph import pattern_smarts
    from elprop.subgraph.report import write_report
    from elprop.subgraph.sparse import SubgraphLinearModel
    ds, y = _data(args)
    graphs, mols, lab = _graphs(args, ds.smiles)
    size = (lambda v: int(v) if v > 1 else v)
    sp = random_split(len(graphs), size(args.n_train), size(args.n_val), args.seed)
    tr, va, te = sp["train"], sp["val"], sp["test"]
    if not len(va):
        raise InputError("subgraph path chooses λ on a validation split: give --n-val > 0")
    ms = _min_support(args, len(tr))
    m = SubgraphLinearModel([graphs[i] for i in tr], y[tr], loss=args.loss, alpha=args.l1_ratio, min_support=ms,
                            max_edges=args.max_edges)
    val_mols = [mols[i] for i in va]
    cache, models = {}, []
    rows = []
    t0 = time.time()

    def step(st, hist):
        lam, b, sel, obj = st
        smarts = []
        for p, _ in sel:
            if p.key() not in cache:
                cache[p.key()] = (pattern_smarts(p.code, lab, p.vertex_label), p)
            smarts.append(cache[p.key()][0])
        coefs = np.array([c for _, c in sel])
        models.append((b, smarts, coefs))
        f_va = b + (_contains(smarts, val_mols).astype(float) @ coefs if sel else 0.0)
        rows.append({"lambda": lam, "n_selected": len(sel), "objective": obj,
                     "train_mae": float(np.mean(np.abs(m.decision() - y[tr]))),
                     "val_mae": float(np.mean(np.abs(f_va - y[va]))), "tree_nodes": hist["tree_nodes"],
                     "search_rounds": hist["outer"], "converged": bool(hist.get("converged", True)),
                     "seconds": round(time.time() - t0, 2)})
        print(f"λ {lam:.4g}: {len(sel)} subgraphs, validation MAE {rows[-1]['val_mae']:.4g}, "
              f"{hist['tree_nodes']} tree nodes", flush=True)
    m.path(args.n_lambdas, args.ratio, callback=step)
    k_best = int(np.argmin([r["val_mae"] for r in rows]))
    best = rows[k_best]
    b, smarts, coefs = models[k_best]
    test_mae = float("nan")
    if len(te):
        f_te = b + (_contains(smarts, [mols[i] for i in te]).astype(float) @ coefs if len(smarts) else 0.0)
        test_mae = float(np.mean(np.abs(f_te - y[te])))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "path.csv", rows)
    write_csv(out / "metrics.csv", [{"split": "test", "target": args.target_spec.name, "unit": args.target_spec.unit,
                                     "lambda": best["lambda"], "n_selected": best["n_selected"], "n": len(te),
                                     "mae": test_mae}])
    _path_plot(out / "path.png", rows, args.target_spec.label)
    sel = m.selected()
    last = [{"smarts": cache[p.key()][0], "coefficient": c, "support": p.support, "example": int(tr[p.gids[0]])}
            for p, c in sel]
    u = args.target_spec.unit
    summary = [f"{len(tr)} training / {len(va)} validation / {len(te)} test molecules from {ds.source}, target "
               f"{args.target_spec.label}",
               f"{len(rows)} λ from {rows[0]['lambda']:.4g} (λ_max) to {rows[-1]['lambda']:.4g}; lowest validation "
               f"MAE {best['val_mae']:.4g} {u} at λ = {best['lambda']:.4g} ({best['n_selected']} subgraphs); test MAE "
               f"there {test_mae:.4g} {u} (scored once)",
               "the table lists the subgraphs at the smallest λ"]
    extra = '<p><img src="path.png" alt="regularisation path"></p>'
    path = write_report(out, f"sparse-linear path: {args.target}", last, mols, summary, weight_name="coefficient",
                        extra_html=extra, table_name="selected.csv")
    print(f"chosen on validation: λ = {best['lambda']:.4g}, {best['n_selected']} subgraphs; test MAE {test_mae:.4g} {u}")
    print(f"wrote {out / 'path.csv'}, {out / 'metrics.csv'}, {out / 'path.png'} and {path}")
    return 0


def _path_plot(path, rows, target):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lam = [r["lambda"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    ax[0].semilogx(lam, [r["train_mae"] for r in rows], "o-", label="train")
    ax[0].semilogx(lam, [r["val_mae"] for r in rows], "s-", label="validation")
    ax[0].set_xlabel("λ")
    ax[0].set_ylabel(f"MAE ({target})")
    ax[0].invert_xaxis()
    ax[0].legend()
    ax[1].semilogx(lam, [r["n_selected"] for r in rows], "o-")
    ax[1].set_xlabel("λ")
    ax[1].set_ylabel("subgraphs selected")
    ax[1].invert_xaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

"""Subgraph mining and learning on QM9, side by side in one run.

    .venv/bin/python benchmarks/subgraph.py                    (~40 min on 2 CPU cores)

1. Mining speed: elprop's gSpan against the `gspan-mining` package (its report step patched to collect patterns
   instead of appending to a pandas frame, which pandas >= 2 lacks), on the same QM9 molecules, minimum support
   and size limit. Both pattern counts are printed; the test suite checks that the sets are equal.
2. Learning (one seeded draw from QM9: --n-train training and --n-test test molecules; targets gap, U0
   atomization, U0 atomization less a linear fit in the element counts, and the binary task gap > median of the
   training set):
   - sparse subgraph model: the lasso path over the complete subgraph feature set (`SubgraphLinearModel`),
     λ picked on a validation part of the training set, refitted on all training molecules at that λ;
   - subgraph boosted trees (`SubgraphBoosting`);
   - ECFP4 counts (2048 bits) with the lasso (scikit-learn LassoCV / L1 logistic regression with CV);
   - ECFP4 counts with LightGBM;
   - the graph neural network (`elprop train`, bondgraph) at the same training size and a fixed time budget.
   Test MAE (regression) or accuracy and ROC AUC (classification), with fit times.
3. The regularisation path: its time, and the number of enumeration-tree nodes it explored against the number of
   patterns that exist within the same support and size limits.
Writes results.json and results.md to --out. Asserts nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def reference_mine(graphs, min_support, max_vertices, tmp: Path):
    from gspan_mining.gspan import gSpan

    class Ref(gSpan):
        def _report(self, projected):
            if self._DFScode.get_num_vertices() >= self._min_num_vertices:
                self.count += 1
    from elprop.subgraph.gspan import gspan_text
    path = tmp / "graphs.txt"
    path.write_text(gspan_text(graphs))
    ref = Ref(str(path), min_support=min_support, min_num_vertices=2, max_num_vertices=max_vertices)
    ref.count = 0
    t0 = time.time()
    with contextlib.redirect_stdout(io.StringIO()):
        ref.run()
    return ref.count, time.time() - t0


def mining_speed(ds, sizes, frac, max_vertices, out):
    from elprop.subgraph.gspan import GSpan
    from elprop.subgraph.molgraph import smiles_graphs
    rows = []
    for n in sizes:
        idx = np.random.default_rng(0).permutation(len(ds))[:n]
        graphs, _, _ = smiles_graphs([ds.smiles[i] for i in idx])
        ms = max(1, int(frac * n))
        GSpan(graphs[:50], 5, max_vertices=4).mine()  # compile the kernel outside the timing
        t0 = time.time()
        mine = [p for p in GSpan(graphs, ms, max_vertices=max_vertices, include_vertices=False).mine()]
        t_mine = time.time() - t0
        t0 = time.time()
        numpy_only = GSpan(graphs, ms, max_vertices=max_vertices, include_vertices=False, use_numba=False).mine()
        t_numpy = time.time() - t0
        n_ref, t_ref = reference_mine(graphs, ms, max_vertices, out)
        rows.append({"molecules": n, "min_support": ms, "max_vertices": max_vertices, "patterns_elprop": len(mine),
                     "patterns_gspan_mining": n_ref, "elprop_s": round(t_mine, 3),
                     "elprop_numpy_only_s": round(t_numpy, 3), "gspan_mining_s": round(t_ref, 2),
                     "speedup": round(t_ref / t_mine, 1), "speedup_numpy_only": round(t_ref / t_numpy, 1)})
        assert len(numpy_only) == len(mine)
        print(rows[-1], flush=True)
    return rows


def ecfp(mols, n_bits=2048):
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=n_bits)
    return np.array([gen.GetCountFingerprintAsNumPy(m) for m in mols], dtype=np.float64)


def atom_counts(mols):
    """[n, 6]: counts of H (implicit and explicit), C, N, O, F and other elements per molecule."""
    col = {1: 0, 6: 1, 7: 2, 8: 3, 9: 4}
    out = np.zeros((len(mols), 6))
    for k, m in enumerate(mols):
        for a in m.GetAtoms():
            out[k, col.get(a.GetAtomicNum(), 5)] += 1
            out[k, 0] += a.GetTotalNumHs()
    return out


def contains(smarts, mols):
    from rdkit import Chem
    qs = [Chem.MolFromSmarts(s) for s in smarts]
    return np.array([[m.HasSubstructMatch(q) for q in qs] for m in mols], dtype=float).reshape(len(mols), len(qs))


def sparse_subgraph(graphs, mols, lab, y, tr, te, loss, ms, max_edges, n_lambdas, ratio):
    """Path on 80 % of the training set, λ by validation, refit on all of it; returns predictions and facts."""
    from elprop.subgraph.molgraph import pattern_smarts
    from elprop.subgraph.sparse import SubgraphLinearModel
    rng = np.random.default_rng(1)
    perm = rng.permutation(tr)
    fit_i, val_i = np.sort(perm[:int(0.8 * len(tr))]), np.sort(perm[int(0.8 * len(tr)):])
    t0 = time.time()
    m = SubgraphLinearModel([graphs[i] for i in fit_i], y[fit_i], loss=loss, min_support=ms, max_edges=max_edges)
    best = (np.inf, None)
    val_mols = [mols[i] for i in val_i]

    def score(step, _hist):
        nonlocal best
        lam, b, sel, _ = step
        f = b + (contains([pattern_smarts(p.code, lab, p.vertex_label) for p, _ in sel], val_mols)
                 @ np.array([c for _, c in sel]) if sel else 0.0)
        err = np.mean(np.abs(f - y[val_i])) if loss == "squared" else \
            float(np.mean(np.logaddexp(0, f) - y[val_i] * f))
        if err < best[0]:
            best = (err, lam)
    m.path(n_lambdas, ratio, callback=score)
    t_path = time.time() - t0
    m2 = SubgraphLinearModel([graphs[i] for i in tr], y[tr], loss=loss, min_support=ms, max_edges=max_edges)
    m2.fit(best[1])
    t_all = time.time() - t0
    sel = m2.selected()
    f = m2.b + (contains([pattern_smarts(p.code, lab, p.vertex_label) for p, _ in sel], [mols[i] for i in te])
                @ np.array([c for _, c in sel]) if sel else 0.0)
    return f, {"lambda": best[1], "selected": len(sel), "fit_s": round(t_all, 1), "path_s": round(t_path, 1),
               "path_tree_nodes": m.tree.size, "path_lambdas": n_lambdas}


def boosted(graphs, mols, lab, y, tr, te, ms, max_edges, n_estimators):
    from elprop.subgraph.molgraph import pattern_smarts
    from elprop.subgraph.trees import SubgraphBoosting
    t0 = time.time()
    b = SubgraphBoosting([graphs[i] for i in tr], y[tr], n_estimators=n_estimators, learning_rate=0.1, max_depth=4,
                         min_samples_leaf=5, min_support=ms, max_edges=max_edges).fit()
    t = time.time() - t0
    keys, sm = [], []
    for tree in b.trees:
        for p, _, _ in tree.patterns():
            if p.key() not in keys:
                keys.append(p.key())
                sm.append(pattern_smarts(p.code, lab, p.vertex_label))
    X = contains(sm, [mols[i] for i in te]).astype(bool)
    col = {k: j for j, k in enumerate(keys)}
    return b.predict(lambda p: X[:, col[p.key()]], len(te)), {"fit_s": round(t, 1), "split_patterns": len(keys),
                                                               "tree_nodes": b.tree.size}


def graph_nn(ds_path, target, tr, te, budget, out):
    """elprop's bondgraph through the CLI on the same molecules; returns test predictions."""
    split = out / f"split_{target}.json"
    split.write_text(json.dumps({"train": tr.tolist(), "val": [], "test": te.tolist()}))
    run = out / "runs"
    cmd = [sys.executable, "-m", "elprop.cli.main", "train", "--data", ds_path, "--targets", target, "--split",
           "file", "--split-file", split, "--time-budget", budget, "--epochs", 100000, "--name", f"gnn_{target}",
           "--runs-dir", run, "--no-progress", "--dim", 128]
    t0 = time.time()
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = {r["split"]: r for r in __import__("csv").DictReader(open(run / f"gnn_{target}" / "metrics.csv"))}
    return float(rows["test"]["mae"]), round(time.time() - t0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "out" / "subgraph"))
    ap.add_argument("--speed-sizes", default="2000,10000")
    ap.add_argument("--speed-support", type=float, default=0.01)
    ap.add_argument("--speed-max-vertices", type=int, default=6)
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--min-support", type=float, default=0.005, help="fraction of the training set")
    ap.add_argument("--max-edges", type=int, default=7)
    ap.add_argument("--n-lambdas", type=int, default=12)
    ap.add_argument("--ratio", type=float, default=0.005)
    ap.add_argument("--n-estimators", type=int, default=300)
    ap.add_argument("--gnn-budget", type=float, default=300)
    ap.add_argument("--tasks", default="gap,U0_atom,U0_atom - atom counts,gap>median",
                    help="learning tasks (comma list); 'U0_atom - atom counts' fits the subgraph models to what a "
                         "linear model in the element counts leaves of U0")
    ap.add_argument("--skip", default="", help="comma list: speed,learning")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from elprop.data.qm9 import load_qm9
    ds = load_qm9()
    res_path = out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    from elprop.train.device import machine_description
    res.update(machine=f"{machine_description()}, {os.cpu_count()} cores",
               command=" ".join(sys.argv))
    if "speed" not in skip:
        res["speed"] = mining_speed(ds, [int(s) for s in args.speed_sizes.split(",")], args.speed_support,
                                    args.speed_max_vertices, out)
        res_path.write_text(json.dumps(res, indent=1))
    if "learning" not in skip:
        from sklearn.linear_model import LassoCV, LogisticRegressionCV
        from sklearn.metrics import roc_auc_score
        import lightgbm as lgb
        from elprop.subgraph.gspan import GSpan
        from elprop.subgraph.molgraph import smiles_graphs
        idx = np.random.default_rng(0).permutation(len(ds))[:args.n_train + args.n_test]
        sub = ds.subset(idx)
        graphs, mols, lab = smiles_graphs(list(sub.smiles))
        tr, te = np.arange(args.n_train), np.arange(args.n_train, len(idx))
        ms = max(2, int(args.min_support * args.n_train))
        csv_path = out / "qm9_subset.csv"
        import csv
        with open(csv_path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["smiles", "gap", "U0_atom"])
            for i in range(len(sub)):
                w.writerow([sub.smiles[i], sub.target("gap")[i], sub.target("U0_atom")[i]])
        X = ecfp(mols)
        t0 = time.time()
        n_exist = len(GSpan([graphs[i] for i in tr], ms, max_edges=args.max_edges).mine())
        res["patterns_existing"] = {"count": n_exist, "min_support": ms, "max_edges": args.max_edges,
                                    "enumeration_s": round(time.time() - t0, 1)}
        print("patterns that exist:", res["patterns_existing"], flush=True)
        learning = res.get("learning", {})
        median = float(np.median(sub.target("gap")[tr]))
        for task in args.tasks.split(","):
            y = (sub.target("gap") > median).astype(float) if task == "gap>median" else sub.target(task.split()[0])
            row = {}
            if task == "U0_atom - atom counts":
                # indicators cannot count atoms, so an extensive target is first fitted by a linear model in the
                # element counts (atom reference energies); the subgraph models then learn the residual
                from sklearn.linear_model import LinearRegression
                counts = atom_counts(mols)
                base = LinearRegression().fit(counts[tr], y[tr])
                b_all = base.predict(counts)
                row["atom counts (linear) alone"] = {"mae": float(np.mean(np.abs(b_all[te] - y[te])))}
                r = y - b_all
                f, info = sparse_subgraph(graphs, mols, lab, r, tr, te, "squared", ms, args.max_edges,
                                          args.n_lambdas, args.ratio)
                row["atom counts + sparse subgraph"] = dict(mae=float(np.mean(np.abs(b_all[te] + f - y[te]))), **info)
                f, info = boosted(graphs, mols, lab, r, tr, te, ms, args.max_edges, args.n_estimators)
                row["atom counts + subgraph boosted trees"] = dict(mae=float(np.mean(np.abs(b_all[te] + f - y[te]))),
                                                                   **info)
                gbm = lgb.LGBMRegressor(n_estimators=1000, learning_rate=0.05, num_leaves=31, verbose=-1,
                                        random_state=0).fit(X[tr], r[tr])
                row["atom counts + ECFP4 + LightGBM"] = {"mae": float(np.mean(np.abs(b_all[te] + gbm.predict(X[te])
                                                                                     - y[te])))}
            elif task != "gap>median":
                f, info = sparse_subgraph(graphs, mols, lab, y, tr, te, "squared", ms, args.max_edges,
                                          args.n_lambdas, args.ratio)
                row["sparse subgraph"] = dict(mae=float(np.mean(np.abs(f - y[te]))), **info)
                f, info = boosted(graphs, mols, lab, y, tr, te, ms, args.max_edges, args.n_estimators)
                row["subgraph boosted trees"] = dict(mae=float(np.mean(np.abs(f - y[te]))), **info)
                t0 = time.time()
                las = LassoCV(cv=5, alphas=30, max_iter=20000, random_state=0).fit(X[tr], y[tr])
                row["ECFP4 + lasso"] = {"mae": float(np.mean(np.abs(las.predict(X[te]) - y[te]))),
                                        "fit_s": round(time.time() - t0, 1)}
                t0 = time.time()
                gbm = lgb.LGBMRegressor(n_estimators=1000, learning_rate=0.05, num_leaves=31, verbose=-1,
                                        random_state=0).fit(X[tr], y[tr])
                row["ECFP4 + LightGBM"] = {"mae": float(np.mean(np.abs(gbm.predict(X[te]) - y[te]))),
                                           "fit_s": round(time.time() - t0, 1)}
                mae, secs = graph_nn(csv_path, task, tr, te, args.gnn_budget, out)
                row["graph NN (bondgraph)"] = {"mae": mae, "fit_s": secs}
            else:
                f, info = sparse_subgraph(graphs, mols, lab, y, tr, te, "logistic", ms, args.max_edges,
                                          args.n_lambdas, args.ratio)
                row["sparse subgraph (logistic)"] = dict(accuracy=float(np.mean((f > 0) == (y[te] > 0.5))),
                                                         auc=float(roc_auc_score(y[te], f)), **info)
                t0 = time.time()
                lr = LogisticRegressionCV(Cs=10, cv=5, l1_ratios=[1.0], solver="saga", max_iter=5000, scoring="neg_log_loss",
                                          random_state=0).fit(X[tr], y[tr])
                p = lr.predict_proba(X[te])[:, 1]
                row["ECFP4 + L1 logistic"] = {"accuracy": float(np.mean((p > 0.5) == (y[te] > 0.5))),
                                              "auc": float(roc_auc_score(y[te], p)), "fit_s": round(time.time() - t0, 1)}
                t0 = time.time()
                gbm = lgb.LGBMClassifier(n_estimators=1000, learning_rate=0.05, verbose=-1, random_state=0)
                gbm.fit(X[tr], y[tr])
                p = gbm.predict_proba(X[te])[:, 1]
                row["ECFP4 + LightGBM"] = {"accuracy": float(np.mean((p > 0.5) == (y[te] > 0.5))),
                                           "auc": float(roc_auc_score(y[te], p)), "fit_s": round(time.time() - t0, 1)}
            learning[task] = row
            print(task, row, flush=True)
            res["learning"] = learning
            res_path.write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text(report(res))
    print(report(res))


def report(res) -> str:
    lines = [f"- machine: {res['machine']}", f"- command: `{res['command']}`", ""]
    if "speed" in res:
        lines += ["| molecules | min support | max vertices | patterns (elprop / gspan-mining) | elprop s | "
                  "elprop NumPy-only s | gspan-mining s | speed-up | speed-up NumPy-only |", "|---" * 9 + "|"]
        for r in res["speed"]:
            lines.append(f"| {r['molecules']} | {r['min_support']} | {r['max_vertices']} | {r['patterns_elprop']} / "
                         f"{r['patterns_gspan_mining']} | {r['elprop_s']} | {r['elprop_numpy_only_s']} | "
                         f"{r['gspan_mining_s']} | {r['speedup']}× | {r['speedup_numpy_only']}× |")
        lines.append("")
    if "learning" in res:
        pe = res.get("patterns_existing", {})
        lines.append(f"Patterns that exist in the training set (support >= {pe.get('min_support')}, <= "
                     f"{pe.get('max_edges')} bonds): {pe.get('count')}")
        lines += ["", "| task | model | test MAE (eV) / accuracy, AUC | fit s | notes |", "|---|---|---|---|---|"]
        for task, row in res["learning"].items():
            for name, r in row.items():
                score = f"{r['mae']:.4f}" if "mae" in r else f"{r['accuracy']:.3f}, {r['auc']:.3f}"
                notes = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("mae", "accuracy", "auc", "fit_s"))
                lines.append(f"| {task} | {name} | {score} | {r.get('fit_s', '')} | {notes} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

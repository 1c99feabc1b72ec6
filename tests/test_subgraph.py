"""Subgraph mining and learning: gSpan against the `gspan-mining` package and RDKit, minimality, the traversal
API, and the sparse linear models against scikit-learn on explicitly enumerated features."""
import contextlib
import io
import random

import numpy as np
import pytest

from elprop.subgraph.gspan import GSpan, LabeledGraph, is_min
from elprop.subgraph.molgraph import Labeling, pattern_occurrences, pattern_smarts, smiles_graphs


def _random_graph(rng, n, n_labels, n_elabels, extra):
    lab = [rng.randrange(n_labels) for _ in range(n)]
    edges = {(rng.randrange(v), v) for v in range(1, n)}  # a random tree, then extra edges (rings)
    for _ in range(extra):
        u, v = rng.sample(range(n), 2)
        if (u, v) not in edges and (v, u) not in edges:
            edges.add((u, v))
    return LabeledGraph(lab, [(u, v, rng.randrange(n_elabels)) for u, v in sorted(edges)])


def _reference_patterns(graphs, min_support, max_vertices, tmp_path):
    """Frequent patterns (>= 2 vertices) of the gspan-mining package, as networkx graphs with supports."""
    nx = pytest.importorskip("networkx")
    gspan_mining = pytest.importorskip("gspan_mining.gspan")

    class Ref(gspan_mining.gSpan):
        def _report(self, projected):  # the package's own report appends to a pandas frame (pandas < 2 only)
            if self._DFScode.get_num_vertices() < self._min_num_vertices:
                return
            g = self._DFScode.to_graph()
            G = nx.Graph()
            for vid, v in g.vertices.items():
                G.add_node(vid, l=int(v.vlb))
            for vid, v in g.vertices.items():
                for to, e in v.edges.items():
                    G.add_edge(vid, to, l=int(e.elb))
            self.found.append((G, self._support))
    from elprop.subgraph.gspan import gspan_text
    path = tmp_path / "graphs.txt"
    path.write_text(gspan_text(graphs))
    ref = Ref(str(path), min_support=min_support, min_num_vertices=2, max_num_vertices=max_vertices)
    ref.found = []
    with contextlib.redirect_stdout(io.StringIO()):
        ref.run()
    return ref.found


def _same_pattern_sets(a, b):
    import networkx as nx

    def match(x, y):
        return x["l"] == y["l"]
    free = list(b)
    for G, s in a:
        hit = next((k for k, (H, t) in enumerate(free) if t == s and G.number_of_edges() == H.number_of_edges()
                    and G.number_of_nodes() == H.number_of_nodes()
                    and nx.is_isomorphic(G, H, node_match=match, edge_match=match)), None)
        if hit is None:
            return False
        free.pop(hit)
    return not free


def _as_nx(p):
    import networkx as nx
    g = p.graph()
    G = nx.Graph()
    for v, lv in enumerate(g.vlabels):
        G.add_node(v, l=lv)
    for u, v, el in g.edges:
        G.add_edge(u, v, l=el)
    return G


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gspan_matches_the_gspan_mining_package(seed, tmp_path):
    rng = random.Random(seed)
    graphs = [_random_graph(rng, rng.randint(3, 9), rng.choice([1, 2, 3]), rng.choice([1, 2]), rng.randint(0, 3))
              for _ in range(14)]
    max_v = None if seed % 2 else 5
    ref = _reference_patterns(graphs, 3, max_v if max_v else float("inf"), tmp_path)
    mine = GSpan(graphs, 3, max_vertices=max_v, include_vertices=False).mine()
    assert len(mine) == len(ref) and len({p.code for p in mine}) == len(mine)
    assert all(is_min(p.code) for p in mine)
    assert _same_pattern_sets(ref, [(_as_nx(p), p.support) for p in mine])


def test_gspan_on_molecules_matches_the_package_and_rdkit(qm9, tmp_path):
    idx = np.random.default_rng(0).permutation(len(qm9))[:60]
    graphs, mols, lab = smiles_graphs([qm9.smiles[i] for i in idx])
    mine = GSpan(graphs, 4, max_vertices=5).mine()
    ref = _reference_patterns(graphs, 4, 5, tmp_path)
    edges = [p for p in mine if p.code]
    assert len(edges) == len(ref) > 20
    assert _same_pattern_sets(ref, [(_as_nx(p), p.support) for p in edges])
    # occurrence sets are exactly RDKit's substructure matches of the exported SMARTS, single atoms included
    for p in mine:
        s = pattern_smarts(p.code, lab, p.vertex_label)
        assert np.array_equal(pattern_occurrences(s, mols), p.gids), s


def test_labelings_and_smarts(qm9):
    smi = ["c1ccccc1O", "C[NH3+]", "CC(=O)[O-]", "C#N", "c1ccncc1"]
    for labeling in (Labeling(aromatic=True), Labeling(kekulize=True), Labeling(charge=True, hydrogens=True)):
        graphs, mols, lab = smiles_graphs(smi, labeling)
        for p in GSpan(graphs, 1, max_edges=3).mine():
            s = pattern_smarts(p.code, lab, p.vertex_label)
            assert np.array_equal(pattern_occurrences(s, mols), p.gids), (labeling, s)
    _, _, lab = smiles_graphs(["c1ccccc1"], Labeling(aromatic=True))
    assert "a" in pattern_smarts((), lab, 0)
    from elprop.core.dataset import InputError
    with pytest.raises(InputError):
        Labeling(aromatic=True, kekulize=True)
    with pytest.raises(InputError, match="row 2"):
        smiles_graphs(["CC", "C1CC"])


def test_compiled_and_numpy_extension_give_the_same_patterns(qm9):
    from elprop.subgraph._kernels import HAVE_NUMBA
    idx = np.random.default_rng(4).permutation(len(qm9))[:150]
    graphs, _, _ = smiles_graphs([qm9.smiles[i] for i in idx])
    a = GSpan(graphs, 5, max_vertices=6, use_numba=False).mine()
    b = GSpan(graphs, 5, max_vertices=6, use_numba=True).mine()
    assert HAVE_NUMBA and len(a) == len(b) > 50
    assert all(x.key() == y.key() and np.array_equal(x.gids, y.gids) for x, y in zip(a, b))


def test_traversal_callback_prunes_subtrees(qm9):
    idx = np.random.default_rng(2).permutation(len(qm9))[:80]
    graphs, _, _ = smiles_graphs([qm9.smiles[i] for i in idx])
    miner = GSpan(graphs, 3, max_edges=4)
    every = miner.mine()
    seen = []
    miner.traverse(lambda p: seen.append(p) or p.n_edges < 2)  # expand only patterns with < 2 edges
    assert {p.key() for p in seen} == {p.key() for p in every if p.n_edges <= 2}
    assert miner.n_pruned == sum(1 for p in every if p.n_edges == 2)
    # support is anti-monotone along the tree: every child occurs in a subset of its parent's graphs
    for p in GSpan(graphs, 3, max_edges=3).roots():
        for c in GSpan(graphs, 3, max_edges=3).children(p):
            assert np.isin(c.gids, p.gids).all()


def _explicit(graphs, min_support, max_edges):
    """Indicator matrix over all patterns, columns with equal occurrence sets merged (first pattern kept)."""
    cols = {}
    for p in GSpan(graphs, min_support, max_edges=max_edges).mine():
        cols.setdefault(p.gids.tobytes(), p)
    pats = list(cols.values())
    X = np.zeros((len(graphs), len(pats)))
    for k, p in enumerate(pats):
        X[p.gids, k] = 1.0
    return X, pats


@pytest.fixture(scope="module")
def small_set():
    from elprop.data.qm9 import load_qm9
    ds = load_qm9()
    idx = np.random.default_rng(1).permutation(len(ds))[:100]
    graphs, _, _ = smiles_graphs([ds.smiles[i] for i in idx])
    return graphs, ds.target("gap")[idx], ds.target("mu")[idx]


@pytest.mark.parametrize("alpha,lam", [(1.0, 0.05), (1.0, 0.01), (0.5, 0.02)])
def test_sparse_linear_equals_sklearn_on_the_enumerated_features(small_set, alpha, lam):
    from sklearn.linear_model import ElasticNet
    from elprop.subgraph.sparse import SubgraphLinearModel
    graphs, y, _ = small_set
    X, pats = _explicit(graphs, 2, 3)
    m = SubgraphLinearModel(graphs, y, alpha=alpha, min_support=2, max_edges=3, tol=1e-10).fit(lam)
    sk = ElasticNet(alpha=lam, l1_ratio=alpha, tol=1e-12, max_iter=200000).fit(X, y)
    obj = 0.5 * np.mean((y - sk.predict(X)) ** 2) + lam * (alpha * np.abs(sk.coef_).sum()
                                                           + 0.5 * (1 - alpha) * (sk.coef_ ** 2).sum())
    assert m.objective(lam) == pytest.approx(obj, rel=1e-7)
    mine = {p.gids.tobytes(): b for p, b in m.selected()}
    theirs = {pats[k].gids.tobytes(): sk.coef_[k] for k in np.nonzero(sk.coef_)[0]}
    assert mine.keys() == theirs.keys() and len(mine) > 3
    assert np.allclose([mine[k] for k in theirs], list(theirs.values()), atol=1e-5)
    assert m.tree.size <= len(GSpan(graphs, 2, max_edges=3).mine())  # never more than the feature set


def test_sparse_logistic_equals_sklearn(small_set):
    from sklearn.linear_model import LogisticRegression
    from elprop.subgraph.sparse import SubgraphLinearModel
    graphs, _, mu = small_set
    y = (mu > np.median(mu)).astype(float)
    X, pats = _explicit(graphs, 2, 3)
    lam = 0.02
    m = SubgraphLinearModel(graphs, y, loss="logistic", min_support=2, max_edges=3, tol=1e-10).fit(lam)
    sk = LogisticRegression(l1_ratio=1.0, C=1 / (len(y) * lam), solver="saga", tol=1e-12, max_iter=200000)
    sk.fit(X, y)
    f = sk.decision_function(X)
    obj = float(np.mean(np.logaddexp(0, f) - y * f)) + lam * np.abs(sk.coef_).sum()
    assert m.objective(lam) == pytest.approx(obj, rel=1e-5)
    assert m.objective(lam) <= obj + 1e-9
    mine = {p.gids.tobytes() for p, _ in m.selected()}
    theirs = {pats[k].gids.tobytes() for k in np.nonzero(np.abs(sk.coef_[0]) > 1e-6)[0]}
    assert mine == theirs


def test_regularisation_path_warm_starts_and_reuses_the_tree(small_set):
    from elprop.subgraph.sparse import SubgraphLinearModel
    graphs, y, _ = small_set
    m = SubgraphLinearModel(graphs, y, min_support=2, max_edges=4)
    lmax = m.lambda_max()
    assert m.fit(lmax * 1.0001).selected() == []  # nothing enters at lambda_max
    # branch and bound: finding lambda_max explored a fraction of the feature set
    assert m.tree.size < 0.5 * len(GSpan(graphs, 2, max_edges=4).mine())
    m2 = SubgraphLinearModel(graphs, y, min_support=2, max_edges=4)
    steps = m2.path(n_lambdas=6, ratio=0.05)
    n_active = [len(s[2]) for s in steps]
    assert n_active[0] == 0 and n_active[-1] > n_active[1] >= 1
    assert steps[-1][3] < steps[0][3]  # the objective falls with lambda
    sizes = [h["tree_nodes"] for h in m2.history]
    assert sizes == sorted(sizes)  # the explored tree only grows: earlier nodes are reused, not rebuilt


@pytest.mark.parametrize("depth,leaf", [(1, 1), (3, 1), (4, 5)])
def test_subgraph_tree_equals_sklearn_tree_on_the_enumerated_features(small_set, depth, leaf):
    from sklearn.tree import DecisionTreeRegressor
    from elprop.subgraph.search import SearchTree
    from elprop.subgraph.trees import SubgraphBoosting, SubgraphTree
    graphs, y, _ = small_set
    X, _ = _explicit(graphs, 2, 4)
    st = SearchTree(GSpan(graphs, 2, max_edges=4))
    t = SubgraphTree(depth, leaf).fit(st, y)
    b = SubgraphBoosting(graphs, y, n_estimators=1, learning_rate=1.0)
    b.trees, b.init = [t], 0.0
    mine = b.predict(lambda p: np.isin(np.arange(len(y)), p.gids), len(y))
    theirs = DecisionTreeRegressor(max_depth=depth, min_samples_leaf=leaf, random_state=0).fit(X, y).predict(X)
    assert np.allclose(mine, theirs, atol=1e-10)
    assert len(t.patterns()) >= min(depth, 2)
    if depth == 1:  # the bound prunes: a stump search visits part of the tree only
        assert st.size < len(GSpan(graphs, 2, max_edges=4).mine())


def test_subgraph_boosting_equals_sklearn_boosting(small_set):
    from sklearn.ensemble import GradientBoostingRegressor
    from elprop.subgraph.trees import SubgraphBoosting
    graphs, y, _ = small_set
    X, _ = _explicit(graphs, 2, 4)
    b = SubgraphBoosting(graphs, y, n_estimators=15, learning_rate=0.2, max_depth=3, min_support=2,
                         max_edges=4).fit()
    sk = GradientBoostingRegressor(n_estimators=15, learning_rate=0.2, max_depth=3, random_state=0).fit(X, y)
    assert np.allclose(b.train_pred, sk.predict(X), atol=1e-10)
    rmse = [h["train_rmse"] for h in b.history]
    assert rmse[-1] < rmse[0]
    imp = b.feature_importance()
    assert imp and imp[0][1] >= imp[-1][1] > 0


def test_subgraph_commands_write_reports_and_reject_bad_input(tmp_path, cli):
    import csv
    res = cli("subgraph", "mine", "--limit", "200", "--min-support", "0.05", "--max-edges", "3", "--out",
              tmp_path / "m", "--top", "5")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(tmp_path / "m" / "patterns.csv")))
    assert rows and all(int(r["support"]) >= 10 for r in rows)
    assert (tmp_path / "m" / "report.html").read_text().count("<svg") == 5
    for model, extra in (("sparse-linear", ["--lambda", "0.02"]), ("boosted-trees", ["--n-estimators", "5"])):
        res = cli("subgraph", "fit", "--model", model, "--limit", "200", "--target", "gap", "--max-edges", "3",
                  "--out", tmp_path / model, *extra)
        assert res.returncode == 0, res.stderr
        m = {r["split"]: float(r["mae"]) for r in csv.DictReader(open(tmp_path / model / "metrics.csv"))}
        assert 0 < m["train"] < 1.5 and 0 < m["test"] < 1.6  # the gap's spread is about 1.3 eV
        assert json_load(tmp_path / model / "model.json")["model"] == model
    res = cli("subgraph", "path", "--limit", "150", "--target", "gap", "--max-edges", "3", "--n-lambdas", "4",
              "--out", tmp_path / "p")
    assert res.returncode == 0, res.stderr
    assert len(list(csv.DictReader(open(tmp_path / "p" / "path.csv")))) == 4 and (tmp_path / "p" / "path.png").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("smiles,y\nCCO,1.0\nC1CC,2.0\n")
    res = cli("subgraph", "fit", "--model", "sparse-linear", "--data", bad, "--target", "y", "--out", tmp_path / "b")
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    nan = tmp_path / "nan.csv"
    nan.write_text("smiles,y\nCCO,1.0\nCCC,\n")
    res = cli("subgraph", "fit", "--model", "sparse-linear", "--data", nan, "--target", "y", "--out", tmp_path / "n")
    assert res.returncode == 2
    res = cli("subgraph", "fit", "--model", "sparse-linear", "--limit", "50", "--target", "nope", "--out",
              tmp_path / "x")
    assert res.returncode == 2 and "nope" in res.stderr


def json_load(path):
    import json
    return json.loads(open(path).read())


def test_bags_of_subgraphs_and_supervised_topics(qm9):
    from rdkit import Chem
    from elprop.subgraph.bags import SLDATopicModel, SubgraphBags, bag_baselines, ecfp_words, wl_words
    phenol = Chem.MolFromSmiles("c1ccccc1O")
    w, _ = ecfp_words(phenol, 1)
    assert sum(w.values()) == 2 * 7  # one environment per atom and radius (0 and 1)
    w, _ = wl_words(phenol, 2)
    assert sum(w.values()) == 3 * 7 and len([k for k in w if k.startswith("wl0")]) == 2  # c and O
    idx = np.random.default_rng(5).permutation(len(qm9))[:160]
    mols = [Chem.MolFromSmiles(qm9.smiles[i]) for i in idx]
    y = qm9.target("gap")[idx]
    bags = SubgraphBags("ecfp", 2).fit(mols[:120])
    X, docs = bags.transform()
    Xt, docs_t = bags.transform(mols[120:])
    assert X.shape == (120, len(bags.vocab)) and Xt.shape[1] == X.shape[1]
    assert all(Chem.MolFromSmiles(f, sanitize=False) is not None for f in bags.fragments.values())
    m = SLDATopicModel(k=4, iterations=60, seed=1).fit(docs, y[:120])
    p = m.predict(docs_t, iterations=30)
    assert p.shape == (40,) and np.isfinite(p).all()
    topics = m.topics(bags.fragments, top_n=3)
    assert len(topics) == 4 and all(len(t["words"]) == 3 for t in topics)
    base = bag_baselines(X, y[:120], Xt)
    mean_mae = np.abs(y[120:] - y[:120].mean()).mean()
    assert np.abs(base["ridge"] - y[120:]).mean() < mean_mae

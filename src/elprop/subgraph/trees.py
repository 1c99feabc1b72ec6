"""Regression trees whose split tests are "contains subgraph x", and gradient boosting over them
(Shirakawa, Yokoyama, Okazaki & Takigawa, MLG 2018).

The best split of a node's molecules S (targets r, n = |S|, total T) by a pattern x puts L = S ∩ G(x) left and
the rest right; its gain is the drop in the sum of squared errors,

    gain(L) = (Σ_L r)² / |L| + (T − Σ_L r)² / (n − |L|) − T² / n.

For a supergraph x′ of x, L′ = S ∩ G(x′) ⊆ L. For a fixed size k = |L′| the gain is a convex function of Σ_{L′} r,
so it is largest at an extreme: the k largest or the k smallest values of r in L. The bound

    max over k (within the leaf-size limits) of max(gain(top-k sum), gain(bottom-k sum))

therefore holds for the whole subtree of x, and the search skips a subtree whose bound cannot beat the best
gain found so far (branch and bound), or whose |L| is already below the minimum leaf size. The split found is
the best over the complete subgraph feature set (ties: the first pattern in DFS order).
"""
from __future__ import annotations

import numpy as np

from elprop.subgraph.gspan import GSpan
from elprop.subgraph.search import SearchTree


def _gain(s, k, total, n):
    return s * s / k + (total - s) ** 2 / (n - k) - total * total / n


def split_bound(rl: np.ndarray, total: float, n: int, min_leaf: int) -> float:
    """The largest gain any subset L′ ⊆ L (with min_leaf <= |L′| <= n − min_leaf) can reach; rl = r over L."""
    hi = min(len(rl), n - min_leaf)
    if hi < min_leaf:
        return -np.inf
    srt = np.sort(rl)
    k = np.arange(min_leaf, hi + 1)
    bottom = np.cumsum(srt)[k - 1]
    top = np.cumsum(srt[::-1])[k - 1]
    return float(max(_gain(bottom, k, total, n).max(), _gain(top, k, total, n).max()))


class SubgraphTree:
    """One regression tree: nodes are dicts {pattern, gain, left, right} (internal) or {value} (leaves)."""

    def __init__(self, max_depth: int = 3, min_samples_leaf: int = 1):
        self.max_depth, self.min_leaf = max_depth, max(1, min_samples_leaf)
        self.root = None
        self.n_visits = 0

    def fit(self, tree: SearchTree, r: np.ndarray, idx: np.ndarray | None = None):
        r = np.asarray(r, dtype=np.float64)
        idx = np.arange(len(r)) if idx is None else np.asarray(idx)
        self.root = self._grow(tree, r, idx, 0)
        return self

    def best_split(self, tree: SearchTree, r, idx):
        """(gain, pattern, left indices) of the best split of molecules idx, or (0, None, None)."""
        n = len(idx)
        member = np.zeros(len(r), bool)
        member[idx] = True
        total = float(r[idx].sum())
        best = [0.0, None, None]
        ml = self.min_leaf

        def bound(p):
            self.n_visits += 1
            left = p.gids[member[p.gids]]
            if len(left) < ml:
                return False
            rl = r[left]
            if ml <= len(left) <= n - ml:
                g = _gain(float(rl.sum()), len(left), total, n)
                if g > best[0] * (1 + 1e-12) + 1e-15:
                    best[:] = [g, p, left]
            return split_bound(rl, total, n, ml) > best[0] * (1 + 1e-12) + 1e-15
        tree.search(bound)
        return tuple(best)

    def _grow(self, tree, r, idx, depth):
        value = float(r[idx].mean())
        if depth >= self.max_depth or len(idx) < 2 * self.min_leaf:
            return {"value": value, "n": len(idx)}
        gain, p, left = self.best_split(tree, r, idx)
        if p is None:
            return {"value": value, "n": len(idx)}
        right = np.setdiff1d(idx, left, assume_unique=True)
        return {"pattern": p, "gain": gain, "n": len(idx), "value": value,
                "left": self._grow(tree, r, left, depth + 1), "right": self._grow(tree, r, right, depth + 1)}

    def patterns(self):
        out = []

        def walk(node):
            if "pattern" in node:
                out.append((node["pattern"], node["gain"], node["n"]))
                walk(node["left"])
                walk(node["right"])
        walk(self.root)
        return out


class SubgraphBoosting:
    """Gradient boosting (squared loss) of subgraph-split regression trees: F_0 = mean(y),
    F_m = F_{m−1} + ν · tree_m fitted to the residuals y − F_{m−1}. All trees search one cached enumeration
    tree, so later trees reuse the nodes that earlier ones expanded."""

    def __init__(self, graphs, y, n_estimators: int = 100, learning_rate: float = 0.1, max_depth: int = 3,
                 min_samples_leaf: int = 1, min_support: int = 1, max_edges: int | None = None,
                 max_vertices: int | None = None):
        self.y = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(self.y)):
            raise ValueError("targets must be finite")
        self.n_estimators, self.lr = n_estimators, learning_rate
        self.max_depth, self.min_leaf = max_depth, min_samples_leaf
        self.tree = SearchTree(GSpan(graphs, min_support, max_edges, max_vertices, include_vertices=True))
        self.init = float(self.y.mean())
        self.trees: list[SubgraphTree] = []
        self.train_pred = np.full(len(self.y), self.init)
        self.history = []

    def _tree_values(self, t: SubgraphTree, n: int) -> np.ndarray:
        """A fitted tree's predictions on the training molecules (from the patterns' occurrence sets)."""
        out = np.empty(n)

        def walk(node, rows):
            if "pattern" not in node:
                out[rows] = node["value"]
                return
            member = np.zeros(n, bool)
            member[node["pattern"].gids] = True
            has = member[rows]
            walk(node["left"], rows[has])
            walk(node["right"], rows[~has])
        walk(t.root, np.arange(n))
        return out

    def fit(self, callback=None):
        n = len(self.y)
        for m in range(len(self.trees), self.n_estimators):
            r = self.y - self.train_pred
            t = SubgraphTree(self.max_depth, self.min_leaf).fit(self.tree, r)
            self.trees.append(t)
            self.train_pred = self.train_pred + self.lr * self._tree_values(t, n)
            self.history.append({"tree": m + 1, "train_rmse": float(np.sqrt(np.mean((self.y - self.train_pred) ** 2))),
                                 "search_tree_nodes": self.tree.size, "visits": t.n_visits})
            if callback is not None:
                callback(self.history[-1])
        return self

    def predict(self, contains, n: int) -> np.ndarray:
        """Predictions for n molecules given ``contains(pattern)``, a bool array over them (for new molecules,
        RDKit matches of the pattern's SMARTS; for the training set, membership in the occurrence set)."""
        cache = {}

        def has(p):
            k = p.key()
            if k not in cache:
                cache[k] = np.asarray(contains(p), bool)
            return cache[k]

        def walk(node, rows, out):
            if "pattern" not in node:
                out[rows] = node["value"]
                return
            h = has(node["pattern"])[rows]
            walk(node["left"], rows[h], out)
            walk(node["right"], rows[~h], out)
        total = np.full(n, self.init)
        for t in self.trees:
            out = np.empty(n)
            walk(t.root, np.arange(n), out)
            total += self.lr * out
        return total

    def feature_importance(self):
        """Total gain per pattern over all trees (pattern key -> (pattern, gain, uses))."""
        imp = {}
        for t in self.trees:
            for p, g, _ in t.patterns():
                k = p.key()
                q, s, c = imp.get(k, (p, 0.0, 0))
                imp[k] = (q, s + g, c + 1)
        return sorted(imp.values(), key=lambda v: -v[1])

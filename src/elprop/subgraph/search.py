"""A cached enumeration tree for learners that search the complete subgraph feature set repeatedly.

A learner asks for every pattern whose bound (a function of its occurrence set) exceeds a threshold. Because a
supergraph occurs in a subset of the graphs of its subgraph, a bound computed from a pattern's occurrence set
holds for its whole subtree, so a subtree whose root fails the test is skipped. ``SearchTree`` keeps the nodes
expanded so far (their patterns, occurrence sets and children), so the next search along a regularisation path,
or for the next tree of a boosted ensemble, walks the cached tree and only calls the miner at nodes that were
pruned before. Expanded nodes drop their embeddings; only the frontier keeps them.
"""
from __future__ import annotations

import numpy as np

from elprop.subgraph.gspan import GSpan, Pattern, is_min


class Node:
    __slots__ = ("pattern", "children", "index")

    def __init__(self, pattern: Pattern, index: int):
        self.pattern, self.children, self.index = pattern, None, index


class SearchTree:
    def __init__(self, miner: GSpan):
        self.miner = miner
        self.nodes: list[Node] = []
        self.roots = [self._node(p) for p in miner.roots()]
        self.n_expanded = 0  # miner calls (children computed) over the tree's life
        self.n_visits = 0  # node visits over the tree's life

    def _node(self, p: Pattern) -> Node:
        n = Node(p, len(self.nodes))
        self.nodes.append(n)
        return n

    def _children(self, node: Node) -> list[Node]:
        if node.children is None:
            kids = [p for p in self.miner.children(node.pattern) if is_min(p.code)]
            node.pattern.embeddings = None  # expanded: only the frontier keeps embeddings
            node.children = [self._node(p) for p in kids]
            self.n_expanded += 1
        return node.children

    def search(self, bound, visit=None):
        """Depth-first over the patterns whose ``bound(pattern)`` is True (their subtrees may hold a feature
        worth adding); ``visit(pattern)`` sees each of them. A False bound prunes the subtree."""
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            self.n_visits += 1
            if not bound(node.pattern):
                continue
            if visit is not None:
                visit(node.pattern)
            stack.extend(reversed(self._children(node)))

    @property
    def size(self) -> int:
        return len(self.nodes)


def signed_sums(gids: np.ndarray, r_pos: np.ndarray, r_neg: np.ndarray):
    """(Σ r_i over the pattern's graphs, the bound max(Σ_{r>0} r, −Σ_{r<0} r) for any supergraph). ``r_pos`` and
    ``r_neg`` are the positive and negative parts of the per-graph weights."""
    sp = float(r_pos[gids].sum())
    sn = float(r_neg[gids].sum())
    return sp + sn, max(sp, -sn)

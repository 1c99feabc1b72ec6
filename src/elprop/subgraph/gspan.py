"""gSpan (Yan & Han, 2002) for labelled undirected graphs, with a traversal API for learners.

A pattern is a DFS code: a list of edges (i, j, l_i, l_e, l_j) over DFS indices i, j (forward if i < j,
backward if i > j). Patterns are grown by rightmost-path extension: backward edges from the rightmost vertex to
the rightmost path, and forward edges from the rightmost path to a new vertex. Each pattern is visited once, in
its minimum DFS code; ``is_min`` checks minimality by building the minimum code of the pattern graph greedily
and comparing it prefix by prefix. Each pattern carries its embeddings in the database, so its occurrence set
(the graphs that contain it) is known exactly and its children are found without subgraph-isomorphism tests.

``GSpan.traverse(visit)`` walks the enumeration tree depth-first; ``visit(pattern)`` returns whether to expand
it. This is the hook a learner uses to prune with its own bound: support is anti-monotone along the tree (a
child occurs in a subset of its parent's graphs), so any bound computed from the occurrence set of a pattern
holds for its whole subtree. ``GSpan.mine()`` returns all patterns with support >= min_support.

Speed, against the pure-Python `gspan-mining` package (benchmarks/gspan_speed.py). Profiling showed the
per-embedding loops of the extension step dominate (the minimality check is a few per cent), so a pattern's
embeddings are arrays, graph index [E] and vertex map [E, k] in global vertex ids, and one extension step is a
handful of NumPy operations over all of them: neighbours from a CSR adjacency, "already mapped" as a row-wise
comparison, edges between mapped vertices by binary search in sorted edge keys, and grouping by extension key.
An edge between two mapped vertices is used by the embedding exactly when the pattern has that edge, so no
per-embedding edge sets are needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LabeledGraph:
    """An undirected graph with integer vertex and edge labels."""
    vlabels: list[int]
    edges: list[tuple[int, int, int]]  # (u, v, edge label)

    def adjacency(self):
        adj = [[] for _ in self.vlabels]
        for eid, (u, v, el) in enumerate(self.edges):
            adj[u].append((v, el, eid))
            adj[v].append((u, el, eid))
        return adj


@dataclass
class Pattern:
    """A frequent subgraph: its minimum DFS code, the sorted indices of the graphs that contain it, and its
    embeddings (graph index [E], vertex map [E, n_vertices] in DFS order as global vertex ids, and a bitmask of
    the mapped vertices' local ids), sorted by graph.
    Single-vertex patterns have ``code == ()`` and ``vertex_label`` set."""
    code: tuple
    gids: np.ndarray
    embeddings: object = field(repr=False, default=None)
    vertex_label: int | None = None

    @property
    def support(self) -> int:
        return len(self.gids)

    @property
    def n_edges(self) -> int:
        return len(self.code)

    @property
    def n_vertices(self) -> int:
        if not self.code:
            return 1
        return 1 + max(max(e[0], e[1]) for e in self.code)

    def graph(self) -> LabeledGraph:
        return code_to_graph(self.code, self.vertex_label)

    def key(self):
        """A hashable identity: the minimum DFS code (or the vertex label)."""
        return self.code if self.code else ("v", self.vertex_label)


def gspan_text(graphs) -> str:
    """Graphs in the text format of the original gSpan and of the `gspan-mining` package ('t # k', 'v id label',
    'e u v label', ending with 't # -1'), for comparisons with other miners."""
    parts = []
    for k, g in enumerate(graphs):
        parts.append(f"t # {k}\n" + "".join(f"v {v} {lv}\n" for v, lv in enumerate(g.vlabels))
                     + "".join(f"e {u} {v} {el}\n" for u, v, el in g.edges))
    return "".join(parts) + "t # -1\n"


def code_to_graph(code, vertex_label=None) -> LabeledGraph:
    if not code:
        return LabeledGraph([vertex_label], [])
    n = 1 + max(max(e[0], e[1]) for e in code)
    lab = [0] * n
    edges = []
    for i, j, li, le, lj in code:
        lab[i], lab[j] = li, lj
        edges.append((i, j, le))
    return LabeledGraph(lab, edges)


def rightmost_path(code) -> list[int]:
    """Indices of the code's forward edges on the rightmost path, from the rightmost edge back to the root."""
    path, old_frm = [], None
    for k in range(len(code) - 1, -1, -1):
        i, j = code[k][0], code[k][1]
        if i < j and (old_frm is None or j == old_frm):
            path.append(k)
            old_frm = i
    return path


def _ext_key(e):
    """The gSpan order of extensions of one code: backward before forward; backward by (target, edge label);
    forward from the deepest rightmost-path vertex first, then (edge label, new vertex label)."""
    i, j, _, le, lj = e
    return (0, j, le, 0) if i > j else (1, -i, le, lj)


def is_min(code) -> bool:
    """Is ``code`` the minimum DFS code of its graph?"""
    if len(code) <= 1:
        return len(code) == 0 or code[0][2] <= code[0][4]
    g = code_to_graph(code)
    lab, adj = g.vlabels, g.adjacency()
    first = min((lab[u], el, lab[v]) for u in range(len(lab)) for v, el, _ in adj[u])
    c0 = (code[0][2], code[0][3], code[0][4])
    if first < c0:
        return False
    embs = [((u, v), 1 << eid) for u in range(len(lab)) for v, el, eid in adj[u] if (lab[u], el, lab[v]) == first]
    prefix = [code[0]]
    for k in range(1, len(code)):
        rm = rightmost_path(prefix)
        r = prefix[rm[0]][1]
        on_path = [prefix[x][0] for x in rm]  # ancestors of r (DFS indices), deepest first
        best, best_embs = None, []
        for vmap, emask in embs:
            vr = vmap[r]
            cands = []
            for j in on_path:
                vj = vmap[j]
                for w, el, eid in adj[vr]:
                    if w == vj and not (emask >> eid) & 1:
                        cands.append(((0, j, el, 0), (vmap, emask | (1 << eid))))
            used = set(vmap)
            for i in [r] + on_path:
                for w, el, eid in adj[vmap[i]]:
                    if w not in used:
                        cands.append(((1, -i, el, lab[w]), (vmap + (w,), emask | (1 << eid))))
            for key, emb in cands:
                if best is None or key < best:
                    best, best_embs = key, [emb]
                elif key == best:
                    best_embs.append(emb)
        ck = _ext_key(code[k])
        if best < ck:
            return False
        prefix.append(code[k])
        embs = best_embs
    return True


class GSpan:
    """gSpan over ``graphs`` (LabeledGraph list) with minimum support (a count of graphs) and size limits."""

    def __init__(self, graphs: list[LabeledGraph], min_support: int = 1, max_edges: int | None = None,
                 max_vertices: int | None = None, include_vertices: bool = True, use_numba: bool | None = None):
        from elprop.subgraph._kernels import HAVE_NUMBA
        self.use_numba = HAVE_NUMBA if use_numba is None else (use_numba and HAVE_NUMBA)
        self.graphs = graphs
        self.min_support = max(1, int(min_support))
        self.max_edges = max_edges if max_edges is not None else 10 ** 9
        self.max_vertices = max_vertices if max_vertices is not None else 10 ** 9
        self.include_vertices = include_vertices
        self.n_visited = 0  # patterns visited (frequent and minimal) in the last traversal
        self.n_pruned = 0  # patterns whose expansion the visitor declined
        # one global numbering of vertices; adjacency as CSR; edges as sorted keys u * NV + v (both directions)
        sizes = np.array([len(g.vlabels) for g in graphs], dtype=np.int64)
        self.offset = np.concatenate([[0], np.cumsum(sizes)])
        nv = int(self.offset[-1])
        self.vgraph = np.repeat(np.arange(len(graphs), dtype=np.int32), sizes)
        self.vlab = np.array([lv for g in graphs for lv in g.vlabels], dtype=np.int64)
        n_edges = np.array([len(g.edges) for g in graphs], dtype=np.int64)
        e = np.array([t for g in graphs for t in g.edges], dtype=np.int64).reshape(-1, 3)
        o = np.repeat(self.offset[:-1], n_edges)
        src = np.concatenate([o + e[:, 0], o + e[:, 1]])
        dst = np.concatenate([o + e[:, 1], o + e[:, 0]])
        lab = np.concatenate([e[:, 2], e[:, 2]])
        order = np.lexsort((dst, src))
        self.nbr, self.nbr_lab = dst[order], lab[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=nv))]).astype(np.int64)
        self.deg = np.diff(self.indptr)
        self.nv = nv
        # dense per-graph edge-label matrices, flattened: label of (u, v) at sq_offset[g] + lu * n_g + lv (0: none)
        self.local = np.arange(nv, dtype=np.int64) - self.offset[self.vgraph]
        self.gsize = sizes
        self.sq_offset = np.concatenate([[0], np.cumsum(sizes * sizes)]).astype(np.int64)
        dense = np.zeros(int(self.sq_offset[-1]), dtype=np.int16)
        gs = self.vgraph[src]
        dense[self.sq_offset[gs] + self.local[src] * sizes[gs] + self.local[dst]] = lab + 1
        self.dense = dense
        # mapped-vertex sets as 63-bit masks of local ids when every graph is small enough
        self.bitmask = bool(len(sizes) == 0 or sizes.max() <= 63)
        self.n_labels = int(self.vlab.max()) + 1 if nv else 1
        self.n_elabels = int(lab.max()) + 1 if len(lab) else 1

    # --- the enumeration tree ------------------------------------------------------------------------
    def roots(self):
        """Frequent single-vertex patterns (if ``include_vertices``; leaves) and single-edge patterns, in gSpan
        order."""
        out = []
        if self.include_vertices:
            for lv in np.unique(self.vlab):
                gids = np.unique(self.vgraph[self.vlab == lv])
                if len(gids) >= self.min_support:
                    out.append(Pattern((), gids, None, vertex_label=int(lv)))
        u = np.repeat(np.arange(self.nv, dtype=np.int64), self.deg)
        v, el = self.nbr, self.nbr_lab
        lu, lv = self.vlab[u], self.vlab[v]
        ok = lu <= lv
        u, v, el, lu, lv = u[ok], v[ok], el[ok], lu[ok], lv[ok]
        for key, rows in _groups(np.stack([lu, el, lv], 1)):
            vm = np.stack([u[rows], v[rows]], 1).astype(np.int32)
            g = self.vgraph[vm[:, 0]]
            mask = None
            if self.bitmask:
                mask = (np.int64(1) << self.local[vm[:, 0]]) | (np.int64(1) << self.local[vm[:, 1]])
            gids = _sorted_unique(g)
            if len(gids) >= self.min_support:
                out.append(Pattern(((0, 1) + tuple(int(x) for x in key),), gids, (g, vm, mask)))
        return out

    def _neighbours(self, src):
        """For global vertices ``src`` [E]: (row into src, neighbour, edge label) of all their edges."""
        deg = self.deg[src]
        total = int(deg.sum())
        rows = np.repeat(np.arange(len(src), dtype=np.int64), deg)
        start = np.repeat(self.indptr[src] - np.concatenate([[0], np.cumsum(deg)[:-1]]), deg)
        pos = start + np.arange(total, dtype=np.int64)
        return rows, self.nbr[pos], self.nbr_lab[pos]

    def _edge_label(self, gid, a, b):
        """Label of the edge between global vertices a and b of graphs gid, or -1 (vectorised)."""
        return self.dense[self.sq_offset[gid] + self.local[a] * self.gsize[gid] + self.local[b]].astype(np.int64) - 1

    def _mapped(self, vm, mask, rows, w):
        """Is vertex w already in row ``rows`` of the vertex map? (bit test on local ids, or a row comparison)"""
        if mask is not None:
            return ((mask[rows] >> self.local[w]) & 1).astype(bool)
        return (vm[rows] == w[:, None]).any(1)

    def _embeddings(self, p: Pattern):
        """(graph [E], vertex map [E, k], mapped-vertex bitmask [E] or None), built now if ``p`` holds only its
        parent's arrays and the rows that extend (children are materialised only once they pass is_min)."""
        emb = p.embeddings
        if isinstance(emb, _Lazy):
            emb = p.embeddings = emb.build(self)
        return emb

    def _forward(self, gid, vm, mask, srcs, tree_el, tree_lj, l0):
        """[(key, rows, new vertices)] of the forward extensions, grouped by key, frequent groups only."""
        if self.use_numba:
            from elprop.subgraph._kernels import forward_groups
            keys, starts, ends, rows, w = forward_groups(
                vm, mask if mask is not None else np.zeros(len(vm), np.int64), mask is not None,
                np.asarray(srcs, np.int64), tree_el, tree_lj, self.indptr, self.nbr, self.nbr_lab, self.vlab,
                self.local, l0, self.n_elabels, self.n_labels, gid, self.min_support)
            return [(keys[i], rows[starts[i]:ends[i]], w[starts[i]:ends[i]]) for i in range(len(keys))]
        n_src = len(srcs)
        flat, w, el = self._neighbours(vm[:, srcs].ravel())  # row-major: embedding e, source s at e * n_src + s
        rows, s_idx = flat // n_src, flat % n_src
        lw = self.vlab[w]
        ok = (lw >= l0) & ~self._mapped(vm, mask, rows, w)
        te, tl = tree_el[s_idx], tree_lj[s_idx]
        ok &= (s_idx == 0) | (te < el) | ((te == el) & (tl <= lw))
        rows, w, el, lw, s_idx = rows[ok], w[ok], el[ok], lw[ok], s_idx[ok]
        key = (s_idx * self.n_elabels + el) * self.n_labels + lw
        return [(kv, rows[sel], w[sel]) for kv, sel in _groups1(key)]

    def children(self, p: Pattern) -> list[Pattern]:
        """The frequent extensions of ``p`` (not yet checked for minimality), in gSpan order. Works on all
        embeddings at once with array operations."""
        code = p.code
        if not code or len(code) >= self.max_edges or p.embeddings is None:
            return []
        gid, vm, mask = self._embeddings(p)
        rm = rightmost_path(code)
        r = code[rm[0]][1]
        last = code[rm[0]]
        l0 = code[0][2]
        pairs = {(min(e[0], e[1]), max(e[0], e[1])) for e in code}
        cands = []  # (extension edge, embedding rows, new vertex column or None)
        vr = vm[:, r]
        for k in rm[::-1]:  # backward edges from the rightmost vertex to the rightmost path
            i, _, _, le1, lj1 = code[k]
            if k == rm[0] or (min(i, r), max(i, r)) in pairs:
                continue
            el = self._edge_label(gid, vr, vm[:, i])
            # gSpan's pruning: the back edge must not be smaller than the tree edge it closes
            ok = (el >= 0) & ((le1 < el) | ((le1 == el) & (lj1 <= last[4])))
            for e_lab in np.flatnonzero(np.bincount(el[ok], minlength=1)):  # the labels present, ascending
                rows = np.nonzero(ok & (el == e_lab))[0]
                cands.append(((r, i, last[4], int(e_lab), code[k][2]), rows, None))
        if r + 1 < self.max_vertices:
            # forward: from the rightmost vertex (source 0), then from the rest of the rightmost path
            srcs = [r] + [code[k][0] for k in rm]
            tree_el = np.array([0] + [code[k][3] for k in rm], dtype=np.int64)
            tree_lj = np.array([0] + [code[k][4] for k in rm], dtype=np.int64)
            per = self.n_elabels * self.n_labels
            for kv, rows, w in self._forward(gid, vm, mask, srcs, tree_el, tree_lj, l0):
                si, rest = divmod(int(kv), per)
                e_lab, w_lab = divmod(rest, self.n_labels)
                li = last[4] if si == 0 else code[rm[si - 1]][2]
                cands.append(((srcs[si], r + 1, li, e_lab, w_lab), rows, w))
        out = []
        for e, rows, w in sorted(cands, key=lambda c: _ext_key(c[0])):
            g = gid[rows]
            gids = _sorted_unique(g)
            if len(gids) < self.min_support:
                continue
            out.append(Pattern(code + (e,), gids, _Lazy(g, vm, mask, rows, w)))
        return out

    def traverse(self, visit, roots=None):
        """Depth-first over frequent minimal patterns: ``visit(pattern)`` is called once per pattern and returns
        True to expand it (False prunes its subtree). Returns the number of patterns visited."""
        self.n_visited = self.n_pruned = 0
        stack = list(reversed(self.roots() if roots is None else roots))
        while stack:
            p = stack.pop()
            if p.support < self.min_support or (p.code and not is_min(p.code)):
                continue
            self.n_visited += 1
            if not visit(p):
                self.n_pruned += 1
                continue
            stack.extend(reversed(self.children(p)))
        return self.n_visited

    def mine(self, keep_embeddings: bool = False) -> list[Pattern]:
        """All frequent patterns (support >= min_support, within the size limits)."""
        out = []

        def visit(p):
            out.append(p if keep_embeddings else Pattern(p.code, p.gids, None, p.vertex_label))
            return True
        self.traverse(visit)
        return out


def _groups(keys: np.ndarray):
    """(key row, indices) for each distinct row of ``keys`` [n, k], in increasing key order; indices ascending."""
    if len(keys) == 0:
        return []
    order = np.lexsort(keys.T[::-1])
    sk = keys[order]
    brk = np.nonzero((np.diff(sk, axis=0) != 0).any(1))[0] + 1
    return [(sk[a], np.sort(order[a:b])) for a, b in zip(np.concatenate([[0], brk]), np.concatenate([brk, [len(sk)]]))]


class _Lazy:
    """A child's embeddings as the parent's arrays and the rows (and new vertices) that extend them."""
    __slots__ = ("g", "vm", "mask", "rows", "w")

    def __init__(self, g, vm, mask, rows, w):
        self.g, self.vm, self.mask, self.rows, self.w = g, vm, mask, rows, w

    def build(self, miner):
        vm = self.vm[self.rows]
        mask = None if self.mask is None else self.mask[self.rows]
        if self.w is not None:
            vm = np.concatenate([vm, self.w[:, None].astype(vm.dtype)], 1)
            if mask is not None:
                mask = mask | (np.int64(1) << miner.local[self.w])
        return self.g, vm, mask


def _groups1(key: np.ndarray):
    """(key, indices) for each distinct value of an int array, in increasing key order; indices ascending."""
    if len(key) == 0:
        return []
    order = np.argsort(key, kind="stable")
    sk = key[order]
    brk = np.flatnonzero(sk[1:] != sk[:-1]) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [len(sk)]])
    return [(sk[a], order[a:b]) for a, b in zip(starts, ends)]


def _sorted_unique(g: np.ndarray) -> np.ndarray:
    """Unique values of an ascending array."""
    if len(g) == 0:
        return g
    return g[np.concatenate([[True], g[1:] != g[:-1]])]

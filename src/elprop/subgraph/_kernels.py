"""Compiled inner loop of gSpan's forward extension (Numba), with the same output as the NumPy version.

Profiling the vectorised miner showed that once the per-embedding Python loops were gone, the forward-extension
step still made about fifteen passes over arrays of (embedding, source vertex, neighbour) triples: expanding
CSR neighbour lists, gathers of labels and masks, the "already mapped" test, the pruning test, and grouping by
key with a sort. This kernel does it in one pass and groups with a counting sort over the small key space
(source × edge label × vertex label). Without Numba, ``HAVE_NUMBA`` is False and the miner uses NumPy.
"""
from __future__ import annotations

import numpy as np

try:
    from numba import njit
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    HAVE_NUMBA = False

    def njit(*a, **k):
        def wrap(f):
            return f
        return wrap(a[0]) if a and callable(a[0]) else wrap


@njit(cache=True, nogil=True)
def forward_groups(vm, mask, use_mask, srcs, tree_el, tree_lj, indptr, nbr, nbr_lab, vlab, local, l0, n_el, n_lab,
                   gid, min_support):
    """Forward extensions of all embeddings ``vm`` [E, k] from DFS vertices ``srcs`` (source 0 is the rightmost
    vertex; sources s > 0 carry their rightmost-path tree edge's label ``tree_el[s]`` and child label
    ``tree_lj[s]`` for gSpan's pruning). Returns (keys, starts, ends, rows, new vertices): the candidates grouped
    by key = (s · n_el + edge label) · n_lab + new vertex label in increasing key order, rows ascending within a
    group, keeping only groups that occur in at least ``min_support`` distinct graphs ``gid[row]``."""
    E, k = vm.shape
    ns = len(srcs)
    total = 0
    for e in range(E):
        for s in range(ns):
            v = vm[e, srcs[s]]
            total += indptr[v + 1] - indptr[v]
    rows = np.empty(total, np.int64)
    ws = np.empty(total, np.int64)
    keys = np.empty(total, np.int64)
    c = 0
    for e in range(E):
        for s in range(ns):
            v = vm[e, srcs[s]]
            for q in range(indptr[v], indptr[v + 1]):
                w = nbr[q]
                lw = vlab[w]
                if lw < l0:
                    continue
                if use_mask:
                    if (mask[e] >> local[w]) & 1:
                        continue
                else:
                    seen = False
                    for t in range(k):
                        if vm[e, t] == w:
                            seen = True
                            break
                    if seen:
                        continue
                el = nbr_lab[q]
                if s > 0:
                    te = tree_el[s]
                    if not (te < el or (te == el and tree_lj[s] <= lw)):
                        continue
                rows[c] = e
                ws[c] = w
                keys[c] = (s * n_el + el) * n_lab + lw
                c += 1
    n_keys = ns * n_el * n_lab
    counts = np.zeros(n_keys + 1, np.int64)
    for i in range(c):
        counts[keys[i] + 1] += 1
    for i in range(n_keys):
        counts[i + 1] += counts[i]
    pos = counts[:-1].copy()
    out_rows = np.empty(c, np.int64)
    out_ws = np.empty(c, np.int64)
    for i in range(c):  # stable counting sort: rows stay ascending within a key
        p = pos[keys[i]]
        out_rows[p] = rows[i]
        out_ws[p] = ws[i]
        pos[keys[i]] = p + 1
    g_keys = np.empty(n_keys, np.int64)
    g_starts = np.empty(n_keys, np.int64)
    g_ends = np.empty(n_keys, np.int64)
    n_groups = 0
    for key in range(n_keys):
        a, b = counts[key], counts[key + 1]
        if b == a:
            continue
        distinct = 0
        last = -1
        for i in range(a, b):
            g = gid[out_rows[i]]
            if g != last:
                distinct += 1
                last = g
        if distinct >= min_support:
            g_keys[n_groups] = key
            g_starts[n_groups] = a
            g_ends[n_groups] = b
            n_groups += 1
    return g_keys[:n_groups], g_starts[:n_groups], g_ends[:n_groups], out_rows, out_ws

"""Graph-level genetic operators and a seeded genetic algorithm over molecules.

The operators act on RDKit's editable molecule (Kekulé form, explicit bond orders) and are the method, so they
are written here: change an atom's element, change a bond's order, add an atom, insert an atom into a bond,
remove an atom (a terminal one, or a chain atom whose neighbours are then bonded), close a ring between atoms
2–6 bonds apart, open a ring bond, and a crossover that joins a fragment of each parent at an acyclic single
bond (the "non-ring crossover" of Jensen, Chem. Sci. 10, 3567 (2019)). A SELFIES mutation (replace, insert or
delete one token; the `selfies` library decodes any token string to a valid molecule) adds moves that the graph
operators reach only in several steps. Every child is sanitised and checked against the search space; a move
that breaks a valence or leaves the space is retried. All randomness comes from one ``numpy`` Generator, so a
seed fixes the run.
"""
from __future__ import annotations

import numpy as np
from rdkit import Chem

from elprop.design.space import SearchSpace

BOND = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
ORDER = {v: k for k, v in BOND.items()}
MUTATIONS = ("atom", "bond", "add", "insert", "remove", "ring_close", "ring_open", "selfies")


def _kekule(mol: Chem.Mol) -> Chem.RWMol:
    m = Chem.RWMol(mol)
    Chem.Kekulize(m, clearAromaticFlags=True)
    return m


def _finish(m: Chem.RWMol, space: SearchSpace) -> str | None:
    """Sanitise an edited molecule; its canonical SMILES if it lies in the space."""
    try:
        for a in m.GetAtoms():
            a.SetNoImplicit(False)
            a.SetNumExplicitHs(0)
        mol = m.GetMol()
        Chem.SanitizeMol(mol)
        smi = Chem.MolToSmiles(mol)
        mol = Chem.MolFromSmiles(smi)  # a round trip catches what sanitisation lets through (e.g. aromaticity)
    except Exception:  # RDKit raises several types for a broken valence or ring
        return None
    if mol is None or space.reason(mol):
        return None
    return Chem.MolToSmiles(mol)


def _free_valence(a: Chem.Atom) -> int:
    return a.GetTotalNumHs()


class Operators:
    """The mutation and crossover moves over a search space, all drawing from ``rng``."""

    def __init__(self, space: SearchSpace, rng: np.random.Generator, selfies_alphabet: list[str] | None = None):
        self.space, self.rng = space, rng
        self.elements = [Chem.GetPeriodicTable().GetAtomicNumber(e) for e in space.elements]
        self._alphabet = selfies_alphabet

    # --- mutations ---------------------------------------------------------------------------------------------
    def mutate(self, smiles: str, tries: int = 12) -> str | None:
        """One random mutation of ``smiles`` (a different molecule inside the space), or None."""
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            return None
        for _ in range(tries):
            op = MUTATIONS[int(self.rng.integers(len(MUTATIONS)))]
            child = self._selfies(smiles) if op == "selfies" else getattr(self, f"_{op}")(_kekule(mol))
            if child is not None and child != smiles:
                return child
        return None

    def _pick(self, items):
        return items[int(self.rng.integers(len(items)))] if len(items) else None

    def _atom(self, m):
        a = self._pick(list(m.GetAtoms()))
        new = self._pick([z for z in self.elements if z != a.GetAtomicNum()])
        if new is None:
            return None
        a.SetAtomicNum(new)
        return _finish(m, self.space)

    def _bond(self, m):
        b = self._pick(list(m.GetBonds()))
        if b is None:
            return None
        cur = ORDER.get(b.GetBondType(), 1)
        new = self._pick([o for o in (1, 2, 3) if o != cur])
        b.SetBondType(BOND[new])
        return _finish(m, self.space)

    def _add(self, m):
        a = self._pick([x for x in m.GetAtoms() if _free_valence(x) > 0])
        if a is None:
            return None
        order = int(self.rng.choice([1, 1, 1, 2, 3]))
        i = m.AddAtom(Chem.Atom(int(self._pick(self.elements))))
        m.AddBond(a.GetIdx(), i, BOND[order])
        return _finish(m, self.space)

    def _insert(self, m):
        b = self._pick(list(m.GetBonds()))
        if b is None:
            return None
        u, v, bt = b.GetBeginAtomIdx(), b.GetEndAtomIdx(), b.GetBondType()
        m.RemoveBond(u, v)
        i = m.AddAtom(Chem.Atom(int(self._pick(self.elements))))
        m.AddBond(u, i, bt)
        m.AddBond(i, v, Chem.BondType.SINGLE)
        return _finish(m, self.space)

    def _remove(self, m):
        if m.GetNumAtoms() <= 2:
            return None
        a = self._pick([x for x in m.GetAtoms() if x.GetDegree() in (1, 2) and not x.IsInRing()] or
                       [x for x in m.GetAtoms() if x.GetDegree() == 1])
        if a is None:
            return None
        nbrs = [n.GetIdx() for n in a.GetNeighbors()]
        if len(nbrs) == 2 and m.GetBondBetweenAtoms(*nbrs) is None:
            m.AddBond(nbrs[0], nbrs[1], Chem.BondType.SINGLE)
        m.RemoveAtom(a.GetIdx())
        return _finish(m, self.space)

    def _ring_close(self, m):
        dist = Chem.GetDistanceMatrix(m)
        lo, hi = self.space.min_ring - 1, self.space.max_ring - 1
        free = [x.GetIdx() for x in m.GetAtoms() if _free_valence(x) > 0]
        pairs = [(i, j) for k, i in enumerate(free) for j in free[k + 1:] if lo <= dist[i, j] <= hi]
        pair = self._pick(pairs)
        if pair is None:
            return None
        m.AddBond(int(pair[0]), int(pair[1]), Chem.BondType.SINGLE)
        return _finish(m, self.space)

    def _ring_open(self, m):
        b = self._pick([x for x in m.GetBonds() if x.IsInRing()])
        if b is None:
            return None
        m.RemoveBond(b.GetBeginAtomIdx(), b.GetEndAtomIdx())
        return _finish(m, self.space)

    def _selfies(self, smiles: str):
        import selfies as sf
        try:
            toks = list(sf.split_selfies(sf.encoder(smiles)))
        except Exception:  # selfies refuses a few valid SMILES (e.g. unusual valences)
            return None
        alphabet = self.alphabet()
        k = int(self.rng.integers(3))
        pos = int(self.rng.integers(len(toks) + (k == 1)))
        if k == 0 and toks:
            toks[min(pos, len(toks) - 1)] = self._pick(alphabet)
        elif k == 1:
            toks.insert(pos, self._pick(alphabet))
        elif len(toks) > 1:
            del toks[min(pos, len(toks) - 1)]
        try:
            smi = sf.decoder("".join(toks))
        except Exception:
            return None
        mol = Chem.MolFromSmiles(smi) if smi else None
        return None if mol is None or self.space.reason(mol) else Chem.MolToSmiles(mol)

    def alphabet(self) -> list[str]:
        """SELFIES tokens of the space's elements (no charges, no stereo), branches and rings."""
        if self._alphabet is None:
            import selfies as sf
            keep = set(self.space.elements)
            out = []
            for t in sorted(sf.get_semantic_robust_alphabet()):
                core = t.strip("[]").lstrip("=#/\\")
                if any(c in core for c in "+-@/\\"):
                    continue
                if core in keep:
                    out.append(t)
            out += ["[Branch1]", "[Ring1]", "[=Branch1]", "[Ring2]"]
            self._alphabet = out
        return self._alphabet

    # --- crossover ---------------------------------------------------------------------------------------------
    def crossover(self, a: str, b: str, tries: int = 12) -> str | None:
        """Join a fragment of ``a`` and one of ``b``, each cut at an acyclic single bond; None if no child fits."""
        ma, mb = Chem.MolFromSmiles(a), Chem.MolFromSmiles(b)
        if ma is None or mb is None:
            return None
        for _ in range(tries):
            fa, fb = self._fragment(ma), self._fragment(mb)
            if fa is None or fb is None:
                return None
            combo = Chem.RWMol(Chem.CombineMols(fa[0], fb[0]))
            combo.AddBond(fa[1], fa[0].GetNumAtoms() + fb[1], Chem.BondType.SINGLE)
            child = _finish(combo, self.space)
            if child is not None and child not in (a, b):
                return child
        return None

    def _fragment(self, mol):
        """(fragment, attachment atom) from cutting a random acyclic single bond and keeping a random side."""
        bonds = [x for x in mol.GetBonds() if not x.IsInRing() and x.GetBondType() == Chem.BondType.SINGLE]
        b = self._pick(bonds)
        if b is None:
            return None
        m = _kekule(mol)
        u, v = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        m.RemoveBond(u, v)
        keep = u if self.rng.random() < 0.5 else v
        frags = Chem.GetMolFrags(m, asMols=False, sanitizeFrags=False)
        side = next(f for f in frags if keep in f)
        frag = Chem.RWMol(m)
        for i in sorted(set(range(m.GetNumAtoms())) - set(side), reverse=True):
            frag.RemoveAtom(i)
        new_idx = sorted(side).index(keep)
        return frag, new_idx


def run_ga(population: list[str], fitness, ops: Operators, *, generations: int = 8, offspring: int = 200,
           keep: int = 100, p_crossover: float = 0.5, progress=None) -> dict[str, float]:
    """A steady genetic algorithm: each generation breeds ``offspring`` children from parents drawn by
    rank-weighted sampling (crossover with probability ``p_crossover``, then a mutation), scores them with
    ``fitness(list of SMILES) -> array`` and keeps the best ``keep`` distinct molecules. Returns every molecule
    scored, SMILES -> fitness (the pool a batch is chosen from)."""
    rng = ops.rng
    pop = list(dict.fromkeys(population))
    scored = dict(zip(pop, np.asarray(fitness(pop), dtype=float)))
    for g in range(generations):
        pop = sorted(pop, key=lambda s: -_finite(scored[s]))[:keep]
        w = 1.0 / (np.arange(len(pop)) + 10.0)
        w /= w.sum()
        children = []
        for _ in range(offspring * 3):
            if len(children) >= offspring:
                break
            p1 = pop[int(rng.choice(len(pop), p=w))]
            child = p1
            if rng.random() < p_crossover and len(pop) > 1:
                p2 = pop[int(rng.choice(len(pop), p=w))]
                child = ops.crossover(p1, p2) or p1
            child = ops.mutate(child) if child == p1 or rng.random() < 0.5 else child
            if child and child not in scored and child not in children:
                children.append(child)
        if children:
            scored.update(zip(children, np.asarray(fitness(children), dtype=float)))
        pop = list(dict.fromkeys(pop + children))
        if progress is not None:
            progress(g + 1, generations, len(scored))
    return scored


def random_molecules(seeds: list[str], ops: Operators, n: int, steps: int = 3) -> list[str]:
    """``n`` distinct molecules from random walks of ``steps`` mutations (or crossovers) away from ``seeds``:
    the generator without any surrogate (the random baseline)."""
    out, rng = {}, ops.rng  # a dict keeps the order of first appearance and looks up in constant time
    seen = set(seeds)
    for _ in range(n * 20):
        if len(out) >= n:
            break
        s = seeds[int(rng.integers(len(seeds)))]
        for _ in range(steps):
            if rng.random() < 0.3:
                s = ops.crossover(s, seeds[int(rng.integers(len(seeds)))]) or s
            s = ops.mutate(s) or s
        if s not in out and s not in seen:
            out[s] = None
    return list(out)


def _finite(v: float) -> float:
    return v if np.isfinite(v) else -np.inf

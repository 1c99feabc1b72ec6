"""The applicability domain of a trained model: where its training data say nothing.

Two checks on the molecule's graph, both fitted on the training molecules, with thresholds set on the validation
molecules (so that a chosen fraction of in-distribution molecules, 1 % by default, is flagged):

- **rare substructures**: every atom environment of radius 0 and 1 (Morgan/ECFP2 identifiers: element, degree,
  hydrogens, charge, ring membership, and the bonds to the neighbours) is counted over the training molecules. An
  environment found in fewer than ``min_count`` of them is rare; a terminal ``=CH2`` or an allene's central carbon
  never occurs in QM9, for example. ``min_count`` is the largest value that flags at most the target fraction of
  validation molecules.
- **nearest training neighbour**: the largest Tanimoto similarity (Morgan radius 2, 1,024 bits) to a seeded
  sample of the training molecules; below the validation set's lower quantile it is flagged.

``score`` gives a continuous domain score per molecule for ranking (the number of rare environments plus the
Tanimoto distance to the nearest neighbour: larger is farther from the training data) and the warning text.
"""
from __future__ import annotations

import numpy as np

FP_BITS = 1024
MIN_COUNTS = (1, 2, 3, 5, 10, 20, 50, 100)


def _mol(smiles):
    from rdkit import Chem
    return Chem.MolFromSmiles(str(smiles)) if smiles else None


def _env_gen():
    from rdkit.Chem import rdFingerprintGenerator
    return rdFingerprintGenerator.GetMorganGenerator(radius=1)


def _fp_gen():
    from rdkit.Chem import rdFingerprintGenerator
    return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=FP_BITS)


def environments(mols) -> list:
    """Per molecule, the set of its radius-0/1 environment identifiers (None for an unreadable molecule)."""
    gen = _env_gen()
    return [None if m is None else set(gen.GetSparseCountFingerprint(m).GetNonzeroElements()) for m in mols]


def fingerprints(mols) -> tuple[np.ndarray, np.ndarray]:
    """(packed bits [n, FP_BITS/8] uint8, ok mask)."""
    gen = _fp_gen()
    out = np.zeros((len(mols), FP_BITS // 8), np.uint8)
    ok = np.zeros(len(mols), bool)
    for i, m in enumerate(mols):
        if m is not None:
            out[i] = np.packbits(gen.GetFingerprintAsNumPy(m).astype(bool))
            ok[i] = True
    return out, ok


def unpacked(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bits [FP_BITS, n] float32, bit counts [n]) of packed reference fingerprints, for ``nn_similarity``."""
    r = np.unpackbits(ref, axis=1).astype(np.float32)
    return np.ascontiguousarray(r.T), r.sum(1)


def nn_similarity(query: np.ndarray, ref, block: int = 512) -> np.ndarray:
    """Largest Tanimoto similarity of each packed fingerprint in ``query`` to the reference (packed, or
    ``unpacked(ref)``): the common bits as a sparse (query) times dense (reference) product, in blocks."""
    import scipy.sparse as sp
    rt, rc = unpacked(ref) if isinstance(ref, np.ndarray) else ref
    out = np.zeros(len(query))
    for s in range(0, len(query), block):
        q = sp.csr_matrix(np.unpackbits(query[s:s + block], axis=1).astype(np.float32))
        inter = np.asarray(q @ rt)
        union = np.asarray(q.sum(1)) + rc[None, :] - inter
        out[s:s + block] = (inter / np.maximum(union, 1.0)).max(1)
    return out


class Domain:
    def __init__(self, env_ids=None, env_counts=None, ref_fps=None, min_count: int = 1, nn_threshold: float = 0.0,
                 false_alarm: float = 0.01, n_train: int = 0, fit_report: dict | None = None):
        self.counts = dict(zip((int(e) for e in env_ids), (int(c) for c in env_counts))) if env_ids is not None \
            else {}
        self.ref = ref_fps if ref_fps is not None else np.zeros((0, FP_BITS // 8), np.uint8)
        self.min_count, self.nn_threshold, self.false_alarm = int(min_count), float(nn_threshold), float(false_alarm)
        self.n_train, self.fit_report = int(n_train), dict(fit_report or {})

    # --- fit ---------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, train_smiles, val_smiles, false_alarm: float = 0.01, max_ref: int = 20000, seed: int = 0):
        tr_mols = [_mol(s) for s in train_smiles]
        counts: dict[int, int] = {}
        for envs in environments(tr_mols):
            for e in envs or ():
                counts[e] = counts.get(e, 0) + 1
        fps, ok = fingerprints(tr_mols)
        pick = np.nonzero(ok)[0]
        if len(pick) > max_ref:
            pick = np.sort(np.random.default_rng(seed).choice(pick, max_ref, replace=False))
        d = cls(list(counts), list(counts.values()), fps[pick], false_alarm=false_alarm, n_train=int(ok.sum()))
        va_mols = [m for m in (_mol(s) for s in val_smiles) if m is not None]
        if not va_mols:  # nothing to set thresholds on: only never-seen environments are flagged
            d.fit_report = {"n_val": 0, "note": "no validation molecules; only never-seen environments flagged"}
            return d
        rarest = np.array([min((counts.get(e, 0) for e in envs), default=0) for envs in environments(va_mols)])
        rates = {c: float((rarest < c).mean()) for c in MIN_COUNTS}
        d.min_count = max([c for c in MIN_COUNTS if rates[c] <= false_alarm], default=1)
        sim = nn_similarity(fingerprints(va_mols)[0], d.ref)
        d.nn_threshold = float(np.quantile(sim, false_alarm))
        flagged = (rarest < d.min_count) | (sim < d.nn_threshold)
        d.fit_report = {"n_val": len(va_mols), "val_flag_rate_by_min_count": rates,
                        "val_nn_similarity_median": float(np.median(sim)),
                        "val_flagged_fraction": float(flagged.mean())}
        return d

    def extended(self, smiles) -> "Domain":
        """A copy that also knows the molecules ``smiles`` (fine-tuning data): their environments are counted and
        their fingerprints join the reference; the thresholds stay as fitted."""
        mols = [m for m in (_mol(s) for s in smiles) if m is not None]
        d = Domain(list(self.counts), list(self.counts.values()), self.ref, self.min_count, self.nn_threshold,
                   self.false_alarm, self.n_train + len(mols), dict(self.fit_report, added=len(mols)))
        for envs in environments(mols):
            for e in envs:
                d.counts[e] = d.counts.get(e, 0) + 1
        if mols:
            d.ref = np.concatenate([self.ref, fingerprints(mols)[0]])
        return d

    # --- use ---------------------------------------------------------------------------------------
    def score(self, smiles) -> dict:
        """``score`` (NaN for unreadable molecules), ``nn_similarity``, ``rare`` (list of (fragment, count) per
        molecule) and ``flags`` (the warning text, "" inside the domain)."""
        from rdkit import Chem
        from rdkit.Chem import rdFingerprintGenerator
        mols = [_mol(s) for s in smiles]
        fps, ok = fingerprints(mols)
        sim = np.full(len(mols), np.nan)
        if ok.any() and len(self.ref):
            if getattr(self, "_unpacked", None) is None or self._unpacked[1].shape[0] != len(self.ref):
                self._unpacked = unpacked(self.ref)  # once per model, not per call
            sim[ok] = nn_similarity(fps[ok], self._unpacked)
        gen = _env_gen()
        rare, flags, score = [], [], np.full(len(mols), np.nan)
        for i, m in enumerate(mols):
            if m is None:
                rare.append([])
                flags.append("")
                continue
            envs = gen.GetSparseCountFingerprint(m).GetNonzeroElements()
            found = []
            if any(self.counts.get(int(e), 0) < self.min_count for e in envs):  # name them (rarely needed)
                ao = rdFingerprintGenerator.AdditionalOutput()
                ao.AllocateBitInfoMap()
                gen.GetSparseCountFingerprint(m, additionalOutput=ao)
                info = ao.GetBitInfoMap()
                for e in envs:
                    c = self.counts.get(int(e), 0)
                    if c < self.min_count:
                        atom, radius = info[e][0]
                        found.append((_fragment(Chem, m, atom, radius), c))
            found = sorted(set(found), key=lambda t: (t[1], t[0]))
            rare.append(found)
            msg = []
            if found:
                msg.append("rare substructure " + ", ".join(f"{f} (in {c} training molecules)" for f, c in found[:3])
                           + (f" and {len(found) - 3} more" if len(found) > 3 else ""))
            if np.isfinite(sim[i]) and sim[i] < self.nn_threshold:
                msg.append(f"far from the training data (nearest-neighbour Tanimoto {sim[i]:.2f} < "
                           f"{self.nn_threshold:.2f})")
            flags.append("; ".join(msg))
            score[i] = len(found) + (1.0 - sim[i] if np.isfinite(sim[i]) else 1.0)
        return {"score": score, "nn_similarity": sim, "rare": rare, "flags": flags}

    # --- save / load ------------------------------------------------------------------------------
    def to_config(self) -> dict:
        return {"min_count": self.min_count, "nn_threshold": self.nn_threshold, "false_alarm": self.false_alarm,
                "n_train": self.n_train, "n_reference": int(len(self.ref)), "fit": self.fit_report,
                "fingerprint": f"Morgan radius 2, {FP_BITS} bits; environments: Morgan radius 0-1 identifiers"}

    def arrays(self) -> dict:
        ids = np.fromiter(self.counts.keys(), dtype=np.int64, count=len(self.counts))
        cnt = np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts))
        return {"env_ids": ids, "env_counts": cnt, "ref_fps": np.ascontiguousarray(self.ref)}

    @classmethod
    def from_saved(cls, cfg: dict, arrays: dict):
        return cls(arrays["env_ids"], arrays["env_counts"], arrays["ref_fps"], cfg.get("min_count", 1),
                   cfg.get("nn_threshold", 0.0), cfg.get("false_alarm", 0.01), cfg.get("n_train", 0),
                   cfg.get("fit"))


def _fragment(Chem, mol, atom: int, radius: int) -> str:
    """The SMILES of an atom environment (the atom alone at radius 0; with its bonds at radius 1), with the
    centre's hydrogens written out, e.g. '[CH2]=C'."""
    a = mol.GetAtomWithIdx(atom)
    h = a.GetTotalNumHs()
    centre = f"[{a.GetSymbol()}{'H' + (str(h) if h > 1 else '') if h else ''}]"
    if radius == 0:
        d = a.GetDegree()
        return centre + f" (with {d} heavy neighbour{'' if d == 1 else 's'}{', in a ring' if a.IsInRing() else ''})"
    bonds = Chem.FindAtomEnvironmentOfRadiusN(mol, radius, atom)
    atoms = {atom}
    for b in bonds:
        bd = mol.GetBondWithIdx(b)
        atoms.update((bd.GetBeginAtomIdx(), bd.GetEndAtomIdx()))
    m = Chem.RWMol(mol)
    m.GetAtomWithIdx(atom).SetNumExplicitHs(h)
    m.GetAtomWithIdx(atom).SetNoImplicit(True)
    return Chem.MolFragmentToSmiles(m, atomsToUse=sorted(atoms), bondsToUse=list(bonds) or None,
                                    rootedAtAtom=atom, canonical=False, allHsExplicit=False)

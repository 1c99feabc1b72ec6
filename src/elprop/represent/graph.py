"""The graph representation: 2D heavy-atom graphs as padded arrays (``GraphSet``), from SMILES, optionally with
heavy-atom 3D distances (an MMFF conformer, or the data's own structures).

A set holds one row per molecule, padded to the largest molecule in the set; ``valid`` marks molecules that
could be represented (the others are listed in ``errors``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from elprop.core.cache import atomic_write, cache_dir
from elprop.core.dataset import Dataset, InputError

COUNT_Z = [1, 6, 7, 8, 9]  # element counts for atom-reference fits; the last column counts all others


def element_counts(z_lists) -> np.ndarray:
    out = np.zeros((len(z_lists), len(COUNT_Z) + 1), dtype=np.float32)
    for i, z in enumerate(z_lists):
        for a in z:
            out[i, COUNT_Z.index(a) if a in COUNT_Z else len(COUNT_Z)] += 1
    return out


@dataclass
class GraphSet:
    """Heavy-atom graphs: x [M,N,F], bond/dist codes [M,N,N], mask [M,N], element counts [M,6]; with a
    geometry, ``d3`` [M,N,N] holds the heavy-atom distances (Å) of one force-field conformer."""
    x: np.ndarray
    bond: np.ndarray
    dist: np.ndarray
    mask: np.ndarray
    counts: np.ndarray
    valid: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)
    d3: np.ndarray | None = None

    def __len__(self):
        return len(self.x)

    @property
    def in_dim(self) -> int:
        return int(self.x.shape[-1])

    def subset(self, idx) -> "GraphSet":
        idx = np.asarray(idx, dtype=np.int64)
        errors = {k: self.errors[int(i)] for k, i in enumerate(idx) if int(i) in self.errors}
        return GraphSet(self.x[idx], self.bond[idx], self.dist[idx], self.mask[idx], self.counts[idx],
                        self.valid[idx], errors, None if self.d3 is None else self.d3[idx])

    def batch(self, idx):
        import torch
        n = int(self.mask[idx].sum(1).max()) if len(idx) else 0
        n = max(n, 1)
        out = {"x": torch.from_numpy(self.x[idx, :n]),
               "bond": torch.from_numpy(self.bond[idx, :n, :n].astype(np.int64)),
               "dist": torch.from_numpy(self.dist[idx, :n, :n].astype(np.int64)),
               "mask": torch.from_numpy(self.mask[idx, :n]), "counts": torch.from_numpy(self.counts[idx])}
        if self.d3 is not None:
            out["d3"] = torch.from_numpy(self.d3[idx, :n, :n])
        return out


GEOMETRIES = ("mmff", "dataset")
_GENERIC_BONDS = None


def _heavy_positions(heavy, z, pos):
    """Positions of ``heavy``'s atoms (a heavy-atom RDKit molecule) in a 3D structure (z, pos in Å), matched by
    element and connectivity (bonds perceived from the distances; bond orders ignored), or None."""
    global _GENERIC_BONDS
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    from elprop.core.dataset import SYMBOLS
    if _GENERIC_BONDS is None:
        _GENERIC_BONDS = Chem.AdjustQueryParameters.NoAdjustments()
        _GENERIC_BONDS.makeBondsGeneric = True
    block = f"{len(z)}\n\n" + "\n".join(f"{SYMBOLS[int(a)]} {x:.6f} {y:.6f} {w:.6f}" for a, (x, y, w) in zip(z, pos))
    st = Chem.MolFromXYZBlock(block)
    if st is None:
        return None
    try:
        rdDetermineBonds.DetermineConnectivity(st)
    except Exception:  # RDKit raises ValueError/RuntimeError on impossible structures
        return None
    hv = np.array([a.GetIdx() for a in st.GetAtoms() if a.GetAtomicNum() > 1])
    st_heavy = Chem.RWMol(st)
    for i in sorted((a.GetIdx() for a in st.GetAtoms() if a.GetAtomicNum() == 1), reverse=True):
        st_heavy.RemoveAtom(i)
    m = st_heavy.GetSubstructMatch(Chem.AdjustQueryProperties(heavy, _GENERIC_BONDS))
    if len(m) != heavy.GetNumAtoms() or st_heavy.GetNumAtoms() != heavy.GetNumAtoms():
        return None
    return np.asarray(pos, dtype=np.float64)[hv[list(m)]]


def _one(args):
    """(features, element list, heavy-atom distances or None, error or None) of one SMILES (and structure)."""
    from rdkit import Chem

    from elprop.chem.features import featurize_mol, unknown_elements
    from elprop.chem.rdkit_utils import embed_mol, mol_from_smiles

    s, feature_set, geometry, structure = args
    try:
        mol = mol_from_smiles(s)
        bad = unknown_elements(mol)
        if bad:
            raise InputError(f"SMILES {s!r}: element(s) {', '.join(bad)} not seen in training")
        if mol.GetNumHeavyAtoms() == 0:
            raise InputError(f"SMILES {s!r}: no heavy atoms")
        heavy = Chem.RemoveHs(mol, sanitize=False) if any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()) else mol
        f = featurize_mol(heavy, feature_set)
        d3 = None
        pos = None
        if geometry == "dataset":
            if structure is None:
                raise InputError(f"SMILES {s!r}: this model reads 3D structures (give xyz, sdf or QM9 input)")
            pos = _heavy_positions(heavy, *structure)  # then two fallbacks, so that every molecule is predicted
            if pos is None:  # the structure's connectivity differs from the SMILES: use its own graph
                from elprop.chem.rdkit_utils import mol_from_structure
                smol = mol_from_structure(*structure)
                if smol is not None:
                    heavy = Chem.RemoveHs(smol, sanitize=False)  # keeps the conformer (and any bridging H)
                    f = featurize_mol(heavy, feature_set)
                    pos = heavy.GetConformer().GetPositions()
                else:  # no bond orders fit the structure (e.g. a zwitterion that relaxed to neutral): force field
                    geometry = "mmff"
        if geometry == "mmff":  # embed in canonical atom order, so the conformer does not depend on how the SMILES is written
            order = np.argsort(list(Chem.CanonicalRankAtoms(heavy)))  # canonical position -> atom index
            canon = Chem.RenumberAtoms(heavy, [int(i) for i in order])
            pos_c = embed_mol(canon, seed=42, label=s).GetConformer().GetPositions()[:heavy.GetNumAtoms()]
            pos = np.empty_like(pos_c)
            pos[order] = pos_c  # heavy atoms keep their indices in the embedded molecule; H come after them
        if pos is not None:
            d3 = np.linalg.norm(pos[:, None] - pos[None], axis=-1).astype(np.float32)
        return f, [a.GetAtomicNum() for a in Chem.AddHs(mol).GetAtoms()], d3, None
    except InputError as e:
        return None, [], None, str(e)


def featurize_smiles(smiles, feature_set: str = "extended", progress: bool = False,
                     geometry: str | None = None, structures=None) -> GraphSet:
    """Graphs of SMILES strings. ``geometry="mmff"`` adds heavy-atom distances from one seeded ETKDG + MMFF94
    conformer per molecule (embedding runs in worker processes for large sets); ``geometry="dataset"`` takes
    them from ``structures`` (one (z, pos) per SMILES, e.g. the QM9 DFT geometries)."""
    from elprop.chem.features import feature_dim

    if geometry is not None and geometry not in GEOMETRIES:
        raise InputError(f"unknown geometry {geometry!r}; known: {', '.join(GEOMETRIES)}")
    smiles = list(smiles)
    structures = [None] * len(smiles) if structures is None else list(structures)
    jobs = [(s, feature_set, geometry, st) for s, st in zip(smiles, structures)]
    pool = None
    if geometry and len(jobs) > 2000:
        import multiprocessing as mp
        import os
        pool = mp.get_context("fork").Pool(min(os.cpu_count() or 1, 8))
        it = pool.imap(_one, jobs, chunksize=64)
    else:
        it = map(_one, jobs)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(jobs), desc=f"featurizing ({feature_set}{', ' + geometry if geometry else ''})",
                  unit="mol", mininterval=1.0)
    results = list(it)
    if pool is not None:
        pool.close()
        pool.join()
    errors = {i: r[3] for i, r in enumerate(results) if r[3] is not None}
    m = len(results)
    n = max([r[0][0].shape[0] for r in results if r[0] is not None], default=1)
    fdim = feature_dim(feature_set)
    x = np.zeros((m, n, fdim), np.float32)
    bond = np.zeros((m, n, n), np.int8)
    dist = np.zeros((m, n, n), np.int8)
    mask = np.zeros((m, n), bool)
    d3 = np.zeros((m, n, n), np.float32) if geometry else None
    for i, (f, _, d, _) in enumerate(results):
        if f is None:
            continue
        k = f[0].shape[0]
        x[i, :k], bond[i, :k, :k], dist[i, :k, :k], mask[i, :k] = f[0], f[1], f[2], True
        if d3 is not None:
            d3[i, :k, :k] = d
    valid = np.array([r[0] is not None for r in results], bool)
    return GraphSet(x, bond, dist, mask, element_counts([r[1] for r in results]), valid, errors, d3)


def dataset_structures(ds: Dataset):
    """One (z, pos) per molecule of a Dataset with 3D positions, else None per molecule."""
    if ds.pos is None:
        return [None] * len(ds)
    o = ds.offsets
    return [(ds.z[o[i]:o[i + 1]], ds.pos[o[i]:o[i + 1]]) for i in range(len(ds))]


def dataset_graphs(ds: Dataset, feature_set: str = "extended", cache: bool = True,
                   geometry: str | None = None) -> GraphSet:
    """GraphSet for a whole Dataset, cached on disk (keyed by the SMILES, the feature set and the geometry; under
    ``geometry='dataset'`` also by the atoms and coordinates, which the distances are read from)."""
    tag = feature_set + (f"-{geometry}" if geometry else "")
    h = hashlib.sha1(("\n".join(map(str, ds.smiles)) + tag + ("v2" if geometry else "v1")).encode())
    if geometry == "dataset" and ds.pos is not None:
        for a in (ds.offsets, ds.z, ds.pos):
            h.update(np.ascontiguousarray(a).tobytes())
    key = h.hexdigest()[:16]
    import os
    from pathlib import Path
    # ELPROP_GRAPH_CACHE: a folder of its own for these files (benchmarks time featurisation in a cold one)
    folder = Path(os.environ["ELPROP_GRAPH_CACHE"]) if os.environ.get("ELPROP_GRAPH_CACHE") else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"graphs-{tag}-{key}.npz"
    if cache and path.exists():
        with np.load(path) as f:
            errs = {int(i): str(e) for i, e in zip(f["err_idx"], f["err_msg"])}
            return GraphSet(f["x"], f["bond"], f["dist"], f["mask"], f["counts"], f["valid"], errs,
                            f["d3"] if "d3" in f.files else None)
    gs = featurize_smiles(list(ds.smiles), feature_set, progress=len(ds) > 2000, geometry=geometry,
                          structures=dataset_structures(ds) if geometry == "dataset" else None)
    if cache:
        def write(tmp):
            extra = {} if gs.d3 is None else {"d3": gs.d3}
            with open(tmp, "wb") as fh:
                np.savez(fh, x=gs.x, bond=gs.bond, dist=gs.dist, mask=gs.mask, counts=gs.counts, valid=gs.valid,
                         err_idx=np.array(list(gs.errors), dtype=np.int64),
                         err_msg=np.array(list(gs.errors.values()), dtype=str), **extra)
        atomic_write(path, write)
    return gs



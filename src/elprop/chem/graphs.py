"""Representations as padded arrays: 2D heavy-atom graphs (``GraphSet``) and 3D point clouds (``PointSet``).

A set holds one row per molecule, padded to the largest molecule in the set; ``valid`` marks molecules that
could be represented (the others are listed in ``errors``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from elprop.data.cache import atomic_write, cache_dir
from elprop.data.dataset import Dataset, InputError

COUNT_Z = [1, 6, 7, 8, 9]  # element counts for atom-reference fits; the last column counts all others


def element_counts(z_lists) -> np.ndarray:
    out = np.zeros((len(z_lists), len(COUNT_Z) + 1), dtype=np.float32)
    for i, z in enumerate(z_lists):
        for a in z:
            out[i, COUNT_Z.index(a) if a in COUNT_Z else len(COUNT_Z)] += 1
    return out


@dataclass
class GraphSet:
    """Heavy-atom graphs: x [M,N,F], bond/dist codes [M,N,N], mask [M,N], element counts [M,6]."""
    x: np.ndarray
    bond: np.ndarray
    dist: np.ndarray
    mask: np.ndarray
    counts: np.ndarray
    valid: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)

    def __len__(self):
        return len(self.x)

    def take(self, idx):
        return GraphSet(self.x[idx], self.bond[idx], self.dist[idx], self.mask[idx], self.counts[idx],
                        self.valid[idx])

    def batch(self, idx):
        import torch
        n = int(self.mask[idx].sum(1).max()) if len(idx) else 0
        n = max(n, 1)
        return {"x": torch.from_numpy(self.x[idx, :n]), "bond": torch.from_numpy(self.bond[idx, :n, :n].astype(np.int64)),
                "dist": torch.from_numpy(self.dist[idx, :n, :n].astype(np.int64)),
                "mask": torch.from_numpy(self.mask[idx, :n]), "counts": torch.from_numpy(self.counts[idx])}


def featurize_smiles(smiles, feature_set: str = "extended", progress: bool = False) -> GraphSet:
    from rdkit import Chem

    from elprop.chem.features import featurize_mol, feature_dim, unknown_elements
    from elprop.chem.rdkit_utils import mol_from_smiles

    feats, zs, errors = [], [], {}
    it = smiles
    if progress:
        from tqdm import tqdm
        it = tqdm(smiles, desc=f"featurizing ({feature_set})", unit="mol", mininterval=1.0)
    for i, s in enumerate(it):
        try:
            mol = mol_from_smiles(s)
            bad = unknown_elements(mol)
            if bad:
                raise InputError(f"SMILES {s!r}: element(s) {', '.join(bad)} not seen in training")
            if mol.GetNumHeavyAtoms() == 0:
                raise InputError(f"SMILES {s!r}: no heavy atoms")
            feats.append(featurize_mol(mol, feature_set))
            zs.append([a.GetAtomicNum() for a in Chem.AddHs(mol).GetAtoms()])
        except InputError as e:
            errors[i] = str(e)
            feats.append(None)
            zs.append([])
    m = len(feats)
    n = max([f[0].shape[0] for f in feats if f is not None], default=1)
    fdim = feature_dim(feature_set)
    x = np.zeros((m, n, fdim), np.float32)
    bond = np.zeros((m, n, n), np.int8)
    dist = np.zeros((m, n, n), np.int8)
    mask = np.zeros((m, n), bool)
    for i, f in enumerate(feats):
        if f is None:
            continue
        k = f[0].shape[0]
        x[i, :k], bond[i, :k, :k], dist[i, :k, :k], mask[i, :k] = f[0], f[1], f[2], True
    valid = np.array([f is not None for f in feats], bool)
    return GraphSet(x, bond, dist, mask, element_counts(zs), valid, errors)


def dataset_graphs(ds: Dataset, feature_set: str = "extended", cache: bool = True) -> GraphSet:
    """GraphSet for a whole Dataset, cached on disk (keyed by the SMILES and the feature set)."""
    key = hashlib.sha1(("\n".join(map(str, ds.smiles)) + feature_set + "v1").encode()).hexdigest()[:16]
    path = cache_dir() / f"graphs-{feature_set}-{key}.npz"
    if cache and path.exists():
        with np.load(path) as f:
            errs = {int(i): str(e) for i, e in zip(f["err_idx"], f["err_msg"])}
            return GraphSet(f["x"], f["bond"], f["dist"], f["mask"], f["counts"], f["valid"], errs)
    gs = featurize_smiles(list(ds.smiles), feature_set, progress=len(ds) > 2000)
    if cache:
        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, x=gs.x, bond=gs.bond, dist=gs.dist, mask=gs.mask, counts=gs.counts, valid=gs.valid,
                         err_idx=np.array(list(gs.errors), dtype=np.int64),
                         err_msg=np.array(list(gs.errors.values()), dtype=str))
        atomic_write(path, write)
    return gs


@dataclass
class PointSet:
    """All-atom 3D structures: z [M,N] (0 = padding), pos [M,N,3] in Å, element counts [M,6]."""
    z: np.ndarray
    pos: np.ndarray
    counts: np.ndarray
    valid: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)

    def __len__(self):
        return len(self.z)

    def batch(self, idx):
        import torch
        n = max(int((self.z[idx] > 0).sum(1).max()) if len(idx) else 1, 1)
        return {"z": torch.from_numpy(self.z[idx, :n].astype(np.int64)), "pos": torch.from_numpy(self.pos[idx, :n]),
                "mask": torch.from_numpy(self.z[idx, :n] > 0), "counts": torch.from_numpy(self.counts[idx])}


def dataset_points(ds: Dataset) -> PointSet:
    if ds.pos is None:
        raise InputError("this dataset has no 3D coordinates; use a 2D model or give SMILES for embedding")
    n = int(ds.n_atoms.max()) if len(ds) else 1
    z = np.zeros((len(ds), n), np.int16)
    pos = np.zeros((len(ds), n, 3), np.float32)
    zl = []
    for i in range(len(ds)):
        a, b = ds.offsets[i], ds.offsets[i + 1]
        z[i, : b - a] = ds.z[a:b]
        pos[i, : b - a] = ds.pos[a:b]
        zl.append(ds.z[a:b].tolist())
    return PointSet(z, pos, element_counts(zl), np.ones(len(ds), bool))

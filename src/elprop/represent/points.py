"""The points representation: all-atom 3D structures as padded arrays (``PointSet``), from the data's own
coordinates or from SMILES embedded with RDKit (ETKDG + MMFF94, seeded)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from elprop.core.dataset import Dataset, InputError
from elprop.represent.graph import element_counts


@dataclass
class PointSet:
    """All-atom 3D structures: z [M,N] (0 = padding), pos [M,N,3] in Å, element counts [M,6]."""
    z: np.ndarray
    pos: np.ndarray
    counts: np.ndarray
    valid: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)

    in_dim = None  # no feature width: the atoms' elements are embedded by the network

    def __len__(self):
        return len(self.z)

    def subset(self, idx) -> "PointSet":
        idx = np.asarray(idx, dtype=np.int64)
        errors = {k: self.errors[int(i)] for k, i in enumerate(idx) if int(i) in self.errors}
        return PointSet(self.z[idx], self.pos[idx], self.counts[idx], self.valid[idx], errors)

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


def structures(data) -> list:
    """Molecules with 3D structures for a Dataset (its own coordinates) or SMILES (ETKDG + MMFF); an error
    message in place of a molecule that cannot be embedded."""
    from elprop.chem.rdkit_utils import embed_3d
    if isinstance(data, Dataset) and data.pos is not None:
        return [data[i] for i in range(len(data))]
    out = []
    for s in (data.smiles if isinstance(data, Dataset) else data):
        try:
            out.append(embed_3d(str(s)))
        except InputError as e:
            out.append(str(e))
    return out


def embed_points(smiles):
    """PointSet from SMILES via RDKit ETKDG + MMFF (bad SMILES flagged in ``errors``)."""
    from elprop.chem.rdkit_utils import embed_3d
    mols, errors = [], {}
    for i, s in enumerate(smiles):
        try:
            mols.append(embed_3d(s))
        except InputError as e:
            errors[i] = str(e)
            mols.append(None)
    n = max([len(m.z) for m in mols if m is not None], default=1)
    z = np.zeros((len(mols), n), np.int16)
    pos = np.zeros((len(mols), n, 3), np.float32)
    for i, m in enumerate(mols):
        if m is not None:
            z[i, :len(m.z)], pos[i, :len(m.z)] = m.z, m.pos
    counts = element_counts([[] if m is None else m.z.tolist() for m in mols])
    return PointSet(z, pos, counts, np.array([m is not None for m in mols]), errors)

"""The volumetric representation: grids read from a density store, batched for the volumetric models.

``store_dataset(path)`` turns a store into a ``Dataset`` (its molecules, coordinates, SMILES and targets) that
remembers the store, so ``elprop train`` can split, scale targets and write metrics exactly as for the graph
models. ``VolumeSet`` is the matching representation: ``batch(idx)`` reads records of the chosen channels
(kinds) and stacks them into a float32 tensor [B, C, n, n, n]. Augmentation happens in the model (random
rotations and shifts in training mode), so validation and prediction always see the stored grids.
"""
from __future__ import annotations

import numpy as np
import torch

from elprop.data.dataset import Dataset, InputError
from elprop.density.store import DensityStore


def store_dataset(path) -> Dataset:
    st = DensityStore(path)
    na = st.root["n_atoms"][:].astype(np.int64)
    z_all, pos_all = st.root["z"][:], st.root["pos"][:]
    z = np.concatenate([z_all[i, :na[i]] for i in range(len(st))])
    pos = np.concatenate([pos_all[i, :na[i]] for i in range(len(st))])
    offsets = np.concatenate([[0], np.cumsum(na)])
    tg = st.targets()
    names = list(tg)
    y = np.column_stack([tg[t] for t in names]) if names else np.zeros((len(st), 0))
    src = st.source_index()
    ds = Dataset(z, pos, offsets, st.root["smiles"][:], [f"record {i} (source {s})" for i, s in enumerate(src)], y,
                 names, source=str(path))
    ds.density_store = str(path)
    return ds


class VolumeSet:
    """Records of a store as a representation: ``batch(idx)`` -> {"x": [B, C, n, n, n]}; ``valid`` marks records
    finished in every channel; ``counts`` are element counts for the atom-reference fit."""

    def __init__(self, path, channels):
        from elprop.chem.graphs import element_counts
        self.path, self.channels = str(path), list(channels)
        st = DensityStore(path)
        missing = [c for c in self.channels if c not in st.kinds]
        if missing:
            raise InputError(f"{path}: no {', '.join(missing)} grids (it has {', '.join(st.kinds) or 'none'}); "
                             f"make them with `elprop density generate --kind ...`")
        self.valid = np.zeros(len(st), bool)
        self.valid[st.done(self.channels)] = True
        na = st.root["n_atoms"][:]
        z = st.root["z"][:]
        self.counts = element_counts([z[i, :na[i]].tolist() for i in range(len(st))])
        self.shape = (len(self.channels),) + (int(st.grid_params["shape"]),) * 3
        self._store = st

    def __len__(self):
        return len(self.valid)

    def batch(self, idx):
        x = np.stack([self._store.read(int(i), self.channels) for i in idx])
        return {"x": torch.from_numpy(x), "counts": torch.from_numpy(self.counts[np.asarray(idx)])}

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_store"] = None
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._store = DensityStore(self.path)

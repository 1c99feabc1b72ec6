"""The volumetric representation: grids read from a density store, batched for the volumetric models.

``store_dataset(path)`` turns a store into a ``Dataset`` (its molecules, coordinates, SMILES and targets) that
remembers the store, so ``elprop train`` can split, scale targets and write metrics exactly as for the graph
models. ``VolumeSet`` is the matching representation: ``batch(idx)`` reads records of the chosen channels
(kinds) and stacks them into a float32 tensor [B, C, n, n, n]; ``MoleculeVolumes`` computes the cheap kinds
for new molecules on a model's grid. Augmentation is a training transform (``represent.transforms``), so
validation and prediction always see the stored grids.
"""
from __future__ import annotations

import numpy as np
import torch

from elprop.core.dataset import Dataset, InputError
from elprop.density.store import DensityStore, open_store


def store_dataset(store) -> Dataset:
    """A store's records as a Dataset that declares the (opened) store; row i is record i."""
    st = open_store(store)
    na = st.root["n_atoms"][:].astype(np.int64)
    z_all, pos_all = st.root["z"][:], st.root["pos"][:]
    z = np.concatenate([z_all[i, :na[i]] for i in range(len(st))])
    pos = np.concatenate([pos_all[i, :na[i]] for i in range(len(st))])
    offsets = np.concatenate([[0], np.cumsum(na)])
    tg = st.targets()
    names = list(tg)
    y = np.column_stack([tg[t] for t in names]) if names else np.zeros((len(st), 0))
    src = st.source_index()
    units = {t: u for t, u in (st.attrs.get("targets") or {}).items() if u}
    return Dataset(z, pos, offsets, st.root["smiles"][:], [f"record {i} (source {s})" for i, s in enumerate(src)], y,
                   names, source=str(st.path), target_units=units, density_store=st)


class VolumeSet:
    """Records of a store as a representation: ``batch(idx)`` -> {"x": [B, C, n, n, n]}; ``valid`` marks records
    finished in every channel; ``counts`` are element counts for the atom-reference fit. ``records``: the store
    records that rows 0..n-1 stand for (default: all, in order), e.g. a Dataset's ``record_index``."""

    def __init__(self, store, channels, records=None):
        from elprop.represent.graph import element_counts
        st = open_store(store)
        self.path, self.channels = str(st.path), list(channels)
        missing = [c for c in self.channels if c not in st.kinds]
        if missing:
            raise InputError(f"{st.path}: no {', '.join(missing)} grids (it has {', '.join(st.kinds) or 'none'}); "
                             f"make them with `elprop density generate --kind ...`")
        self.records = np.arange(len(st)) if records is None else np.asarray(records, dtype=np.int64)
        if len(self.records) and (self.records.min() < 0 or self.records.max() >= len(st)):
            raise InputError(f"{st.path}: record indices outside its {len(st)} records")
        done = np.zeros(len(st), bool)
        done[st.done(self.channels)] = True
        self.valid = done[self.records]
        self.errors = {i: f"record {r}: no finished {'/'.join(self.channels)} grid in {st.path}"
                       for i, r in enumerate(self.records) if not done[r]}
        na = st.root["n_atoms"][:]
        z = st.root["z"][:]
        self.counts = element_counts([z[r, :na[r]].tolist() for r in self.records])
        self.shape = (len(self.channels),) + (int(st.grid_params["shape"]),) * 3
        self._store = st

    @property
    def in_dim(self) -> int:
        return self.shape[0]

    def __len__(self):
        return len(self.valid)

    def subset(self, idx) -> "VolumeSet":
        return VolumeSet(self._store, self.channels, self.records[np.asarray(idx, dtype=np.int64)])

    def batch(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        x = np.stack([self._store.read(int(r), self.channels) for r in self.records[idx]])
        return {"x": torch.from_numpy(x), "counts": torch.from_numpy(self.counts[idx])}

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_store"] = None
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._store = DensityStore(self.path)


COMPUTABLE = ("promolecular", "potential")  # kinds cheap enough to compute for a molecule at prediction time


def store_grid_facts(store) -> dict:
    """What a volumetric model needs to rebuild its inputs for new molecules: the grid and each kind's
    parameters (saved with the model)."""
    st = open_store(store)
    return {"grid": dict(st.grid_params), "kinds": {k: st.kind_attrs(k).get("params", {}) for k in st.kinds}}


class MoleculeVolumes:
    """Grids computed on the fly for molecules outside any store (SMILES embedded with ETKDG + MMFF, or the
    structures of xyz/sdf input), on the grid and with the kind parameters of the store a model trained on.
    Same interface as :class:`VolumeSet`. Only the cheap kinds (promolecular, potential) can be computed here."""

    def __init__(self, molecules, channels, facts: dict):
        from elprop.represent.graph import element_counts
        from elprop.density.generate import compute_batch
        from elprop.density.grid import molecule_grid
        self.channels = list(channels)
        g = facts.get("grid") or {}
        if not g:
            raise InputError("this volumetric model was saved without its grid; predict store records with "
                             "--density-store")
        costly = [c for c in self.channels if c not in COMPUTABLE]
        if costly:
            raise InputError(f"this model reads {', '.join(costly)} grids, which are not computed at prediction time; "
                             f"predict the records of a density store that has them (--density-store), or train on "
                             f"{' or '.join(COMPUTABLE)} grids")
        n = int(g["shape"])
        self.shape = (len(self.channels), n, n, n)
        self.x = np.zeros((len(molecules),) + self.shape, np.float32)
        self.valid = np.zeros(len(molecules), bool)
        self.errors = {}
        for i, m in enumerate(molecules):
            if isinstance(m, str):  # an error message from the caller (e.g. a SMILES that did not embed)
                self.errors[i] = m
                continue
            grid = molecule_grid(m.pos, n, float(g["box_A"]))
            ok = True
            for c, kind in enumerate(self.channels):
                res = compute_batch(kind, facts["kinds"][kind], [(i, m.z, m.pos, grid.center, n, grid.spacing)])[0][1]
                if not res["ok"]:
                    self.errors[i], ok = res.get("error", f"cannot compute the {kind} grid"), False
                    break
                self.x[i, c] = res["density"]
            self.valid[i] = ok
        self.counts = element_counts([[] if isinstance(m, str) else list(m.z) for m in molecules])

    @property
    def in_dim(self) -> int:
        return self.shape[0]

    def __len__(self):
        return len(self.valid)

    def batch(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        return {"x": torch.from_numpy(self.x[idx]), "counts": torch.from_numpy(self.counts[idx])}

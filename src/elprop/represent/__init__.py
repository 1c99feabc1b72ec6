"""Records -> model inputs. One protocol for every representation:

- ``valid`` [n] bool and ``errors`` {row: message}: molecules that could not be represented are flagged, never
  dropped, so rows keep their meaning;
- ``counts`` [n, 6]: element counts (H, C, N, O, F, other) for atom-reference fits and domain checks;
- ``in_dim``: the feature width a network is built for (graph: atom features; volume: channels; points: None);
- ``batch(idx)``: a dict of tensors for rows ``idx``; ``subset(idx)``: the same representation for those rows.

Representations: ``graph`` (``represent.graph.GraphSet``), ``points`` (``represent.points.PointSet``), ``volume``
(``represent.volume.VolumeSet`` for store records, ``MoleculeVolumes`` computed for new molecules) and
``density-map`` (``represent.hk.HKSet``). Training-time transforms (real-time augmentation of grids) live in
``represent.transforms`` and are applied to batches outside the network.
"""
from __future__ import annotations

from elprop.core.dataset import Dataset, InputError


def represent(kind: str, data, *, features: str = "extended", geometry: str | None = None, channels=None,
              grid_facts: dict | None = None):
    """The ``kind`` representation of a Dataset or a list of SMILES."""
    if kind == "volume":
        from elprop.represent.volume import MoleculeVolumes, VolumeSet
        store = getattr(data, "density_store", None)
        if store is not None:
            return VolumeSet(store, channels, records=data.record_index)
        from elprop.represent.points import structures
        return MoleculeVolumes(structures(data), channels, grid_facts or {})
    if kind == "graph":
        from elprop.represent.graph import dataset_graphs, dataset_structures, featurize_smiles
        structures = None
        if geometry == "dataset" and not (isinstance(data, Dataset) and data.pos is not None):
            raise InputError("this model reads 3D structures (--geometry dataset): give xyz, extxyz, sdf or "
                             "QM9 input, not SMILES")
        if isinstance(data, Dataset):
            if len(data) > 5000:  # large sets are featurized once and cached
                return dataset_graphs(data, features, geometry=geometry)
            structures = dataset_structures(data) if geometry == "dataset" else None
            data = list(data.smiles)
        return featurize_smiles(list(data), features, progress=len(data) > 2000, geometry=geometry,
                                structures=structures)
    if kind == "points":
        from elprop.represent.points import dataset_points, embed_points
        if isinstance(data, Dataset) and data.pos is not None:
            return dataset_points(data)
        return embed_points(list(data.smiles if isinstance(data, Dataset) else data))
    if kind == "density-map":
        from elprop.represent.hk import HKSet
        store = getattr(data, "density_store", data)
        return HKSet(store, channels)
    raise ValueError(f"unknown representation {kind!r}")

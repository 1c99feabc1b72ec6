"""One data source for every command: ``load_data(DataSpec(...))``.

A spec names the data (``qm9``, an embedded table's name, a file or QM9 tarball/folder, or a density store), how to
cut it (``exclude`` QM9 indices, ``limit`` to N molecules of a seeded shuffle) and how to read it (the SMILES
column and targets of a CSV). A cut data set remembers its ``parent_index``, so split files always hold indices
of the full data (records, for a store) and stay valid for ``elprop evaluate`` on the uncut data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from elprop.core.dataset import Dataset, InputError


@dataclass
class DataSpec:
    data: str = "qm9"
    store: object = None  # a density store path or an opened DensityStore: its records are the data
    limit: int | None = None
    exclude: str | None = None
    smiles_column: str | None = None
    targets: list = field(default_factory=list)  # the CSV columns to read as targets (default: all numeric)
    allow_missing: bool = False
    seed: int = 0  # of the --limit shuffle


def load_data(spec: DataSpec) -> Dataset:
    from elprop.data.embedded import EMBEDDED
    from elprop.data.qm9 import load_qm9
    from elprop.data.readers import read_any

    if spec.store is not None:
        from elprop.represent.volume import store_dataset
        ds = store_dataset(spec.store)
    elif str(spec.data) == "qm9" or spec.exclude:
        ds = load_qm9(None if str(spec.data) == "qm9" else spec.data, exclude=spec.exclude)
    elif str(spec.data) in EMBEDDED and EMBEDDED[str(spec.data)].kind == "molecules":
        ds = read_any(EMBEDDED[str(spec.data)].file and _embedded(spec), smiles_column=spec.smiles_column,
                      targets=list(spec.targets) or None, allow_missing=spec.allow_missing)
    elif str(spec.data) in EMBEDDED:
        raise InputError(f"--data {spec.data}: an embedded materials table; use it with `elprop materials` "
                         "(molecule commands read qm9, molecule files or a density store)")
    else:
        kw = {}
        if str(spec.data).lower().endswith(".csv"):
            kw = dict(smiles_column=spec.smiles_column, targets=list(spec.targets) or None,
                      allow_missing=spec.allow_missing)
        ds = read_any(spec.data, **kw)
    if spec.limit is not None:
        if spec.limit < 1:
            raise InputError(f"--limit {spec.limit}: give a positive number of molecules")
        if spec.limit < len(ds):
            ds = ds.subset(seeded_subset(np.arange(len(ds)), spec.limit, spec.seed))
    if len(ds) == 0:
        raise InputError(f"{spec.data}: no molecules")
    return ds


def _embedded(spec: DataSpec):
    from elprop.data.embedded import embedded_path
    return embedded_path(str(spec.data))


def seeded_subset(idx, limit: int, seed: int = 0) -> np.ndarray:
    """``limit`` of the indices ``idx`` from a permutation seeded by ``seed``, sorted (``--limit``)."""
    return np.sort(np.random.default_rng(seed).permutation(np.asarray(idx))[:limit])

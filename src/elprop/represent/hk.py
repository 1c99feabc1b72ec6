"""The HK representation: store records as batches of input grids, the promolecular density and the DFT density
(the target), for the Hohenberg-Kohn map. Rows are store records; training crops are drawn by the HK map's loss."""
from __future__ import annotations

import numpy as np
import torch

from elprop.core.dataset import InputError
from elprop.density.store import open_store


class HKSet:
    """Store records as HK batches: {"x": input channels, "pro": promolecular, "y": DFT density}."""

    def __init__(self, store, channels):
        st = open_store(store)
        path = st.path
        self.path, self.channels = str(path), list(channels)
        need = sorted(set(self.channels) | {"promolecular", "dft"})
        missing = [k for k in need if k not in st.kinds]
        if missing:
            raise InputError(f"{path}: the HK map needs {', '.join(missing)} grids too (it has "
                             f"{', '.join(st.kinds) or 'none'})")
        self.valid = np.zeros(len(st), bool)
        self.valid[st.done(need)] = True
        self._store = st

    def __len__(self):
        return len(self.valid)

    @property
    def in_dim(self) -> int:
        return len(self.channels)

    @property
    def errors(self) -> dict:
        return {int(i): f"record {int(i)}: lacks finished input, promolecular or DFT grids"
                for i in np.nonzero(~self.valid)[0]}

    def batch(self, idx):
        st = self._store
        x = np.stack([st.read(int(i), self.channels) for i in idx])
        pro = np.stack([st.read(int(i), ["promolecular"]) for i in idx])
        y = np.stack([st.read(int(i), ["dft"]) for i in idx])
        return {"x": torch.from_numpy(x), "pro": torch.from_numpy(pro), "y": torch.from_numpy(y)}

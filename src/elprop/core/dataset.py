"""Molecule records and the columnar Dataset every representation reads from."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from elprop.core.cache import atomic_write

SYMBOLS = ["X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
           "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se",
           "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb",
           "Te", "I", "Xe"]
Z_OF = {s: i for i, s in enumerate(SYMBOLS)}


class InputError(ValueError):
    """Bad user input: the CLI prints the message as one line and exits with code 2."""


def atomic_number(symbol: str) -> int:
    s = symbol.strip()
    s = s[:1].upper() + s[1:].lower()
    if s not in Z_OF or s == "X":
        raise InputError(f"unknown element symbol {symbol!r}")
    return Z_OF[s]


@dataclass
class Molecule:
    """One molecule: atomic numbers, positions in Å (or None), SMILES, and targets in elprop units."""
    z: np.ndarray
    pos: np.ndarray | None = None
    smiles: str = ""
    name: str = ""
    targets: dict[str, float] = field(default_factory=dict)


class Dataset:
    """Columnar store of many molecules.

    ``z`` and ``pos`` are concatenated over molecules, ``offsets[i]:offsets[i+1]`` slices molecule i.
    ``y`` is (n_molecules, n_targets) in elprop units (``elprop.core.units``); NaN marks a missing value.
    ``target_units`` holds the units the data itself declares for targets elprop does not know (a CSV header
    ``logS [log(mol/L)]``). A data set read from a density store declares it: ``density_store`` is the open
    :class:`~elprop.density.store.DensityStore`, and ``parent_index`` maps rows to the records (or, for a subset,
    to the rows of the data set it was cut from). ``subset()`` keeps all three.
    """

    def __init__(self, z, pos, offsets, smiles, names, y, target_names, source="", target_units=None,
                 density_store=None, parent_index=None):
        self.z = np.asarray(z, dtype=np.int8)
        self.pos = None if pos is None else np.asarray(pos, dtype=np.float32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.smiles = np.asarray(smiles, dtype=object)
        self.names = np.asarray(names, dtype=object)
        self.y = np.asarray(y, dtype=np.float64).reshape(len(self.offsets) - 1, len(target_names))
        self.target_names = list(target_names)
        self.source = source
        self.target_units = dict(target_units or {})
        self.density_store = density_store
        self.parent_index = None if parent_index is None else np.asarray(parent_index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_atoms(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> Molecule:
        a, b = self.offsets[i], self.offsets[i + 1]
        return Molecule(z=self.z[a:b].astype(np.int64),
                        pos=None if self.pos is None else self.pos[a:b],
                        smiles=str(self.smiles[i]), name=str(self.names[i]),
                        targets={t: float(v) for t, v in zip(self.target_names, self.y[i])})

    def target(self, name: str) -> np.ndarray:
        if name not in self.target_names:
            raise InputError(f"target {name!r} is not in this dataset; it has: {', '.join(self.target_names)}")
        return self.y[:, self.target_names.index(name)]

    def subset(self, idx) -> "Dataset":
        idx = np.asarray(idx, dtype=np.int64)
        n = self.n_atoms[idx]
        starts = self.offsets[idx]
        atom_idx = (np.repeat(starts - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
                    + np.arange(n.sum())) if len(idx) else np.zeros(0, dtype=np.int64)
        parent = idx if self.parent_index is None else self.parent_index[idx]
        return Dataset(self.z[atom_idx], None if self.pos is None else self.pos[atom_idx],
                       np.concatenate([[0], np.cumsum(n)]), self.smiles[idx], self.names[idx], self.y[idx],
                       self.target_names, self.source, self.target_units, self.density_store, parent)

    @property
    def record_index(self) -> np.ndarray:
        """Row i's index in the data it was read from (a store's record, the full file's molecule)."""
        return np.arange(len(self)) if self.parent_index is None else self.parent_index

    @classmethod
    def from_molecules(cls, mols: list[Molecule], target_names: list[str] | None = None, source="") -> "Dataset":
        if target_names is None:
            target_names = sorted({k for m in mols for k in m.targets})
        has_pos = bool(mols) and all(m.pos is not None for m in mols)
        z = np.concatenate([m.z for m in mols]) if mols else np.zeros(0)
        pos = np.concatenate([m.pos for m in mols]) if has_pos else None
        offsets = np.concatenate([[0], np.cumsum([len(m.z) for m in mols])])
        y = np.array([[m.targets.get(t, np.nan) for t in target_names] for m in mols], dtype=np.float64)
        return cls(z, pos, offsets, [m.smiles for m in mols], [m.name for m in mols],
                   y.reshape(len(mols), len(target_names)), target_names, source)

    # --- binary form -------------------------------------------------------------------------------
    def save(self, path) -> None:
        arrays = dict(z=self.z, offsets=self.offsets, y=self.y,
                      smiles=np.array(self.smiles, dtype=str), names=np.array(self.names, dtype=str),
                      target_names=np.array(self.target_names, dtype=str), source=np.array(self.source),
                      target_units=np.array([self.target_units.get(t, "") for t in self.target_names], dtype=str))
        if self.pos is not None:
            arrays["pos"] = self.pos

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        atomic_write(path, write)

    @classmethod
    def load(cls, path) -> "Dataset":
        with np.load(path, allow_pickle=False) as f:
            names = [str(t) for t in f["target_names"]]
            units = {t: str(u) for t, u in zip(names, f["target_units"]) if u} if "target_units" in f else {}
            return cls(f["z"], f["pos"] if "pos" in f else None, f["offsets"], f["smiles"].astype(object),
                       f["names"].astype(object), f["y"], names, str(f["source"]), units)

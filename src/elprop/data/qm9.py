"""QM9: from the PyPI package ``qm9pack`` (default) or from the original ``dsgdb9nsd`` distribution.

Both give a :class:`Dataset` with the 15 QM9 targets and the derived atomization energies, all in elprop
units (energies in eV). The first load of a source is cached as a binary ``.npz`` under ``$ELPROP_CACHE``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import tarfile
from importlib import metadata
from pathlib import Path

import numpy as np

from elprop.core.cache import atomic_write, cache_dir
from elprop.core.dataset import Dataset, InputError, Molecule, Z_OF, atomic_number
from elprop.core.units import DERIVED_TARGETS, QM9_ATOMREF_HA, QM9_TARGETS, TARGETS

QM9_N_MOLECULES_QM9PACK = 130_831
ALL_TARGETS = QM9_TARGETS + DERIVED_TARGETS

# qm9pack column for each QM9 target
_QM9PACK_COLUMNS = {
    "A": "RotA_GHz", "B": "RotB_GHz", "C": "RotC_GHz", "mu": "Dipole_debye", "alpha": "Polarizability_bohr3",
    "homo": "HOMO_au", "lumo": "LUMO_au", "gap": "HOMO_LUMO_gap_au", "r2": "R2_bohr2", "zpve": "ZPVE_au",
    "U0": "InternalEnergy_0K_au", "U": "InternalEnergy_298K_au", "H": "Enthalphy_298K_au",
    "G": "GibbsFreeEnergy_298K_au", "Cv": "Heatcapacity_Cv_cal_mol_K",
}
_ELEMENTS_RE = re.compile(r"[A-Z][a-z]?")


def _to_elprop_units(y_source: np.ndarray, z: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n, 15) source-unit QM9 targets -> (n, 19) elprop-unit targets incl. atomization energies."""
    y = y_source * np.array([TARGETS[t].factor for t in QM9_TARGETS])
    mol_of_atom = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    derived = []
    for t in ("U0", "U", "H", "G"):
        ref = np.zeros(max(Z_OF.values()) + 1)
        for zz, e in QM9_ATOMREF_HA[t].items():
            ref[zz] = e
        atom_sum = np.bincount(mol_of_atom, weights=ref[z], minlength=len(offsets) - 1)
        derived.append(y[:, QM9_TARGETS.index(t)] - atom_sum * TARGETS[t].factor)
    return np.column_stack([y] + derived)


def qm9pack_files() -> list[Path]:
    # Located without importing: qm9pack's __init__ imports pkg_resources, absent from current setuptools.
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the QM9 default needs the package 'qm9pack' (pip install qm9pack)")
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return [d / f"qm9_part{i}.csv" for i in (1, 2, 3)]


def _parse_qm9pack(files: list[Path]) -> Dataset:
    import pandas as pd

    cols = ["XYZ_file", "Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"] + list(_QM9PACK_COLUMNS.values())
    df = pd.concat([pd.read_csv(f, usecols=cols) for f in files], ignore_index=True)
    df = df.sort_values("Index", kind="stable").reset_index(drop=True)
    z = np.array([Z_OF[s] for row in df["Elements"] for s in _ELEMENTS_RE.findall(row)], dtype=np.int8)
    pos = np.fromstring(",".join(df["XYZ_Ang"].str.replace("[", "", regex=False).str.replace("]", "", regex=False)),
                        sep=",", dtype=np.float64).reshape(-1, 3)
    offsets = np.concatenate([[0], np.cumsum(df["N_atoms"].to_numpy())])
    if len(z) != offsets[-1] or len(pos) != offsets[-1]:
        raise InputError("qm9pack data: element or coordinate count does not match N_atoms")
    y_src = df[[_QM9PACK_COLUMNS[t] for t in QM9_TARGETS]].to_numpy(dtype=np.float64)
    names = [f"gdb_{i}" for i in df["Index"]]
    return Dataset(z, pos, offsets, df["SMILES"].to_numpy(dtype=object), names,
                   _to_elprop_units(y_src, z, offsets), ALL_TARGETS, source="qm9pack")


def load_qm9(source: str | Path | None = None, exclude: str | Path | None = None, cache: bool = True) -> Dataset:
    """Load QM9.

    source: None for the embedded ``qm9pack`` data; a ``dsgdb9nsd.xyz.tar.bz2`` tarball; or a folder of
    ``dsgdb9nsd_*.xyz`` files. ``exclude``: a file listing QM9 indices to drop (e.g. the 3,054
    uncharacterized molecules, as in the distribution's ``uncharacterized.txt``).
    """
    if source is None or str(source) == "qm9":
        version = metadata.version("qm9pack")
        cpath = cache_dir() / f"qm9pack-{version}.npz"
        if cache and cpath.exists():
            ds = Dataset.load(cpath)
        else:
            ds = _parse_qm9pack(qm9pack_files())
            if cache:
                ds.save(cpath)
    else:
        ds = load_qm9_xyz(source, cache=cache)
    if exclude is not None:
        drop = set(read_index_list(exclude))
        keep = [i for i, n in enumerate(ds.names) if int(str(n).split("_")[-1]) not in drop]
        ds = ds.subset(keep)
    return ds


def read_index_list(path: str | Path) -> list[int]:
    """Integers that start lines of a file (the format of QM9's ``uncharacterized.txt``, or one per line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: exclusion list not found")
    out = []
    for line in path.read_text().splitlines():
        tok = line.split()
        if tok and tok[0].isdigit():
            out.append(int(tok[0]))
    if not out:
        raise InputError(f"{path}: no molecule indices found in the exclusion list")
    return out


def _qm9_float(tok: str) -> float:
    # The original files write some exponents Mathematica-style: 2.1997*^-6
    return float(tok.replace("*^", "e"))


def parse_qm9_xyz(text: str, name: str = "") -> tuple[Molecule, np.ndarray]:
    """One ``dsgdb9nsd_*.xyz`` file -> (Molecule with elprop-unit targets, raw 15 source-unit targets)."""
    lines = text.splitlines()
    try:
        n = int(lines[0])
        props = lines[1].split()
        if props[0] != "gdb" or len(props) < 17:
            raise ValueError("second line is not a QM9 property line")
        y_src = np.array([_qm9_float(t) for t in props[2:17]])
        z, pos = [], []
        for line in lines[2:2 + n]:
            tok = line.split()
            z.append(atomic_number(tok[0]))
            pos.append([_qm9_float(t) for t in tok[1:4]])
        smiles = lines[3 + n].split()[-1] if len(lines) > 3 + n else ""
    except (ValueError, IndexError) as e:
        raise InputError(f"{name or 'QM9 xyz'}: malformed QM9 xyz file ({e})") from None
    mol = Molecule(z=np.array(z), pos=np.array(pos), smiles=smiles, name=f"gdb_{int(props[1])}")
    return mol, y_src


def _iter_qm9_xyz(source: Path):
    if source.is_dir():
        files = sorted(source.glob("dsgdb9nsd_*.xyz"))
        if not files:
            raise InputError(f"{source}: no dsgdb9nsd_*.xyz files in this folder")
        for f in files:
            yield f.name, f.read_text()
    elif source.is_file() and tarfile.is_tarfile(source):
        with tarfile.open(source, "r:*") as tar:
            for m in tar:
                if m.isfile() and m.name.endswith(".xyz"):
                    yield m.name, io.TextIOWrapper(tar.extractfile(m)).read()
    else:
        raise InputError(f"{source}: not a QM9 tarball or a folder of dsgdb9nsd_*.xyz files")


def qm9_cache_key(source: Path) -> str:
    """A key for the parsed copy of a QM9 tarball/folder that is the same in every process (hashlib, not the
    salted built-in ``hash``): the resolved path, size and modification time."""
    st = source.stat()
    text = f"{source.resolve()}|{st.st_size}|{int(st.st_mtime)}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load_qm9_xyz(source: str | Path, cache: bool = True) -> Dataset:
    from tqdm import tqdm

    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    cpath = cache_dir() / f"qm9xyz-{qm9_cache_key(source)}.npz"
    if cache and cpath.exists():
        return Dataset.load(cpath)
    mols, ys = [], []
    for name, text in tqdm(_iter_qm9_xyz(source), desc="reading QM9 xyz", unit="mol", mininterval=1.0):
        m, y = parse_qm9_xyz(text, name)
        mols.append(m)
        ys.append(y)
    if not mols:
        raise InputError(f"{source}: no QM9 molecules found")
    order = np.argsort([int(m.name.split("_")[1]) for m in mols], kind="stable")
    mols = [mols[i] for i in order]
    base = Dataset.from_molecules(mols, [], source=str(source))
    y = _to_elprop_units(np.array(ys)[order], base.z.astype(np.int64), base.offsets)
    ds = Dataset(base.z, base.pos, base.offsets, base.smiles, base.names, y, ALL_TARGETS, source=str(source))
    if cache:
        ds.save(cpath)
    return ds


def qm9_inchikeys() -> set[str]:
    """The InChIKeys of the embedded QM9's molecules (from their SMILES), computed once (about a minute) and
    kept in elprop's cache: the reference for "is this molecule new?"."""
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog("rdApp.*")
    path = cache_dir() / f"qm9pack-{metadata.version('qm9pack')}-inchikeys.txt"
    if path.exists():
        return set(path.read_text().split())
    keys = set()
    for s in load_qm9().smiles:
        m = Chem.MolFromSmiles(s)
        if m is not None:
            keys.add(Chem.MolToInchiKey(m))
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(sorted(keys)) + "\n"))
    return keys

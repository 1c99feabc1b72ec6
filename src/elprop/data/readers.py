"""Generic readers: xyz/extxyz (multi-frame), SDF, SMILES files, CSV with a SMILES column, and QM9.

Every reader returns a :class:`Dataset`; malformed input raises :class:`InputError` naming the file and line.
Targets read from files are taken to be in elprop units already (see ``elprop.core.units``); a CSV header
``name [unit]`` declares the unit of a target elprop does not know.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from elprop.core.dataset import Dataset, InputError, Molecule, atomic_number
from elprop.core.units import split_header

_KV_RE = re.compile(r'(\w+)=("[^"]*"|\S+)')


def _require_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    return path


def _float_or_none(v: str):
    try:
        return float(v.strip('"'))
    except ValueError:
        return None


def read_xyz(path) -> Dataset:
    """xyz or extended xyz, any number of frames. Numeric ``key=value`` pairs on the comment line become targets
    (extxyz); a ``smiles=...`` pair is kept as the SMILES."""
    path = _require_file(path)
    lines = path.read_text().splitlines()
    mols, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            raise InputError(f"{path}:{i + 1}: expected an atom count, got {lines[i][:40]!r}") from None
        if i + 2 + n > len(lines):
            raise InputError(f"{path}:{i + 1}: frame says {n} atoms but the file ends early")
        comment = lines[i + 1]
        z, pos = [], []
        for k, line in enumerate(lines[i + 2:i + 2 + n]):
            tok = line.split()
            try:
                z.append(int(tok[0]) if tok[0].isdigit() else atomic_number(tok[0]))
                pos.append([float(t.replace("*^", "e")) for t in tok[1:4]])
                if len(pos[-1]) != 3:
                    raise ValueError
            except (ValueError, IndexError, InputError):
                raise InputError(f"{path}:{i + 3 + k}: malformed atom line {line[:40]!r}") from None
        kv = {k: v.strip('"') for k, v in _KV_RE.findall(comment)}
        targets = {k: f for k, v in kv.items() if k not in ("Lattice", "Properties", "pbc")
                   and (f := _float_or_none(v)) is not None}
        name = kv.get("name", f"{path.stem}_{len(mols)}")
        mols.append(Molecule(np.array(z), np.array(pos), smiles=kv.get("smiles", ""), name=name, targets=targets))
        i += 2 + n
    if not mols:
        raise InputError(f"{path}: no molecules found")
    return _fill_smiles(Dataset.from_molecules(mols, source=str(path)), path)


def _fill_smiles(ds: Dataset, path) -> Dataset:
    """SMILES for molecules read from 3D structures, by bond perception (RDKit DetermineBonds)."""
    from rdkit import Chem

    from elprop.chem.rdkit_utils import mol_from_structure
    for i in range(len(ds)):
        if not ds.smiles[i]:
            m = ds[i]
            mol = mol_from_structure(m.z, m.pos)
            ds.smiles[i] = Chem.MolToSmiles(Chem.RemoveHs(mol)) if mol is not None else ""
    return ds


def read_sdf(path) -> Dataset:
    """SDF/MOL: all atoms with coordinates (hydrogens kept); numeric SD properties become targets."""
    from rdkit import Chem

    path = _require_file(path)
    mols = []
    for k, mol in enumerate(Chem.SDMolSupplier(str(path), removeHs=False)):
        if mol is None:
            raise InputError(f"{path}: record {k + 1} could not be parsed by RDKit")
        conf = mol.GetConformer() if mol.GetNumConformers() else None
        pos = conf.GetPositions() if conf is not None and conf.Is3D() else None
        targets = {p: f for p in mol.GetPropNames() if (f := _float_or_none(mol.GetProp(p))) is not None}
        name = mol.GetProp("_Name") if mol.HasProp("_Name") and mol.GetProp("_Name") else f"{path.stem}_{k}"
        mols.append(Molecule(np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), pos,
                             smiles=Chem.MolToSmiles(Chem.RemoveHs(mol)), name=name, targets=targets))
    if not mols:
        raise InputError(f"{path}: no molecules found")
    if any(m.pos is None for m in mols):
        for m in mols:
            m.pos = None
    return Dataset.from_molecules(mols, source=str(path))


def read_smiles_file(path) -> Dataset:
    """One SMILES per line (an optional second column is the name); lines starting with # are skipped."""
    path = _require_file(path)
    mols = []
    for k, line in enumerate(path.read_text().splitlines()):
        tok = line.split()
        if not tok or tok[0].startswith("#") or (k == 0 and tok[0].lower() == "smiles"):
            continue
        mols.append(Molecule(np.zeros(0, np.int64), smiles=tok[0], name=tok[1] if len(tok) > 1 else f"line_{k + 1}"))
    if not mols:
        raise InputError(f"{path}: no SMILES found")
    return Dataset.from_molecules(mols, [], source=str(path))


def read_csv(path, smiles_column: str | None = None, targets: list[str] | None = None,
             allow_missing: bool = False) -> Dataset:
    """CSV with a SMILES column and numeric target columns. A row whose requested target is NaN or empty is an
    input error (naming the row) unless ``allow_missing``, in which case the loss masks it."""
    import csv

    path = _require_file(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise InputError(f"{path}: no header row")
        cols = reader.fieldnames
        rows = list(reader)
    if smiles_column is None:
        cand = [c for c in cols if c.strip().lower() in ("smiles", "smi", "canonical_smiles")]
        if not cand:
            raise InputError(f"{path}: no SMILES column (name one with --smiles-column); columns: {', '.join(cols)}")
        smiles_column = cand[0]
    elif smiles_column not in cols:
        raise InputError(f"{path}: no column {smiles_column!r}; columns: {', '.join(cols)}")
    if not rows:
        raise InputError(f"{path}: no data rows")
    # a header 'logS [log(mol/L)]' names the target logS and declares its unit
    by_name, header_units = {}, {}
    for c in cols:
        if c == smiles_column:
            continue
        name, u = split_header(c)
        by_name.setdefault(name, c)
        by_name.setdefault(c, c)
        if u:
            header_units[name] = u
    if targets is None:
        targets = [split_header(c)[0] for c in cols if c != smiles_column
                   and all(_float_or_none(r[c] or "x") is not None or not r[c] for r in rows)]
    for t in targets:
        if t not in by_name:
            raise InputError(f"{path}: no target column {t!r}; columns: {', '.join(cols)}")
    targets = [split_header(t)[0] for t in targets]
    mols = []
    for k, r in enumerate(rows):
        vals = {}
        for t in targets:
            raw = r[by_name[t]]
            v = _float_or_none(raw) if raw not in (None, "") else float("nan")
            if v is None:
                raise InputError(f"{path}: row {k + 2}: target {t!r} is not a number ({raw!r})")
            if not math.isfinite(v) and not allow_missing:
                raise InputError(f"{path}: row {k + 2}: target {t!r} is NaN or missing "
                                 "(drop the row, or pass --allow-missing to mask it)")
            vals[t] = v
        name = r.get("name") or r.get("id") or f"row_{k + 2}"
        mols.append(Molecule(np.zeros(0, np.int64), smiles=(r[smiles_column] or "").strip(), name=name, targets=vals))
    ds = Dataset.from_molecules(mols, targets, source=str(path))
    ds.target_units = {t: header_units[t] for t in targets if t in header_units}
    return ds


READERS = {".xyz": read_xyz, ".extxyz": read_xyz, ".sdf": read_sdf, ".mol": read_sdf, ".smi": read_smiles_file,
           ".smiles": read_smiles_file, ".txt": read_smiles_file, ".csv": read_csv}


def read_any(path, **csv_kwargs) -> Dataset:
    """Dispatch on the file name: QM9 tarball/folder, xyz/extxyz, sdf/mol, smi/txt, csv."""
    from elprop.data.qm9 import load_qm9
    p = Path(path)
    name = p.name.lower()
    if str(path) == "qm9":
        return load_qm9()
    if p.is_dir() or name.endswith((".tar.bz2", ".tar.gz", ".tar", ".tbz2")):
        return load_qm9(p)
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unknown file type {p.suffix or '(none)'}; "
                         f"use one of {', '.join(sorted(READERS))}, a QM9 tarball or folder, or 'qm9'")
    return reader(p, **csv_kwargs) if reader is read_csv else reader(p)

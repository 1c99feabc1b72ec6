"""SMILES parsing and 3D embedding with RDKit."""
from __future__ import annotations

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem

from elprop.core.dataset import InputError, Molecule

RDLogger.DisableLog("rdApp.*")

# The longest SMILES elprop reads. Molecules of electronic-structure data sets have tens of atoms, and the dense
# graph models pad to the largest molecule of a batch, so a 20,000-character string would only exhaust memory.
MAX_SMILES_CHARS = 1000


def short(text: str, n: int = 60) -> str:
    """``text`` cut to ``n`` characters for one-line messages."""
    text = str(text)
    return text if len(text) <= n else f"{text[:n]}... ({len(text):,} characters)"


def mol_from_smiles(smiles: str) -> Chem.Mol:
    """RDKit molecule, or InputError naming the SMILES."""
    s = (smiles or "").strip()
    if len(s) > MAX_SMILES_CHARS:
        raise InputError(f"SMILES {short(s)!r} is longer than the {MAX_SMILES_CHARS} characters elprop reads")
    mol = Chem.MolFromSmiles(s) if s else None
    if mol is None:
        raise InputError(f"invalid SMILES {short(smiles)!r}")
    return mol


def canonical(smiles: str) -> str:
    return Chem.MolToSmiles(mol_from_smiles(smiles))


def embed_mol(mol: Chem.Mol, seed: int = 42, optimize: bool = True, label: str = "") -> Chem.Mol:
    """Copy of ``mol`` with all hydrogens and one 3D conformer: ETKDG embedding (seeded) then MMFF94 relaxation.
    Heavy atoms keep their indices (hydrogens are appended after them).

    ETKDG fails on about 1 % of QM9 (strained polycyclic cages). Those start instead from the 2D depiction with
    seeded out-of-plane noise and are relaxed with MMFF94 (2,000 steps): a strained but chemically sensible
    structure."""
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            if not AllChem.MMFFHasAllMoleculeParams(mol):
                raise InputError(f"SMILES {label or Chem.MolToSmiles(mol)!r}: RDKit could not embed a 3D structure")
            from rdkit.Geometry import Point3D
            AllChem.Compute2DCoords(mol)
            conf, rng = mol.GetConformer(), np.random.default_rng(seed)
            for i in range(mol.GetNumAtoms()):
                p = conf.GetAtomPosition(i)
                conf.SetAtomPosition(i, Point3D(p.x, p.y, float(rng.normal(0.0, 0.5))))
            AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
            return mol
    if optimize and AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    return mol


def embed_3d(smiles: str, seed: int = 42, optimize: bool = True) -> Molecule:
    """3D structure from SMILES: ETKDG embedding (seeded) then MMFF94 relaxation; Å, all hydrogens."""
    mol = embed_mol(mol_from_smiles(smiles), seed, optimize, label=smiles)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    pos = mol.GetConformer().GetPositions()
    return Molecule(z=z, pos=pos, smiles=smiles)


def mol_from_structure(z, pos, charge: int = 0) -> Chem.Mol | None:
    """RDKit molecule with bonds perceived from 3D coordinates (xyz input without SMILES)."""
    from rdkit.Chem import rdDetermineBonds

    from elprop.core.dataset import SYMBOLS

    block = f"{len(z)}\n\n" + "\n".join(f"{SYMBOLS[int(a)]} {x:.6f} {y:.6f} {w:.6f}" for a, (x, y, w) in zip(z, pos))
    mol = Chem.MolFromXYZBlock(block)
    if mol is None:
        return None
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=charge)
    except Exception:  # RDKit raises ValueError/RuntimeError for unassignable bond orders
        return None
    return mol


def murcko_scaffold(smiles: str) -> str:
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        mol = mol_from_smiles(smiles)
    except InputError:
        return ""
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)

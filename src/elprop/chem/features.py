"""Atom and bond feature sets for the 2D bond-graph model.

Graphs are over heavy atoms (hydrogens enter as atom features). Every pair (i, j) of a molecule carries
integer edge codes: the bond type (none, single, double, triple, aromatic), whether it is conjugated or in a
ring, and the topological (shortest-path) distance, so dense message passing sees both bonds and topology.

Atom feature sets (compare them with ``elprop train --features``):

* ``element``  - one-hot element only.
* ``ecfp``     - the Daylight/ECFP atom invariants: element, heavy degree, total H count, formal charge,
                 valence, ring membership.
* ``extended`` - ``ecfp`` plus hybridization, aromaticity, chirality tag, ring sizes 3-8, radical electrons,
                 lone pairs and mass.
"""
from __future__ import annotations

import numpy as np
from rdkit import Chem

ELEMENTS = [6, 7, 8, 9, 5, 14, 15, 16, 17, 35, 53]  # C N O F B Si P S Cl Br I, then "other"
KNOWN_Z = set(ELEMENTS) | {1}
MAX_TOPO_DIST = 7  # distances >= 7 share one code; 0 = self, 8 = disconnected
N_BOND_CODES = 5 * 2 * 2  # bond type x conjugated x in ring
N_DIST_CODES = MAX_TOPO_DIST + 2


def _onehot(v, choices):
    out = [0] * (len(choices) + 1)
    out[choices.index(v) if v in choices else len(choices)] = 1
    return out


_HYB = [Chem.HybridizationType.SP, Chem.HybridizationType.SP2, Chem.HybridizationType.SP3,
        Chem.HybridizationType.SP3D, Chem.HybridizationType.SP3D2]
_CHIRAL = [Chem.ChiralType.CHI_UNSPECIFIED, Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW]


def _element(a):
    return _onehot(a.GetAtomicNum(), ELEMENTS)


def _ecfp(a):
    return (_element(a) + _onehot(a.GetDegree(), [0, 1, 2, 3, 4]) + _onehot(a.GetTotalNumHs(), [0, 1, 2, 3])
            + _onehot(a.GetFormalCharge(), [-1, 0, 1]) + _onehot(a.GetTotalValence(), [1, 2, 3, 4, 5, 6])
            + [int(a.IsInRing())])


def _extended(a):
    ri = a.GetOwningMol().GetRingInfo()
    idx = a.GetIdx()
    z = a.GetAtomicNum()
    n_lone = max(0, (Chem.GetPeriodicTable().GetNOuterElecs(z) - a.GetTotalValence() - a.GetFormalCharge()) // 2)
    return (_ecfp(a) + _onehot(a.GetHybridization(), _HYB) + [int(a.GetIsAromatic())]
            + _onehot(a.GetChiralTag(), _CHIRAL) + [int(ri.IsAtomInRingOfSize(idx, k)) for k in range(3, 9)]
            + [a.GetNumRadicalElectrons(), n_lone, a.GetMass() / 100.0])


def _multi(a):
    return _element(a) + _ecfp(a) + _extended(a)


# "multi" stacks the three sets side by side for models that read each separately (``models.multirep``)
FEATURE_SETS = {"element": _element, "ecfp": _ecfp, "extended": _extended, "multi": _multi}


def multi_slices() -> dict[str, slice]:
    """Where each feature set sits inside the "multi" features."""
    out, start = {}, 0
    for name in ("element", "ecfp", "extended"):
        out[name] = slice(start, start + feature_dim(name))
        start = out[name].stop
    return out


def feature_dim(feature_set: str) -> int:
    return len(FEATURE_SETS[feature_set](Chem.MolFromSmiles("C").GetAtomWithIdx(0)))


def _bond_code(b) -> int:
    t = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3,
         Chem.BondType.AROMATIC: 4}.get(b.GetBondType(), 1)
    return t * 4 + 2 * int(b.GetIsConjugated()) + int(b.IsInRing())


def featurize_mol(mol: Chem.Mol, feature_set: str):
    """(atom features [n, F] float32, bond codes [n, n] int8, distance codes [n, n] int8) over heavy atoms."""
    mol = Chem.RemoveHs(mol, sanitize=False) if any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()) else mol
    fn = FEATURE_SETS[feature_set]
    x = np.array([fn(a) for a in mol.GetAtoms()], dtype=np.float32)
    n = mol.GetNumAtoms()
    bond = np.zeros((n, n), dtype=np.int8)
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        bond[i, j] = bond[j, i] = _bond_code(b)
    d = Chem.GetDistanceMatrix(mol) if n > 1 else np.zeros((n, n))
    dist = np.where(d > 1e6, MAX_TOPO_DIST + 1, np.minimum(d, MAX_TOPO_DIST)).astype(np.int8)
    return x, bond, dist


def unknown_elements(mol: Chem.Mol) -> list[str]:
    return sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() not in KNOWN_Z})

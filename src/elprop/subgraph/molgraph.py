"""Molecules as labelled graphs for subgraph mining, and patterns back to SMARTS and pictures.

Vertices are heavy atoms (hydrogens suppressed by default). A vertex label is the element, optionally with the
aromatic flag and the formal charge; an edge label is the bond order (1, 2, 3) or aromatic (4), or with
``kekulize`` the Kekulé bond orders only. Labels are small integers from a ``Labeling``, which also turns a
pattern back into SMARTS: an occurrence of a pattern in the miner is exactly an RDKit substructure match of its
SMARTS (both are non-induced subgraph isomorphisms), which the tests check.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rdkit import Chem

from elprop.core.dataset import InputError
from elprop.subgraph.gspan import LabeledGraph, code_to_graph

BOND_LABEL = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3, Chem.BondType.AROMATIC: 4}
BOND_SMARTS = {1: "-", 2: "=", 3: "#", 4: ":"}


@dataclass
class Labeling:
    """Options for the vertex and edge labels, and the vocabulary of vertex labels seen so far."""
    aromatic: bool = False
    charge: bool = False
    hydrogens: bool = False
    kekulize: bool = False
    vocab: dict = field(default_factory=dict)  # (Z, aromatic, charge) -> label

    def __post_init__(self):
        if self.aromatic and self.kekulize:
            raise InputError("aromatic atom labels need aromatic bonds: use --aromatic or --kekulize, not both")

    def atom_key(self, a) -> tuple:
        return (a.GetAtomicNum(), bool(a.GetIsAromatic()) if self.aromatic else None,
                a.GetFormalCharge() if self.charge else None)

    def vertex_label(self, key) -> int:
        if key not in self.vocab:
            self.vocab[key] = len(self.vocab)
        return self.vocab[key]

    def key_of(self, label: int) -> tuple:
        for k, v in self.vocab.items():
            if v == label:
                return k
        raise KeyError(label)

    def atom_smarts(self, label: int) -> str:
        z, arom, charge = self.key_of(label)
        s = f"#{z}"
        if arom is not None:
            s += ";a" if arom else ";A"
        if charge is not None:
            s += f";{'+' if charge >= 0 else '-'}{abs(charge)}"
        return f"[{s}]"

    def to_dict(self) -> dict:
        return {"aromatic": self.aromatic, "charge": self.charge, "hydrogens": self.hydrogens,
                "kekulize": self.kekulize, "vocab": [[list(k), v] for k, v in self.vocab.items()]}

    @classmethod
    def from_dict(cls, d) -> "Labeling":
        lab = cls(d["aromatic"], d["charge"], d["hydrogens"], d["kekulize"])
        lab.vocab = {tuple(k): v for k, v in d["vocab"]}
        return lab


def prepare(mol: Chem.Mol, labeling: Labeling) -> Chem.Mol:
    """The molecule as labelled: with explicit hydrogens and/or Kekulé bonds if the labeling asks for them."""
    if labeling.hydrogens:
        mol = Chem.AddHs(mol)
    if labeling.kekulize:
        mol = Chem.Mol(mol)
        Chem.Kekulize(mol, clearAromaticFlags=True)
    return mol


def mol_graph(mol: Chem.Mol, labeling: Labeling) -> LabeledGraph:
    """The labelled graph of a molecule already ``prepare``d."""
    vl = [labeling.vertex_label(labeling.atom_key(a)) for a in mol.GetAtoms()]
    edges = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), BOND_LABEL.get(b.GetBondType(), 1)) for b in mol.GetBonds()]
    return LabeledGraph(vl, edges)


def smiles_graphs(smiles, labeling: Labeling | None = None):
    """(graphs, mols, labeling) for a list of SMILES; InputError naming the first unparsable one. The mols are
    as labelled (``prepare``), so RDKit matches of pattern SMARTS on them are the pattern's occurrences."""
    from elprop.chem.rdkit_utils import mol_from_smiles  # (also silences RDKit's own parse messages)
    labeling = labeling or Labeling()
    graphs, mols = [], []
    for k, s in enumerate(smiles):
        try:
            m = mol_from_smiles(str(s))
        except InputError:
            m = None
        if m is None or m.GetNumAtoms() == 0:
            raise InputError(f"row {k + 1}: cannot parse SMILES {s!r}")
        m = prepare(m, labeling)
        mols.append(m)
        graphs.append(mol_graph(m, labeling))
    return graphs, mols, labeling


def pattern_smarts(code, labeling: Labeling, vertex_label=None) -> str:
    """SMARTS of a pattern (a DFS code, or a single vertex label)."""
    g = code_to_graph(code, vertex_label)
    rw = Chem.RWMol()
    for lv in g.vlabels:
        q = Chem.MolFromSmarts(labeling.atom_smarts(lv)).GetAtomWithIdx(0)
        rw.AddAtom(q)
    for u, v, el in g.edges:
        rw.AddBond(u, v, Chem.BondType.SINGLE)
        qb = Chem.MolFromSmarts(f"*{BOND_SMARTS[el]}*").GetBondWithIdx(0)
        rw.ReplaceBond(rw.GetBondBetweenAtoms(u, v).GetIdx(), qb)
    return Chem.MolToSmarts(rw.GetMol())


def pattern_occurrences(smarts: str, mols) -> np.ndarray:
    """Indices of the molecules that contain the SMARTS (RDKit substructure match), for cross-checks."""
    q = Chem.MolFromSmarts(smarts)
    return np.array([k for k, m in enumerate(mols) if m.HasSubstructMatch(q)], dtype=np.int64)


def draw_pattern(smarts: str, mol: Chem.Mol, size=(260, 200)) -> str:
    """An SVG of ``mol`` with one match of the pattern highlighted."""
    from rdkit.Chem.Draw import rdMolDraw2D
    q = Chem.MolFromSmarts(smarts)
    match = mol.GetSubstructMatch(q)
    bonds = []
    for b in q.GetBonds():
        mb = mol.GetBondBetweenAtoms(match[b.GetBeginAtomIdx()], match[b.GetEndAtomIdx()]) if match else None
        if mb is not None:
            bonds.append(mb.GetIdx())
    d = rdMolDraw2D.MolDraw2DSVG(*size)
    rdMolDraw2D.PrepareAndDrawMolecule(d, mol, highlightAtoms=list(match), highlightBonds=bonds)
    d.FinishDrawing()
    return d.GetDrawingText()

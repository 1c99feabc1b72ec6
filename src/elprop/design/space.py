"""The search space of a design run: which molecules may be proposed, and whether they are new.

By default: neutral, closed-shell molecules of C, H, N, O and F with 3 to 9 heavy atoms that RDKit
sanitises, with every ring of 3 to 7 atoms, and without groups that are unstable, reactive or fleeting
tautomers (``UNSTABLE``). An optional synthetic-accessibility cap uses the SA score of Ertl & Schuffenhauer
(J. Cheminform. 1, 8 (2009)) as shipped in RDKit's Contrib. Every option is written into the run's config.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rdkit import Chem, RDLogger

from elprop.core.dataset import InputError

RDLogger.DisableLog("rdApp.*")

# name -> SMARTS of groups a design run does not propose (kept short and stated in every run's config)
UNSTABLE = {
    "peroxide or O2 (an O-O bond; O2's ground state is a triplet)": "[#8]~[#8]",
    "O-F or N-F bond": "[#7,#8]-[#9]",
    "acyl fluoride": "[CX3](=O)[#9]",
    "ketene": "[#6]=[#6]=[#8]",
    "ketenimine": "[#6]=[#6]=[#7]",
    "cumulene (3+ double bonds)": "[#6]=[#6]=[#6]=[#6]",
    "nitroso": "[#6,#7,#8]-[NX2]=[OX1]",
    "N=N-N chain": "[#7]=[#7]-[#7]",
    "enol": "[OX2H1]-[#6X3]=[#6X3]",
    "imidic acid": "[OX2H1]-[#6X3]=[#7X2]",
    "ynol": "[OX2H1]-[#6]#[#6]",
    "gem-diol": "[OX2H1]-[#6X4]-[OX2H1]",
    "hemiacetal / hemiaminal": "[OX2H1,NX3H2,NX3H1]-[#6X4]-[#8X2,#7X3]",
    "double bond in a 3-ring": "[r3]=[r3]",
    "triple bond in a ring": "[R]#[R]",
    "cumulated double bond in a ring": "[R]=[R]=[*]",
    "aromatic ring fused or bridged to a 3- or 4-ring": "[a;r3,r4]",
    "N=N-OH": "[#7]=[#7]-[OX2H1]",
    "atom shared by three or more rings (cages)": "[!R0;!R1;!R2]",
    "double bond at a fusion atom of a 3- or 4-ring": "[R2;r3,r4]=*",
}


@dataclass
class SearchSpace:
    elements: tuple = ("C", "N", "O", "F")  # heavy elements; hydrogen is always allowed
    max_heavy: int = 9
    min_heavy: int | None = None  # None: 3 (1-2 heavy atoms: every such molecule is known, QM9 holds 8 of them)
    min_ring: int = 3
    max_ring: int = 7
    filters: bool = True
    sa_max: float | None = None
    groups: dict | None = None  # name -> SMARTS of the unstable groups; None: UNSTABLE
    _patterns: dict = field(default=None, repr=False, compare=False)
    _defaults: set = field(default=None, repr=False, compare=False)  # the options left at their defaults

    def __post_init__(self):
        self._defaults = {k for k in ("min_heavy", "groups") if getattr(self, k) is None}
        self.min_heavy = 3 if self.min_heavy is None else self.min_heavy
        self.groups = dict(UNSTABLE if self.groups is None else self.groups)
        if self.min_heavy < 1:
            raise InputError(f"--min-heavy {self.min_heavy}: give at least 1")
        self.elements = tuple(self.elements)
        for e in self.elements:
            if Chem.GetPeriodicTable().GetAtomicNumber(e) <= 1:
                raise InputError(f"--elements: {e!r} is not a heavy element")
        if self.max_heavy < self.min_heavy:
            raise InputError(f"--max-heavy {self.max_heavy} is below {self.min_heavy}")
        self._z = {Chem.GetPeriodicTable().GetAtomicNumber(e) for e in self.elements}
        self._patterns = {k: Chem.MolFromSmarts(v) for k, v in self.groups.items()} if self.filters else {}

    def resumed(self, old: dict) -> "SearchSpace":
        """This space as a run saved with ``old`` (its config's "space") had it, for the options left at their
        defaults: a resumed run keeps the minimum size and the unstable-group list it started with, though
        elprop's defaults have changed since (in 0.1: at least 3 heavy atoms, no O=O or ketenimine)."""
        kw = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        if "min_heavy" in self._defaults and "min_heavy" in old:
            kw["min_heavy"] = old["min_heavy"]
        if "groups" in self._defaults and self.filters and old.get("unstable_groups"):
            kw["groups"] = old["unstable_groups"]
        return SearchSpace(**kw)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_") and k != "groups"}
        d["elements"] = list(self.elements)
        d["unstable_groups"] = dict(self.groups) if self.filters else {}
        d["rules"] = ("neutral, closed shell, RDKit-sanitisable, every atom's formal charge 0, rings of "
                      f"{self.min_ring}-{self.max_ring} atoms")
        return d

    def reason(self, mol: Chem.Mol | None) -> str | None:
        """Why ``mol`` lies outside the space (None: it is inside)."""
        if mol is None:
            return "does not sanitise"
        n = mol.GetNumHeavyAtoms()
        if n > self.max_heavy or n < self.min_heavy:
            return f"{n} heavy atoms"
        if len(Chem.GetMolFrags(mol)) > 1:
            return "more than one molecule"
        for a in mol.GetAtoms():
            z = a.GetAtomicNum()
            if z > 1 and z not in self._z:
                return f"element {a.GetSymbol()}"
            if a.GetFormalCharge() != 0:
                return "charged atom"
            if a.GetNumRadicalElectrons():
                return "open shell"
        for ring in mol.GetRingInfo().AtomRings():
            if not self.min_ring <= len(ring) <= self.max_ring:
                return f"{len(ring)}-membered ring"
        for name, patt in self._patterns.items():
            if mol.HasSubstructMatch(patt):
                return name
        if self.sa_max is not None and sa_score(mol) > self.sa_max:
            return f"SA score above {self.sa_max:g}"
        return None

    def canonical(self, smiles: str) -> str | None:
        """Canonical SMILES if the molecule is inside the space, else None."""
        mol = Chem.MolFromSmiles(smiles)
        return None if self.reason(mol) else Chem.MolToSmiles(mol)


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility, 1 (easy) to 10 (hard), from RDKit's Contrib implementation."""
    from rdkit.Contrib.SA_Score import sascorer
    return float(sascorer.calculateScore(mol))


def inchikey(smiles_or_mol) -> str:
    mol = Chem.MolFromSmiles(smiles_or_mol) if isinstance(smiles_or_mol, str) else smiles_or_mol
    return Chem.MolToInchiKey(mol) if mol is not None else ""

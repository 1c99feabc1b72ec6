"""The one table of units in elprop.

Every target has exactly one internal unit. Energies are in eV inside elprop; the conversion from the
source's Hartree is written here once (``HARTREE_TO_EV``) and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass

HARTREE_TO_EV = 27.211386245988  # CODATA 2018
BOHR_TO_ANGSTROM = 0.529177210903  # CODATA 2018
KCALMOL_PER_EV = 23.060547830619


@dataclass(frozen=True)
class Target:
    name: str  # short machine name used in files and on the command line
    unit: str  # unit inside elprop (and in every table and plot)
    description: str
    source_unit: str  # unit in the QM9 source files
    factor: float  # internal = source * factor
    extensive: bool  # scales with molecule size (sum over atoms in a model's readout)


_E = HARTREE_TO_EV
TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("A", "GHz", "rotational constant A", "GHz", 1.0, False),
    Target("B", "GHz", "rotational constant B", "GHz", 1.0, False),
    Target("C", "GHz", "rotational constant C", "GHz", 1.0, False),
    Target("mu", "D", "dipole moment", "D", 1.0, False),
    Target("alpha", "bohr^3", "isotropic polarizability", "bohr^3", 1.0, True),
    Target("homo", "eV", "HOMO energy", "Ha", _E, False),
    Target("lumo", "eV", "LUMO energy", "Ha", _E, False),
    Target("gap", "eV", "HOMO-LUMO gap", "Ha", _E, False),
    Target("r2", "bohr^2", "electronic spatial extent <R^2>", "bohr^2", 1.0, True),
    Target("zpve", "eV", "zero-point vibrational energy", "Ha", _E, True),
    Target("U0", "eV", "internal energy at 0 K", "Ha", _E, True),
    Target("U", "eV", "internal energy at 298.15 K", "Ha", _E, True),
    Target("H", "eV", "enthalpy at 298.15 K", "Ha", _E, True),
    Target("G", "eV", "free energy at 298.15 K", "Ha", _E, True),
    Target("Cv", "cal/(mol K)", "heat capacity at 298.15 K", "cal/(mol K)", 1.0, True),
    Target("U0_atom", "eV", "atomization energy at 0 K (U0 minus free-atom U0)", "Ha", _E, True),
    Target("U_atom", "eV", "atomization energy at 298.15 K (U minus free-atom U)", "Ha", _E, True),
    Target("H_atom", "eV", "atomization enthalpy at 298.15 K", "Ha", _E, True),
    Target("G_atom", "eV", "atomization free energy at 298.15 K", "Ha", _E, True),
]}

QM9_TARGETS = ["A", "B", "C", "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "Cv"]
DERIVED_TARGETS = ["U0_atom", "U_atom", "H_atom", "G_atom"]

# Free-atom reference energies of QM9 (B3LYP/6-31G(2df,p)), in Hartree, from the QM9 distribution's
# atomref table (Ramakrishnan et al., Sci. Data 1, 140022 (2014)).
QM9_ATOMREF_HA: dict[str, dict[int, float]] = {
    "U0": {1: -0.500273, 6: -37.846772, 7: -54.583861, 8: -75.064579, 9: -99.718730},
    "U": {1: -0.498857, 6: -37.845355, 7: -54.582445, 8: -75.063163, 9: -99.717314},
    "H": {1: -0.497912, 6: -37.844411, 7: -54.581501, 8: -75.062219, 9: -99.716370},
    "G": {1: -0.510927, 6: -37.861317, 7: -54.598897, 8: -75.079532, 9: -99.733544},
}


def unit(name: str) -> str:
    """Unit of a target inside elprop; raises KeyError naming the unknown target."""
    try:
        return TARGETS[name].unit
    except KeyError:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(TARGETS)}") from None


def label(name: str) -> str:
    """'gap [eV]' style label for tables and plot axes."""
    return f"{name} [{unit(name)}]"

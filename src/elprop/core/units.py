"""The one table of units in elprop.

Every target has exactly one internal unit. Energies are in eV inside elprop; the conversion from the
source's Hartree is written here once (``HARTREE_TO_EV``) and nowhere else.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

HARTREE_TO_EV = 27.211386245988  # CODATA 2018
# Å per bohr: the one length conversion in elprop. PySCF's value (pyscf.lib.param.BOHR, CODATA 2010), so grids,
# cube files and PySCF's own Å <-> bohr conversion agree to the last digit.
BOHR = 0.52917721092
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
    # the electronic (SCF) energies that `elprop label` computes: no zero-point or thermal terms
    Target("E", "eV", "total electronic (SCF) energy", "Ha", _E, True),
    Target("E_atom", "eV", "electronic atomization energy (free-atom SCF energies minus the molecule's, no ZPE)",
           "Ha", _E, True),
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


# --- the target contract ---------------------------------------------------------------------------------------
UNITLESS = "unitless"
_HEADER_RE = re.compile(r"^\s*(?P<name>[^\[\]]*?)\s*\[(?P<unit>[^\[\]]*)\]\s*$")


@dataclass(frozen=True)
class TargetSpec:
    """One training target as it travels from the command line to the loss, by name: its unit, whether it scales
    with molecule size (extensive: summed over atoms in the readout, atom-reference fit in the scaler) and its
    loss weight. Resolved once (:func:`resolve_targets`) and saved with every model."""
    name: str
    unit: str = UNITLESS
    extensive: bool = False
    weight: float = 1.0

    @property
    def label(self) -> str:
        return f"{self.name} [{self.unit}]"

    def to_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "extensive": bool(self.extensive), "weight": float(self.weight)}

    @classmethod
    def from_dict(cls, d: dict) -> "TargetSpec":
        return cls(str(d["name"]), str(d.get("unit", UNITLESS)), bool(d.get("extensive", False)),
                   float(d.get("weight", 1.0)))


def split_header(column: str) -> tuple[str, str | None]:
    """``'logS [log(mol/L)]'`` -> ``('logS', 'log(mol/L)')``; a header without brackets -> ``(column, None)``."""
    m = _HEADER_RE.match(column)
    if m and m["name"]:
        return m["name"], m["unit"].strip() or None
    return column.strip(), None


def _parse_assignments(spec, option: str, targets) -> dict[str, str]:
    """``"logS=log(mol/L),pIC50=log(M)"`` -> dict; names must be among ``targets``."""
    from elprop.core.dataset import InputError
    out = {}
    if not spec:
        return out
    for part in filter(None, (p.strip() for p in str(spec).split(","))):
        name, eq, val = part.partition("=")
        name, val = name.strip(), val.strip()
        if not eq or not name or not val:
            raise InputError(f"{option} {spec!r}: expected NAME=VALUE pairs, got {part!r}")
        if name not in targets:
            raise InputError(f"{option} {spec!r}: {name!r} is not one of the targets ({', '.join(targets)})")
        out[name] = val
    return out


def resolve_targets(names, *, units=None, extensive=None, weights=None, data_units=None) -> list[TargetSpec]:
    """The targets of a run, resolved once.

    ``names``: target names (or TargetSpecs, returned as they are). A name in elprop's table (``TARGETS``) takes
    its unit and extensivity from there. Any other name is the user's own: its unit comes from ``units``
    (``{"logS": "log(mol/L)"}`` or the CLI string ``"logS=log(mol/L)"``), else from the data (``data_units``, e.g.
    a CSV header ``logS [log(mol/L)]``), else it is ``unitless``; it is intensive unless named in ``extensive``
    (a list or a comma-separated string). ``weights``: loss weights, a dict or ``"T=W,..."`` (default 1)."""
    from elprop.core.dataset import InputError
    names = list(names)
    plain = [n.name if isinstance(n, TargetSpec) else str(n) for n in names]
    if len(set(plain)) != len(plain):
        raise InputError(f"targets {', '.join(plain)}: a target is named twice")
    units = units if isinstance(units, dict) else _parse_assignments(units, "--units", plain)
    ext = extensive if isinstance(extensive, (list, tuple, set)) else \
        [e.strip() for e in str(extensive or "").split(",") if e.strip()]
    for e in ext:
        if e not in plain:
            raise InputError(f"--extensive {e!r} is not one of the targets ({', '.join(plain)})")
    w = weights if isinstance(weights, dict) else _parse_assignments(weights, "--target-weights", plain)
    wf = {}
    for k, v in w.items():
        try:
            wf[k] = float(v)
        except ValueError:
            raise InputError(f"--target-weights: {v!r} is not a number") from None
        if not (math.isfinite(wf[k]) and wf[k] >= 0):
            raise InputError("--target-weights: weights must be finite and >= 0")
    if wf and not any(wf.get(n, 1.0) for n in plain):
        raise InputError("--target-weights: at least one weight must be positive")
    data_units = data_units or {}
    specs = []
    for n, name in zip(names, plain):
        if isinstance(n, TargetSpec):
            specs.append(n)
            continue
        if name in TARGETS:
            known = TARGETS[name]
            u = units.get(name)
            if u is not None and u != known.unit:
                raise InputError(f"--units {name}={u}: elprop keeps {name} in {known.unit}; convert the data to "
                                 f"{known.unit}, or give the column another name")
            specs.append(TargetSpec(name, known.unit, known.extensive or name in ext, wf.get(name, 1.0)))
        else:
            u = units.get(name) or data_units.get(name) or UNITLESS
            specs.append(TargetSpec(name, u, name in ext, wf.get(name, 1.0)))
    return specs


def specs_from_config(cfg: dict) -> list[TargetSpec]:
    """The target specs of a saved model's config (older models: names plus a units table)."""
    if cfg.get("target_specs"):
        return [TargetSpec.from_dict(d) for d in cfg["target_specs"]]
    units = cfg.get("units") or {}
    return [TargetSpec(t, units.get(t, TARGETS[t].unit if t in TARGETS else UNITLESS),
                       TARGETS[t].extensive if t in TARGETS else False) for t in cfg["targets"]]

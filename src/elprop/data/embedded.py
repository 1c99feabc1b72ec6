"""Data sets shipped inside elprop, usable by name wherever a command takes ``--data``.

``qm9`` is the QM9 set of the ``qm9pack`` package (130,831 molecules). The materials tables are small published
data sets (sources and licences below and in ``data/materials/README.md``) packaged as CSV files, so every clone
and every installed copy has them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class Embedded:
    name: str
    file: str  # inside elprop/data/ ("" for qm9, which comes from qm9pack)
    description: str
    source: str
    licence: str
    units: dict = field(default_factory=dict)  # column -> unit, for the numeric columns that have one
    kind: str = "materials"  # "materials" (tables for `elprop materials`) or "molecules" (SMILES + labels)


_RUBAN = ("Ruban, Hammer, Stoltze, Skriver, Nørskov, J. Mol. Catal. A 115 (1997) 421, as used by Takigawa et al., "
          "RSC Adv. 6 (2016) 52587; typed from the course data of I. Takigawa (HSI 2020)")
_VASSILEV = "Vassilev-Galindo et al., Catal. Sci. Technol. 2024 (d4cy00491d)"
_ADS_UNITS = {"Eads": "eV", "Biaxial Strain": "%", "Unit cell volume": "Å^3", "WEN": "unitless",
              "WIE": "eV", "WAR": "pm", "GCN": "unitless", "PSI": "unitless"}

EMBEDDED: dict[str, Embedded] = {e.name: e for e in [
    Embedded("qm9", "", "130,831 small organic molecules (C, H, N, O, F; <= 9 heavy atoms) with B3LYP/6-31G(2df,p) "
             "geometries and properties", "Ramakrishnan et al., Sci. Data 1, 140022 (2014), via the qm9pack package",
             "CC BY 4.0 (the QM9 data)"),
    Embedded("dband-overlayers", "materials/dband_overlayers_long.csv",
             "110 pseudomorphic overlayers of 11 transition metals: shift of the overlayer's d-band centre "
             "(shift_eV) and its d-band centre relative to the Fermi level (eps_d_minus_EF_eV = pure(guest) + shift)",
             _RUBAN, "published values (derived long form)", {"shift_eV": "eV", "eps_d_minus_EF_eV": "eV"}),
    Embedded("dband-overlayer-matrix", "materials/dband_overlayer_matrix.csv",
             "the same as an 11 x 11 matrix: rows substrate (host), columns overlayer (guest); diagonal the pure "
             "metals' d-band centre, off-diagonal the shift (target 'value')", _RUBAN, "published values",
             {"value": "eV"}),
    Embedded("dband-pure", "materials/dband_pure_metals.csv",
             "d-band centre (eps_d_minus_EF_eV) of the close-packed surface of 11 transition metals", _RUBAN,
             "published values", {"eps_d_minus_EF_eV": "eV"}),
    Embedded("adsorption-h", "materials/adsorption_H_alloys.csv",
             "921 DFT adsorption energies (Eads) of H on 122 pure metals and bimetallic alloy surfaces under biaxial "
             "strain (-8 % ... +8 %), with site, material and descriptors", _VASSILEV, "MIT", _ADS_UNITS),
    Embedded("adsorption-o-oh", "materials/adsorption_O_OH_alloys.csv",
             "1,699 DFT adsorption energies (Eads) of O (891) and OH (808) on 126 materials (column 'adsorbate')",
             _VASSILEV, "MIT", _ADS_UNITS),
    Embedded("elements", "materials/element_descriptors.csv",
             "83 elements (H-Bi): radii, electronegativity, melting/boiling point, enthalpy of fusion, density, "
             "ionization energy, electron affinity, valence electrons, surface energy ...",
             "Takigawa & Suzuki descriptor table", "MIT",
             {"ionization_energy_eV": "eV", "electron_affinity_eV": "eV", "melting_point_K": "K",
              "boiling_point_K": "K", "delta_fus_H_kJmol": "kJ/mol", "density_g_cm3": "g/cm^3",
              "surface_energy_J_m2": "J/m^2"}),
    Embedded("shift", "shift/molecules.csv",
             "small molecules outside QM9 (<= 9 heavy atoms, C/H/N/O/F, none in QM9 by InChIKey): terminal and "
             "acyclic C=C, conjugated chains, cumulenes, unusual functional groups; DFT labels at the QM9 level "
             "from `elprop label` (GFN2-xTB geometries)", "elprop (benchmarks/shift_set.py, `elprop label`)",
             "CC BY 4.0", {"homo": "eV", "lumo": "eV", "gap": "eV", "mu": "D", "E": "eV", "E_atom": "eV"},
             kind="molecules"),
]}


def is_embedded(name) -> bool:
    return str(name) in EMBEDDED


def embedded_path(name: str) -> Path:
    """The packaged file of an embedded table (not for qm9)."""
    e = EMBEDDED[name]
    if not e.file:
        raise ValueError(f"{name} is not a file-backed data set")
    return Path(str(resources.files("elprop.data").joinpath(e.file)))


def resolve(name_or_path) -> Path:
    """An embedded table's file for its name, else the path as given."""
    s = str(name_or_path)
    return embedded_path(s) if s in EMBEDDED and EMBEDDED[s].file else Path(s)

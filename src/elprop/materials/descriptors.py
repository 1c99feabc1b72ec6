"""Elemental descriptors from a maintained library (mendeleev's bundled database; no network).

``element_table()`` gives one row per element symbol with the descriptors below, in the units named in
``DESCRIPTORS``. The table is built once from mendeleev and cached as CSV in $ELPROP_CACHE (atomic write).
``cross_check(path)`` compares it with a reference table of the same quantities (the shared
``element_descriptors.csv``) and reports, per descriptor, how many elements disagree beyond a tolerance.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from elprop.core.dataset import InputError

# name -> (unit, description)
DESCRIPTORS = {
    "Z": ("", "atomic number"),
    "group": ("", "group (1-18)"),
    "period": ("", "period"),
    "mass": ("u", "standard atomic weight"),
    "atomic_radius": ("pm", "atomic radius (Slater/Clementi, mendeleev)"),
    "covalent_radius": ("pm", "single-bond covalent radius (Pyykkö)"),
    "metallic_radius": ("pm", "metallic radius (CN 12)"),
    "vdw_radius": ("pm", "van der Waals radius"),
    "electronegativity": ("", "Pauling electronegativity"),
    "ionization_energy": ("eV", "first ionization energy"),
    "electron_affinity": ("eV", "electron affinity"),
    "density": ("g/cm³", "density of the element at room temperature"),
    "melting_point": ("K", "melting point"),
    "boiling_point": ("K", "boiling point"),
    "fusion_enthalpy": ("kJ/mol", "enthalpy of fusion"),
    "evaporation_enthalpy": ("kJ/mol", "enthalpy of evaporation"),
    "thermal_conductivity": ("W/(m K)", "thermal conductivity"),
    "d_electrons": ("", "d electrons of the ground-state configuration"),
    "valence_electrons": ("", "electrons outside the noble-gas core (s + d for transition metals)"),
}

# reference CSV column -> (our descriptor, factor to our units)
REFERENCE_COLUMNS = {
    "atomic_number": ("Z", 1.0), "group": ("group", 1.0), "period": ("period", 1.0),
    "atomic_weight": ("mass", 1.0), "electronegativity": ("electronegativity", 1.0),
    "ionization_energy_eV": ("ionization_energy", 1.0), "density_g_cm3": ("density", 1.0),
    "melting_point_K": ("melting_point", 1.0), "boiling_point_K": ("boiling_point", 1.0),
    "delta_fus_H_kJmol": ("fusion_enthalpy", 1.0), "electron_affinity_eV": ("electron_affinity", 1.0),
    "thermal_conductivity_W_cmK": ("thermal_conductivity", 0.01),  # W/(cm K) -> W/(m K): compare as ours/100
    "atomic_radius": ("atomic_radius", 100.0),  # Å -> pm
    "covalent_radius": ("covalent_radius", 100.0),
    "vdw_radius": ("vdw_radius", 100.0),
    "valence_electrons": ("valence_electrons", 1.0),
}

_ORBITAL = re.compile(r"(\d)([spdf])(\d+)")


def _shell_counts(conf: str, group) -> tuple[int, int]:
    """(d electrons, valence electrons) from a configuration such as '[Xe] 4f14 5d9 6s' (a bare subshell
    holds one electron). Valence: the outermost s and p, plus the (n-1)d shell for groups 3-12."""
    conf = conf.strip()
    core = re.match(r"\[(\w+)\]", conf)
    rest = conf[core.end():] if core else conf
    orbs = []
    for tok in rest.split():
        m = re.fullmatch(r"(\d)([spdf])(\d*)", tok)
        if m:
            orbs.append((int(m.group(1)), m.group(2), int(m.group(3) or 1)))
    d = sum(n for _, l, n in orbs if l == "d")
    d_shells = [s for s, l, _ in orbs if l == "d"]
    top = max((s for s, l, _ in orbs if l in "sp"), default=max(d_shells, default=0) + 1)  # Pd: [Kr] 4d10
    with_d = group is not None and not pd.isna(group) and 3 <= group <= 12
    val = sum(n for s, l, n in orbs if (l in "sp" and s == top) or (with_d and l == "d" and s == top - 1))
    return d, val


def _build() -> pd.DataFrame:
    from mendeleev.fetch import fetch_table
    e = fetch_table("elements")
    pt = fetch_table("phasetransitions")
    pt = pt[pt["allotrope"].isna()] if "allotrope" in pt else pt
    pt = pt.groupby("atomic_number")[["melting_point", "boiling_point"]].first()
    ie = fetch_table("ionizationenergies")
    ie = ie[ie["ion_charge"] == 0].groupby("atomic_number")["ionization_energy"].first()
    rows = []
    for _, r in e.iterrows():
        z = int(r["atomic_number"])
        d, val = _shell_counts(str(r["electronic_configuration"]), r["group_id"])
        rows.append({"symbol": r["symbol"], "Z": z, "group": r["group_id"], "period": r["period"],
                     "mass": r["atomic_weight"], "atomic_radius": r["atomic_radius"],
                     "covalent_radius": r["covalent_radius_pyykko"], "metallic_radius": r["metallic_radius"],
                     "vdw_radius": r["vdw_radius"], "electronegativity": r["en_pauling"],
                     "ionization_energy": ie.get(z, np.nan), "electron_affinity": r["electron_affinity"],
                     "density": r["density"], "melting_point": pt["melting_point"].get(z, np.nan),
                     "boiling_point": pt["boiling_point"].get(z, np.nan), "fusion_enthalpy": r["fusion_heat"],
                     "evaporation_enthalpy": r["evaporation_heat"], "thermal_conductivity": r["thermal_conductivity"],
                     "d_electrons": d, "valence_electrons": val})
    return pd.DataFrame(rows).set_index("symbol").astype(float)


def element_table(refresh: bool = False) -> pd.DataFrame:
    """Descriptors per element symbol (rows) from mendeleev, cached in $ELPROP_CACHE."""
    from elprop.core.cache import atomic_write, cache_dir
    path = cache_dir() / "element_descriptors_mendeleev.csv"
    if path.exists() and not refresh:
        t = pd.read_csv(path, index_col="symbol")
        if list(t.columns) == list(DESCRIPTORS):
            return t
    t = _build()[list(DESCRIPTORS)]
    atomic_write(path, lambda tmp: t.to_csv(tmp))
    return t


def check_symbols(symbols, table: pd.DataFrame | None = None, where: str = "") -> None:
    """InputError naming the first symbol that is not an element."""
    table = element_table() if table is None else table
    for s in symbols:
        if s not in table.index:
            raise InputError(f"{where}unknown element symbol {s!r}")


def cross_check(reference_csv, rtol: float = 0.05) -> pd.DataFrame:
    """Per descriptor: elements compared, how many differ by more than ``rtol`` (relative), the largest relative
    difference and where. Both sources are looked at only where both have a value."""
    ref = pd.read_csv(reference_csv).set_index("symbol")
    ours = element_table()
    rows = []
    for col, (name, factor) in REFERENCE_COLUMNS.items():
        if col not in ref.columns:
            continue
        common = ref.index.intersection(ours.index)
        a = ours.loc[common, name].astype(float) / (100.0 if col == "thermal_conductivity_W_cmK" else 1.0)
        b = ref.loc[common, col].astype(float) * (factor if col != "thermal_conductivity_W_cmK" else 1.0)
        ok = a.notna() & b.notna()
        rel = (a[ok] - b[ok]).abs() / b[ok].abs().clip(lower=1e-9)
        worst = rel.idxmax() if len(rel) else ""
        rows.append({"descriptor": name, "reference_column": col, "n_compared": int(ok.sum()),
                     "n_disagree": int((rel > rtol).sum()), "max_rel_diff": float(rel.max()) if len(rel) else np.nan,
                     "worst_element": worst,
                     "ours_at_worst": float(a[worst]) if worst != "" else np.nan,
                     "reference_at_worst": float(b[worst]) if worst != "" else np.nan})
    return pd.DataFrame(rows)

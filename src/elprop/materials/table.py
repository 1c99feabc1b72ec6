"""Materials tables: read a CSV, recognise its shape, and build features.

Shapes:
- **pair** (host/guest, e.g. substrate and overlayer): columns named like ``host*``/``substrate*`` and
  ``guest*``/``overlayer*`` (or given with --host-column/--guest-column) holding element symbols;
- **matrix**: an element × element table (first header cell empty, the other headers and the first column
  element symbols; rows are hosts, columns guests), turned into pair rows with the target ``value``;
- **formula**: a column named ``formula``, ``material``, ``alloy`` or ``composition`` (or --formula-column) with
  alloy formulas such as ``Ti3In``.
Features: the pair or composition descriptors (``featurize``), plus every other numeric column except the target
and identifier-like columns (``label``, ``id``, ``index``, ``--drop-columns``); text columns with few values
(binding site, adsorbate) are one-hot encoded. ``--where col=value`` keeps matching rows only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from elprop.core.dataset import InputError
from elprop.materials.descriptors import element_table
from elprop.materials.featurize import formula_features, pair_features, parse_formula

DEFAULT_DESCRIPTORS = ["Z", "group", "period", "mass", "atomic_radius", "covalent_radius", "metallic_radius",
                       "electronegativity", "ionization_energy", "density", "melting_point", "fusion_enthalpy",
                       "d_electrons"]
ID_COLUMNS = {"label", "id", "index", "unnamed: 0"}


@dataclass
class MaterialsTable:
    kind: str  # pair | formula
    frame: pd.DataFrame  # the rows used (after --where)
    X: pd.DataFrame
    y: np.ndarray | None
    target: str | None
    hosts: list = field(default_factory=list)
    guests: list = field(default_factory=list)
    formulas: list = field(default_factory=list)
    extra: list = field(default_factory=list)  # user columns kept as features
    descriptors: list = field(default_factory=list)

    def groups(self) -> list[set]:
        """Per row, the metals (pair) or the material (formula) it involves, for leave-one-group-out."""
        if self.kind == "pair":
            return [{h, g} for h, g in zip(self.hosts, self.guests)]
        return [{f} for f in self.formulas]

    def labels(self) -> list[str]:
        if self.kind == "pair":
            return [f"{g} on {h}" for h, g in zip(self.hosts, self.guests)]
        return list(self.formulas)


def _symbols_ok(values) -> bool:
    t = element_table()
    vals = [str(v).strip() for v in values]
    return bool(vals) and all(v in t.index for v in vals)


PAIR_PARTS = ("host", "guest", "diff", "ratio")


def read_table(path, target: str | None = None, host_column=None, guest_column=None, formula_column=None,
               descriptors=None, drop_columns=(), where=None, require_target=True,
               pair_parts=PAIR_PARTS) -> MaterialsTable:
    """``pair_parts``: which pair features to keep, of host, guest, diff and ratio (default all four)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    if df.empty:
        raise InputError(f"{path}: no rows")
    first = str(df.columns[0])
    if (first == "" or first.startswith("Unnamed")) and _symbols_ok(df.columns[1:]) and _symbols_ok(df.iloc[:, 0]):
        long = df.melt(id_vars=df.columns[0], var_name="guest", value_name="value")
        df = long.rename(columns={df.columns[0]: "host"})[["host", "guest", "value"]]
        target = target or "value"
    for cond in where or []:
        if "=" not in cond:
            raise InputError(f"--where {cond!r}: give column=value")
        col, val = cond.split("=", 1)
        if col not in df.columns:
            raise InputError(f"--where: no column {col!r} in {path.name}")
        df = df[df[col].astype(str) == val]
        if df.empty:
            raise InputError(f"--where {cond}: no rows left")
    df = df.reset_index(drop=True)

    def find(given, prefixes, what):
        if given:
            if given not in df.columns:
                raise InputError(f"{path.name}: no {what} column {given!r}; columns: {', '.join(map(str, df.columns))}")
            return given
        for c in df.columns:
            if any(str(c).lower().startswith(p) for p in prefixes):
                return c
        return None
    h = find(host_column, ("host", "substrate"), "host")
    g = find(guest_column, ("guest", "overlayer", "adsorbate_metal"), "guest")
    f = find(formula_column, ("formula", "material", "alloy", "composition"), "formula")
    desc = list(descriptors) if descriptors else DEFAULT_DESCRIPTORS
    bad = [d for d in desc if d not in element_table().columns]
    if bad:
        raise InputError(f"unknown descriptor {bad[0]!r}; known: {', '.join(element_table().columns)}")
    if target is not None and target not in df.columns:
        raise InputError(f"{path.name}: no target column {target!r}; columns: {', '.join(map(str, df.columns))}")
    if require_target and target is None:
        raise InputError("give --target, the column to learn")
    y = None
    if target is not None:
        y = pd.to_numeric(df[target], errors="coerce").to_numpy(float)
        bad_rows = np.nonzero(~np.isfinite(y))[0]
        if len(bad_rows):
            raise InputError(f"{path.name}: target {target!r} is missing or not a number in {len(bad_rows)} rows "
                             f"(first: row {bad_rows[0] + 2} of the file)")
    if h and g:
        hosts = [str(v).strip() for v in df[h]]
        guests = [str(v).strip() for v in df[g]]
        bad = [q for q in pair_parts if q not in PAIR_PARTS]
        if bad or not pair_parts:
            raise InputError(f"pair features {','.join(pair_parts)!r}: choose from {', '.join(PAIR_PARTS)}")
        feats = pair_features(hosts, guests, desc)
        feats = feats[[c for c in feats.columns if c.split("_", 1)[0] in pair_parts]]
        kind, used = "pair", {h, g}
        formulas = []
    elif f:
        formulas = [str(v).strip() for v in df[f]]
        for k, s in enumerate(formulas):
            try:
                parse_formula(s)
            except InputError as e:
                raise InputError(f"{path.name} row {k + 2}: {e}") from None
        feats = formula_features(formulas, desc)
        kind, used, hosts, guests = "formula", {f}, [], []
    else:
        raise InputError(f"{path.name}: found no host/guest columns and no formula column (columns: "
                         f"{', '.join(map(str, df.columns))}); name them or pass --host-column/--guest-column or "
                         "--formula-column")
    skip = used | {target} | set(drop_columns)
    extra_num, extra_cat = [], []
    for c in df.columns:
        if c in skip or str(c).lower() in ID_COLUMNS:
            continue
        if pd.api.types.is_numeric_dtype(df[c]):
            extra_num.append(c)
        elif df[c].nunique() <= 12 and df[c].nunique() > 1:
            extra_cat.append(c)
    parts = [feats.reset_index(drop=True)]
    if extra_num:
        parts.append(df[extra_num].astype(float).reset_index(drop=True))
    if extra_cat:
        parts.append(pd.get_dummies(df[extra_cat].astype(str), prefix=extra_cat, dtype=float).reset_index(drop=True))
    X = pd.concat(parts, axis=1)
    X.columns = [str(c) for c in X.columns]
    return MaterialsTable(kind, df, X, y, target, hosts, guests, formulas, extra_num + extra_cat, desc)


def candidate_pairs(elements, descriptors, extra_defaults: dict | None = None) -> tuple[list, list, pd.DataFrame]:
    """Every ordered host/guest pair of distinct ``elements`` and the pure metals (host == guest)."""
    hosts, guests = [], []
    for a in elements:
        for b in elements:
            hosts.append(a)
            guests.append(b)
    X = pair_features(hosts, guests, descriptors)
    for k, v in (extra_defaults or {}).items():
        X[k] = v
    return hosts, guests, X

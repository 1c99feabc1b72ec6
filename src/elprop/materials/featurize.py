"""Featurisers for surfaces and alloys from elemental descriptors.

- ``pair_features(hosts, guests)``: for a host/guest pair (e.g. substrate and overlayer metal), the descriptors
  of both (``host_*``, ``guest_*``), their differences (``diff_*`` = guest − host) and ratios (``ratio_*`` =
  guest / host, where the host value is non-zero).
- ``formula_features(formulas)``: for an alloy formula such as ``Ti3In`` or ``CuPd``, composition-weighted
  statistics of each descriptor: mean, min, max, range and standard deviation (weighted by atom fraction).
- ``parse_formula``: 'Ti3In' -> {'Ti': 3, 'In': 1}; parentheses are supported ('Ca(OH)2').
Any extra numeric columns of the user's file (strain, site, GCN, ...) are kept as features by the caller.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from elprop.core.dataset import InputError
from elprop.materials.descriptors import check_symbols, element_table

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)|(\()|(\))(\d*\.?\d*)")


def parse_formula(formula: str) -> dict[str, float]:
    """Element amounts of a formula; InputError if it does not parse or names an unknown element."""
    s = str(formula).strip()
    if not s:
        raise InputError("empty alloy formula")
    stack = [{}]
    pos = 0
    for m in _TOKEN.finditer(s):
        if m.start() != pos:
            raise InputError(f"cannot parse alloy formula {formula!r} at {s[pos:]!r}")
        pos = m.end()
        if m.group(1):
            el, n = m.group(1), float(m.group(2)) if m.group(2) else 1.0
            stack[-1][el] = stack[-1].get(el, 0.0) + n
        elif m.group(3):
            stack.append({})
        else:
            if len(stack) == 1:
                raise InputError(f"cannot parse alloy formula {formula!r}: unbalanced ')'")
            n = float(m.group(5)) if m.group(5) else 1.0
            inner = stack.pop()
            for el, k in inner.items():
                stack[-1][el] = stack[-1].get(el, 0.0) + k * n
    if pos != len(s) or len(stack) != 1 or not stack[0]:
        raise InputError(f"cannot parse alloy formula {formula!r}")
    check_symbols(stack[0], where=f"alloy formula {formula!r}: ")
    if any(v <= 0 for v in stack[0].values()):
        raise InputError(f"alloy formula {formula!r}: amounts must be positive")
    return stack[0]


def pair_features(hosts, guests, descriptors=None) -> pd.DataFrame:
    t = element_table()
    cols = list(descriptors) if descriptors is not None else list(t.columns)
    hosts, guests = list(hosts), list(guests)
    check_symbols(hosts, t, "host: ")
    check_symbols(guests, t, "guest: ")
    h = t.loc[hosts, cols].to_numpy(float)
    g = t.loc[guests, cols].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(h != 0, g / h, np.nan)
    parts = {f"host_{c}": h[:, k] for k, c in enumerate(cols)}
    parts.update({f"guest_{c}": g[:, k] for k, c in enumerate(cols)})
    parts.update({f"diff_{c}": g[:, k] - h[:, k] for k, c in enumerate(cols)})
    parts.update({f"ratio_{c}": ratio[:, k] for k, c in enumerate(cols)})
    return pd.DataFrame(parts)


def formula_features(formulas, descriptors=None) -> pd.DataFrame:
    t = element_table()
    cols = list(descriptors) if descriptors is not None else list(t.columns)
    rows = []
    for f in formulas:
        comp = parse_formula(f)
        els = list(comp)
        w = np.array([comp[e] for e in els], float)
        w = w / w.sum()
        v = t.loc[els, cols].to_numpy(float)  # [elements, descriptors]
        mean = (w[:, None] * v).sum(0)
        std = np.sqrt((w[:, None] * (v - mean) ** 2).sum(0))
        row = {}
        for k, c in enumerate(cols):
            row[f"mean_{c}"] = mean[k]
            row[f"min_{c}"] = v[:, k].min()
            row[f"max_{c}"] = v[:, k].max()
            row[f"range_{c}"] = v[:, k].max() - v[:, k].min()
            row[f"std_{c}"] = std[k]
        row["n_elements"] = len(els)
        rows.append(row)
    return pd.DataFrame(rows)

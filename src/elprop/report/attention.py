"""Which representation a multi-representation model trusts, by chemical class (``--model multirep`` runs).

Every evaluated molecule gets its attention weights (``PropertyModel.representation_weights``); the summary
averages them within classes a chemist would look at: aromatic or not, the number of heteroatoms (N, O, F),
conjugated or not (any conjugated bond outside aromatic rings counts too), and ring count.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def chemical_classes(smiles: list[str]) -> pd.DataFrame:
    """Per SMILES: aromatic (bool), heteroatoms (0, 1, 2, 3+), conjugated (bool), rings (0, 1, 2+)."""
    from rdkit import Chem
    rows = []
    for s in smiles:
        m = Chem.MolFromSmiles(str(s)) if s else None
        if m is None:
            rows.append({"aromatic": None, "heteroatoms": None, "conjugated": None, "rings": None})
            continue
        het = sum(a.GetAtomicNum() in (7, 8, 9) for a in m.GetAtoms())
        rings = m.GetRingInfo().NumRings()
        rows.append({"aromatic": any(a.GetIsAromatic() for a in m.GetAtoms()),
                     "heteroatoms": str(het) if het < 3 else "3+",
                     "conjugated": any(b.GetIsConjugated() for b in m.GetBonds()),
                     "rings": str(rings) if rings < 2 else "2+"})
    return pd.DataFrame(rows)


def attention_tables(smiles, names: list[str], weights: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-molecule table: smiles, classes and one weight column per representation; summary: the mean weight
    of each representation within each class, with the class size)."""
    per = pd.concat([pd.DataFrame({"smiles": list(smiles)}), chemical_classes(list(smiles)),
                     pd.DataFrame(weights, columns=[f"attention_{n}" for n in names])], axis=1)
    per = per[np.isfinite(weights).all(1)].reset_index(drop=True)
    cols = [f"attention_{n}" for n in names]
    parts = [pd.DataFrame([{"class": "all", "value": "", "n": len(per), **per[cols].mean().to_dict()}])]
    for c in ("aromatic", "heteroatoms", "conjugated", "rings"):
        g = per.groupby(c)[cols]
        parts.append(pd.concat([g.size().rename("n"), g.mean()], axis=1).reset_index()
                     .rename(columns={c: "value"}).assign(**{"class": c}))
    summary = pd.concat(parts, ignore_index=True)[["class", "value", "n", *cols]]
    summary["value"] = summary["value"].astype(str)
    return per, summary

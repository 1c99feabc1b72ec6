"""Build the shift set: small molecules (≤ 9 heavy atoms, C/H/N/O/F, neutral, closed shell) outside QM9.

    python benchmarks/shift_set.py            # writes src/elprop/data/shift/molecules.csv
    elprop label shift --out benchmarks/out/labels/shift --workers 2      # DFT labels (resumable)
    python benchmarks/shift_set.py --merge benchmarks/out/labels/shift      # labels into the packaged set

Reads benchmarks/shift/candidates.csv (name, SMILES, motif, chosen by hand for motifs QM9 lacks: terminal and
acyclic C=C, conjugated chains, cumulenes, unusual functional groups, 7- and 8-membered rings) and keeps every
candidate that RDKit sanitises, that meets the size and element limits, and whose InChIKey is not among QM9's
130,831 molecules (qm9pack SMILES). The dropped candidates are listed with the reason. Labels are then computed
with `elprop label` (see benchmarks/RESULTS.md, "Shift set").
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src/elprop/data/shift/molecules.csv"


def merge(label_dir: Path) -> int:
    """Add the label columns of `elprop label`'s labels.csv to the packaged set (rows matched by name), and copy
    the geometries; molecules whose labelling failed keep empty label cells and are listed."""
    import shutil

    import pandas as pd
    mols = pd.read_csv(OUT)
    mols = mols[[c for c in mols.columns if "[" not in c and c not in ("geometry", "scf")]]
    lab = pd.read_csv(label_dir / "labels.csv")
    cols = ["name"] + [c for c in lab.columns if "[" in c and not c.startswith("E [")] + ["geometry", "scf"]
    merged = mols.merge(lab[cols], on="name", how="left")
    merged.to_csv(OUT, index=False)
    shutil.copy(label_dir / "geometries.extxyz", OUT.parent / "geometries.extxyz")
    missing = merged[merged["gap [eV]"].isna()]["name"].tolist()
    print(f"merged labels of {len(merged) - len(missing)} of {len(merged)} molecules"
          + (f"; without labels: {', '.join(missing)}" if missing else ""), file=sys.stderr)
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--merge":
        return merge(Path(sys.argv[2]))
    rows = list(csv.DictReader(open(ROOT / "benchmarks/shift/candidates.csv")))
    from elprop.data.qm9 import qm9_inchikeys
    qm9 = qm9_inchikeys()
    print(f"QM9: {len(qm9)} distinct InChIKeys", file=sys.stderr)
    kept, seen = [], set()
    for r in rows:
        m = Chem.MolFromSmiles(r["smiles"])
        why = None
        if m is None:
            why = "does not sanitise"
        else:
            heavy = m.GetNumHeavyAtoms()
            elems = {a.GetSymbol() for a in m.GetAtoms()}
            radicals = sum(a.GetNumRadicalElectrons() for a in m.GetAtoms())
            key = Chem.MolToInchiKey(m)
            if heavy > 9:
                why = f"{heavy} heavy atoms"
            elif not elems <= {"C", "H", "N", "O", "F"}:
                why = f"elements {sorted(elems)}"
            elif Chem.GetFormalCharge(m) != 0 or radicals:
                why = "charged or open shell"
            elif key in qm9:
                why = "in QM9 (same InChIKey)"
            elif key in seen:
                why = "duplicate"
        if why:
            print(f"dropped {r['name']} ({r['smiles']}): {why}", file=sys.stderr)
            continue
        seen.add(key)
        kept.append({"name": r["name"], "smiles": Chem.MolToSmiles(m), "motif": r["motif"], "inchikey": key,
                     "heavy_atoms": m.GetNumHeavyAtoms()})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(kept[0]))
        w.writeheader()
        w.writerows(kept)
    print(f"kept {len(kept)} of {len(rows)} candidates -> {OUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost per molecule of `elprop label`, from the results it wrote.

    python benchmarks/label_cost.py benchmarks/out/labels/shift [more label folders]

Reads every results/*.json of the folders: the time of the geometry (ETKDG + MMFF + GFN2-xTB) and of the SCF
per molecule, by heavy-atom count, with the threads each worker had (config.json). Prints a markdown table.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    rows = []
    for d in map(Path, sys.argv[1:]):
        for f in sorted((d / "results").glob("*.json")):
            r = json.loads(f.read_text())
            if r.get("ok"):
                heavy = sum(1 for z in r["z"] if z > 1)
                rows.append((d.name, heavy, r.get("t_geometry_s", 0.0), r.get("t_scf_s", 0.0), r["wall_s"]))
    if not rows:
        print("no results")
        return 1
    print("| heavy atoms | molecules | geometry s (median) | SCF s (median) | SCF s (max) | total s (median) |")
    print("|---|---|---|---|---|---|")
    heavy = np.array([r[1] for r in rows])
    for h in sorted(set(heavy)):
        sel = [r for r in rows if r[1] == h]
        g, s, w = (np.array([r[k] for r in sel]) for k in (2, 3, 4))
        print(f"| {h} | {len(sel)} | {np.median(g):.2f} | {np.median(s):.1f} | {s.max():.1f} | {np.median(w):.1f} |")
    w = np.array([r[4] for r in rows])
    print(f"| all | {len(rows)} | {np.median([r[2] for r in rows]):.2f} | {np.median([r[3] for r in rows]):.1f} | "
          f"{max(r[3] for r in rows):.1f} | {np.median(w):.1f} (mean {w.mean():.1f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

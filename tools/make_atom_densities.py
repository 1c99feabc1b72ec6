"""Rebuild the shipped free-atom density table (src/elprop/density/data/atom_densities.npz).

    .venv/bin/python tools/make_atom_densities.py [--xc b3lyp --basis "6-31g(2df,p)" --out FILE]

See elprop.density.atoms for the method (UKS free atoms, Lebedev spherical average). Prints each element's
energy and the electron count of its table.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from elprop.density.atoms import SHIPPED, compute_tables


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xc", default="b3lyp")
    ap.add_argument("--basis", default="6-31g(2df,p)")
    ap.add_argument("--out", default=str(SHIPPED))
    args = ap.parse_args()
    tables = compute_tables(args.xc, args.basis, log=print)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **tables)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

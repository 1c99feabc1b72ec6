"""``elprop data info``."""
from __future__ import annotations

import argparse

import numpy as np


def add_parser(sub):
    p = sub.add_parser("data", help="inspect data sets", description="Inspect data sets.")
    dsub = p.add_subparsers(dest="data_command", metavar="subcommand")
    dsub.required = True
    info = dsub.add_parser("info", help="counts, targets and units of a data set",
                           description="Show counts, elements, targets (with units and statistics) of a data set.",
                           epilog="examples:\n  elprop data info qm9\n  elprop data info dband-overlayers\n"
                                  "  elprop data info dsgdb9nsd.xyz.tar.bz2\n  elprop data info mols.csv\n\n"
                                  "embedded data sets: " + ", ".join(_embedded_names()),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("source", help="'qm9' (embedded qm9pack data), an embedded materials table (dband-overlayers, "
                                     "dband-overlayer-matrix, dband-pure, adsorption-h, adsorption-o-oh, elements), "
                                     "a QM9 tarball or folder, or an xyz/extxyz/sdf/smi/csv file")
    info.add_argument("--exclude", help="file of QM9 indices to drop (e.g. uncharacterized.txt)")
    info.set_defaults(func=run_info)


def _embedded_names():
    from elprop.data.embedded import EMBEDDED
    return list(EMBEDDED)


def _table_info(name) -> int:
    """An embedded materials table: what it is, its source and licence, rows and columns with units."""
    import pandas as pd

    from elprop.data.embedded import EMBEDDED, embedded_path
    e = EMBEDDED[name]
    path = embedded_path(name)
    df = pd.read_csv(path)
    print(f"name:      {name}")
    print(f"file:      {path}")
    print(f"what:      {e.description}")
    print(f"source:    {e.source}")
    print(f"licence:   {e.licence}")
    print(f"rows:      {len(df):,}")
    print()
    print(f"{'column':<26} {'unit':<10} {'n':>6} {'mean':>12} {'std':>11}")
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_numeric_dtype(col):
            ok = col.notna()
            print(f"{str(c)[:26]:<26} {e.units.get(c, ''):<10} {int(ok.sum()):>6} {col[ok].mean():12.4f} "
                  f"{col[ok].std(ddof=0):11.4f}")
        else:
            vals = col.dropna().astype(str).unique()
            print(f"{str(c)[:26]:<26} {'(text)':<10} {int(col.notna().sum()):>6}  {len(vals)} values, e.g. "
                  f"{', '.join(vals[:4])}")
    return 0


def run_info(args) -> int:
    from elprop.core.dataset import SYMBOLS
    from elprop.data.embedded import EMBEDDED
    if args.source in EMBEDDED and EMBEDDED[args.source].file:
        return _table_info(args.source)
    from elprop.data.qm9 import load_qm9
    from elprop.data.readers import read_any
    from elprop.core.units import TARGETS

    if args.exclude or args.source == "qm9":
        ds = load_qm9(None if args.source == "qm9" else args.source, exclude=args.exclude)
    else:
        ds = read_any(args.source)
    if args.source == "qm9":
        e = EMBEDDED["qm9"]
        print(f"what:      {e.description}")
        print(f"reference: {e.source}; licence {e.licence}")
    print(f"source:    {ds.source}")
    print(f"molecules: {len(ds):,}")
    if len(ds.z):
        els = np.unique(ds.z)
        print(f"atoms:     {int(ds.n_atoms.min())}-{int(ds.n_atoms.max())} per molecule "
              f"(mean {ds.n_atoms.mean():.1f}); elements: {' '.join(SYMBOLS[int(e)] for e in els)}")
    print(f"3D coordinates: {'yes' if ds.pos is not None else 'no'}")
    if ds.target_names:
        print()
        print(f"{'target':<10} {'unit':<12} {'n':>8} {'mean':>12} {'std':>11}  description")
        for k, t in enumerate(ds.target_names):
            col = ds.y[:, k]
            ok = np.isfinite(col)
            u = TARGETS[t].unit if t in TARGETS else ds.target_units.get(t, "unitless")
            desc = TARGETS[t].description if t in TARGETS else ""
            mean = f"{col[ok].mean():12.4f}" if ok.any() else f"{'-':>12}"
            std = f"{col[ok].std():11.4f}" if ok.any() else f"{'-':>11}"
            print(f"{t:<10} {u:<12} {int(ok.sum()):>8} {mean} {std}  {desc}")
    return 0

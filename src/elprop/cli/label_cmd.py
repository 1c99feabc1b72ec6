"""``elprop label INPUT... --out DIR``: DFT labels for any molecule, resumable and Dask-parallel."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from elprop.core.dataset import InputError

EPILOG = """examples:
  elprop label "C=CC=C" "C=C=C" --out labels/dienes          SMILES: ETKDG + MMFF, GFN2-xTB, B3LYP single point
  elprop label mols.sdf --out labels/mine --workers 2           every molecule of a file (smi, sdf, xyz, csv)
  elprop label qm9 --subset random:30 --opt none --out labels/qm9    QM9's own geometries, no optimisation
  elprop label "CC(=O)[O-]" --charge -1 --out labels/acetate    a charged molecule needs --charge
  elprop label shift --out labels/shift                         the embedded shift set (elprop data info shift)

Default level: B3LYP/6-31G(2df,p) with density fitting (the QM9 level). Rerun the same command after a kill:
finished molecules are skipped. DIR/labels.csv trains or fine-tunes a model directly:
  elprop train --init-model MODEL --data DIR/labels.csv --out runs/tuned
Failures (geometry or SCF) are listed in DIR/failures.csv and never stop the batch. See docs/labelling.md.
"""


def add_parser(sub):
    from elprop.cli.density_cmd import _dft_args, _run_args
    from elprop.label.geometry import OPT_CHOICES
    p = sub.add_parser("label", help="DFT labels (HOMO, LUMO, gap, μ, energies) for any molecule",
                       description="Compute DFT labels for molecules from SMILES, files or QM9: a real geometry "
                                   "(RDKit ETKDG + MMFF, then GFN2-xTB with tblite), then a PySCF single point at "
                                   "the QM9 level of theory.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="SMILES strings, molecule files (.smi, .sdf, .xyz, .extxyz, .csv), 'qm9' or 'shift'")
    p.add_argument("--out", required=True, help="output folder (created; rerun to resume)")
    p.add_argument("--opt", default="xtb", choices=OPT_CHOICES,
                   help="geometry: xtb = ETKDG+MMFF then GFN2-xTB (default); mmff = ETKDG+MMFF only; dft = xTB "
                        "then a DFT optimisation (slow); none = the input geometry (from SMILES: ETKDG+MMFF)")
    p.add_argument("--method", default="dft", choices=("dft", "xtb"),
                   help="level of the labels: dft = the PySCF settings below (default, the QM9 level); xtb = "
                        "GFN2-xTB (tblite) in a second or so per molecule, a stand-in for tests, not QM9-level "
                        "labels")
    p.add_argument("--polarizability", action="store_true",
                   help="also α [bohr^3] by finite differences of the dipole in a field (six more SCFs)")
    p.add_argument("--subset", help="molecules of a file or data set: A:B, i,j,k, @file, random:N[:seed]")
    p.add_argument("--smiles-column", help="SMILES column of a CSV input")
    p.add_argument("--seed", type=int, default=42, help="seed of the ETKDG embedding (default: 42)")
    _dft_args(p, fallback=False)
    _run_args(p)
    p.set_defaults(func=run)


def _dataset(inputs: list[str], subset: str | None, smiles_column: str | None):
    from elprop.cli.options import is_file_arg
    from elprop.core.dataset import Dataset, Molecule
    from elprop.data.load import DataSpec, load_data
    from elprop.density.generate import parse_subset
    parts = []
    smiles = []
    for x in inputs:
        if x in ("qm9", "shift") or Path(x).exists():
            parts.append(load_data(DataSpec(x, smiles_column=smiles_column, allow_missing=True)))
        elif is_file_arg(x):  # a molecule file's name, but no such file
            raise InputError(f"{x}: no such file")
        else:
            smiles.append(x)
    if smiles:
        parts.append(Dataset.from_molecules([Molecule(np.zeros(0, int), smiles=s, name=f"smiles_{k + 1}")
                                             for k, s in enumerate(smiles)], []))
    if len(parts) > 1 and subset:
        raise InputError("--subset applies to one input file or data set; give one")
    ds = parts[0] if len(parts) == 1 else Dataset.from_molecules([d[i] for d in parts for i in range(len(d))], [])
    return ds.subset(parse_subset(subset, ds)) if subset else ds


def run(args) -> int:
    from elprop.density.dft import DFTSettings
    from elprop.label.run import label_items, molecule_items
    if args.workers < 0:
        raise InputError(f"--workers {args.workers}: give 0 (in process) or more")
    settings = DFTSettings(xc=args.xc, basis=args.basis, density_fit=not args.no_density_fit,
                           grid_level=args.grid_level, charge=args.charge, spin=args.spin)
    ds = _dataset(args.inputs, args.subset, args.smiles_column)
    if args.method == "xtb" and args.polarizability:
        raise InputError("--polarizability needs --method dft")
    items = molecule_items(ds, settings)
    s = label_items(items, args.out, settings, opt=args.opt, polarizability=args.polarizability, seed=args.seed,
                    workers=args.workers, scheduler=args.scheduler, threads_per_worker=args.threads_per_worker,
                    retry_failed=args.retry_failed, progress=not args.no_progress, method=args.method)
    print(json.dumps(s))
    print(f"labels: {Path(args.out) / 'labels.csv'}" + (f"; failures: {Path(args.out) / 'failures.csv'}"
                                                         if s["failures"] else ""))
    return 0

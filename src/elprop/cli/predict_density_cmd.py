"""``elprop predict-density``: a trained HK map's density for a molecule, as a Gaussian cube file."""
from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  elprop predict-density --model runs/hk/model "CC(=O)O" -o acetic_acid.cube       (SMILES: RDKit 3D embedding)
  elprop predict-density --model runs/hk/model mol.xyz -o mol.cube
  elprop predict-density --model runs/hk/model --density-store dev.zarr --index 12 -o rec12.cube

The cube holds the predicted total electron density in e/bohr³ on the model's grid, with the atoms; VMD,
Avogadro and ASE open it. With --density-store, the DFT density of the same record goes to <output>.dft.cube.
"""


def add_parser(sub):
    p = sub.add_parser("predict-density", help="predict a molecule's electron density with a trained HK map",
                       description="Predict the DFT electron density of a molecule with a trained hk-unet model "
                                   "and write it as a Gaussian cube file.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", help="a SMILES string or an xyz/sdf file with one molecule")
    p.add_argument("--model", required=True, help="a saved hk-unet model (runs/<name>/model)")
    p.add_argument("--density-store", help="take the molecule (and its stored inputs) from this store")
    p.add_argument("--index", type=int, help="record of --density-store")
    p.add_argument("-o", "--output", required=True, help="cube file to write")
    p.set_defaults(func=run)


def _molecule(text):
    import os

    import numpy as np

    from elprop.data.dataset import InputError
    if os.path.isfile(text):
        from elprop.data.readers import read_any
        ds = read_any(text)
        if len(ds) != 1 or ds.pos is None:
            raise InputError(f"{text}: give a file with exactly one molecule with coordinates (it has {len(ds)})")
        m = ds[0]
        return m.z.astype(np.int64), m.pos.astype(np.float64), m.smiles or Path(text).name
    from elprop.chem.rdkit_utils import embed_3d
    m = embed_3d(text)
    return m.z.astype(np.int64), m.pos.astype(np.float64), text


def run(args) -> int:
    import numpy as np

    from elprop.data.dataset import InputError
    from elprop.density.cube import write_cube
    from elprop.train.density_run import DensityModel
    model = DensityModel.load(args.model)
    if args.density_store:
        from elprop.density.store import DONE, DensityStore
        if args.index is None:
            raise InputError("--density-store needs --index")
        st = DensityStore(args.density_store)
        if not 0 <= args.index < len(st):
            raise InputError(f"--index {args.index} is outside the store's {len(st)} records")
        z, pos = st.atoms(args.index)
        rho = model.predict_store(args.density_store, np.array([args.index]))[0]
        grid, label = st.grid(args.index), str(st.root["smiles"][args.index])
        if "dft" in st.kinds and st.status("dft")[args.index] == DONE:
            out = Path(args.output)
            write_cube(out.with_suffix(".dft.cube"), st.read(args.index, ["dft"])[0], grid, z, pos,
                       comment=f"DFT density {label}")
    else:
        if not args.input:
            raise InputError("give a SMILES string or a molecule file, or --density-store and --index")
        z, pos, label = _molecule(args.input)
        grid, rho = model.predict_molecule(z, pos)
    write_cube(args.output, rho, grid, z, pos, comment=f"elprop hk-unet density {label}")
    n = float(rho.sum() * grid.voxel_volume)
    print(f"wrote {args.output}: {label}, {grid.n}³ grid at {grid.spacing:.3f} Å, {n:.3f} electrons on the grid "
          f"({int(np.sum(z))} expected)")
    return 0

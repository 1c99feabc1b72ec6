"""``elprop predict-density``: a trained HK map's density for a molecule, as a Gaussian cube file."""
from __future__ import annotations

import argparse
from pathlib import Path

from elprop.core.dataset import InputError

EPILOG = """examples:
  elprop predict-density --model runs/hk/model "CC(=O)O" -o acetic_acid.cube       (SMILES: RDKit 3D embedding)
  elprop predict-density --model runs/hk/model mol.xyz -o mol.cube
  elprop predict-density --model runs/hk/model --density-store dev.zarr --index 12 -o rec12.cube
  elprop predict-density --model runs/hk/model --density-store dev.zarr --write-kind hk
      (every record's predicted density into the store as kind 'hk', e.g. for `elprop train --model cnn3d
       --channels hk`: properties from learned densities)

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
    p.add_argument("-o", "--output", help="cube file to write")
    p.add_argument("--write-kind", choices=["hk"],
                   help="with --density-store and no --index: write the predicted density of every record into "
                        "the store as this kind (kept on rerun with the same model)")
    p.add_argument("--batch-size", type=int, default=4, help="records per forward pass with --write-kind")
    p.set_defaults(func=run)


def _molecule(text):
    import os

    import numpy as np

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

    from elprop.density.cube import write_cube
    from elprop.train.density_run import DensityModel
    model = DensityModel.load(args.model)
    if args.write_kind:
        if not args.density_store or args.index is not None or args.output:
            raise InputError("--write-kind goes with --density-store, without --index and -o")
        return _write_kind(model, args)
    if not args.output:
        raise InputError("give -o/--output, the cube file to write")
    if args.density_store:
        from elprop.density.store import DONE, DensityStore
        if args.index is None:
            raise InputError("--density-store needs --index")
        st = DensityStore(args.density_store)
        if not 0 <= args.index < len(st):
            raise InputError(f"--index {args.index} is outside the store's {len(st)} records")
        z, pos = st.atoms(args.index)
        rho = model.predict_store(st, np.array([args.index]))[0]
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


def _write_kind(model, args) -> int:
    """Predicted densities of all records (that have the model's inputs) into the store as ``args.write_kind``."""
    import hashlib
    import time

    import numpy as np
    from tqdm import tqdm

    from elprop.density.store import DONE, DensityStore
    from elprop.represent.hk import HKSet
    st = DensityStore(args.density_store, mode="r+")
    if st.grid_params["shape"] != model.config["grid"]["shape"] or \
            abs(st.grid_params["box_A"] - model.config["grid"]["box_A"]) > 1e-9:
        raise InputError(f"{args.density_store}: grids {st.grid_params['shape']}³ over {st.grid_params['box_A']} Å, "
                         f"but the model was trained on {model.config['grid']['shape']}³ over "
                         f"{model.config['grid']['box_A']} Å")
    weights = Path(args.model) / "member_0.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    params = {"blur": st.grid_params.get("blur_voxels", 0.0), "model": str(Path(args.model).resolve()),
              "weights_sha256": digest, "channels": model.config["channels"]}
    rep = HKSet(st, model.config["channels"])  # the store is opened once and passed along
    st.lock()
    try:
        g = st.ensure_kind(args.write_kind, params, dtype="float32")
        g.attrs["level_of_theory"] = (f"hk-unet prediction from {', '.join(model.config['channels'])} "
                                      f"(model {args.model}, weights {digest})")
        status = st.status(args.write_kind)
        todo = [int(i) for i in np.nonzero(rep.valid)[0] if status[i] != DONE]
        t0 = time.time()
        bar = tqdm(total=len(todo), desc=f"predicting {args.write_kind}", unit="record", disable=len(todo) < 2)
        for s in range(0, len(todo), args.batch_size):
            recs = np.asarray(todo[s:s + args.batch_size])
            pred = model.predict_store(st, recs, batch_size=args.batch_size)
            for i, rho in zip(recs, pred):
                st.write_record(args.write_kind, int(i), {"ok": True, "density": rho})
            bar.update(len(recs))
        bar.close()
    finally:
        st.unlock()
    n_done = int((st.status(args.write_kind) == DONE).sum())
    print(f"wrote {len(todo)} predicted densities into {args.density_store} as kind '{args.write_kind}' "
          f"({n_done} records have it; {time.time() - t0:.1f} s)")
    return 0

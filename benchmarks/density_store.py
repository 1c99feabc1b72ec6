"""Density generation and storage, measured side by side in one run.

    .venv/bin/python benchmarks/density_store.py --dev-store DEV.zarr        (~10 min on 2 cores)

1. Promolecular voxelisation at 48³: molecules/s in one process, and end to end through `generate` (Dask,
   2 workers, writing the store), against the samples/s that a 3D CNN consumes in training at the same grid
   (a residual 3D CNN, batch 8, forward + backward on the CPU). Prints the ratio.
2. Storage of the dev store's kinds (float16 + Blosc zstd + bit shuffle, the default): bytes per record against
   raw float32, the same data as float32 + zstd, and the error that float16 introduces (largest absolute error,
   largest relative error over voxels above 1e-3 of the record's maximum, and the electron-count error).
3. Random-read throughput (records/s, shuffled order, warm page cache) of the Zarr store against HDF5 (h5py,
   one chunk per record, gzip + shuffle, and uncompressed) and one plain .npy file per record.
4. DFT molecules per hour at the dev level (PBE/def2-SVP, density fitting) with 1 and 2 Dask workers, giving the
   scaling efficiency T1 / (2 T2), and seconds per molecule at the QM9 level (B3LYP/6-31G(2df,p), density
   fitting, 2 workers) with an estimate for all of QM9 and the differences from the QM9 labels. The stores stay
   in --out (`elprop density info` reads them).
Writes results.json and results.md to --out. Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
QUIET = dict(progress=False, log=lambda *a: None)


def cnn_samples_per_s(n: int, batch: int = 8, steps: int = 6) -> float:
    """Training throughput of a small residual 3D CNN (the kind the volumetric models use) on an n³ grid."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.f = nn.Sequential(nn.Conv3d(c, c, 3, padding=1), nn.BatchNorm3d(c), nn.SiLU(),
                                   nn.Conv3d(c, c, 3, padding=1), nn.BatchNorm3d(c))

        def forward(self, x):
            return torch.nn.functional.silu(x + self.f(x))
    net = nn.Sequential(nn.Conv3d(1, 16, 3, padding=1), Block(16), nn.Conv3d(16, 32, 3, stride=2, padding=1), Block(32),
                        nn.Conv3d(32, 64, 3, stride=2, padding=1), Block(64), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                        nn.Linear(64, 4))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.randn(batch, 1, n, n, n), torch.randn(batch, 4)
    for k in range(steps + 1):
        if k == 1:
            t0 = time.time()
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.time() - t0)


def voxelisation(ds, n_mol: int, out: Path) -> dict:
    from elprop.density.generate import generate, kind_params, random_subset
    from elprop.density.grid import molecule_grid
    from elprop.density.promolecular import promolecular_density
    from elprop.density.store import DensityStore
    idx = random_subset(ds, n_mol, seed=0)
    mols = [ds[int(i)] for i in idx]
    promolecular_density(mols[0].z, mols[0].pos, molecule_grid(mols[0].pos))  # tables loaded
    t0 = time.time()
    for m in mols:
        promolecular_density(m.z, m.pos, molecule_grid(m.pos))
    one = n_mol / (time.time() - t0)
    res = {"molecules": n_mol, "one_process_mol_per_s": one}
    for workers in (0, 2):
        p = out / f"vox_{workers}.zarr"
        shutil.rmtree(p, ignore_errors=True)
        st = DensityStore.create(p, ds, idx, 48, 18.0, 0.6)
        s = generate(st, "promolecular", kind_params("promolecular", 0.6), workers=workers, **QUIET)
        res[f"store_mol_per_s_workers_{workers}"] = s["computed"] / s["wall_s"]
    res["cnn_train_samples_per_s"] = cnn_samples_per_s(48)
    res["ratio_voxelisation_2_workers_to_cnn"] = res["store_mol_per_s_workers_2"] / res["cnn_train_samples_per_s"]
    return res


def storage(dev: Path, out: Path, n_check: int) -> dict:
    """Bytes per record and float16 error for each kind of the dev store (float32 references recomputed)."""
    from elprop.density.dft import dft_density
    from elprop.density.generate import compute_batch
    from elprop.density.grid import integrate
    from elprop.density.store import DensityStore
    st = DensityStore(dev)
    n = int(st.grid_params["shape"])
    raw = 4 * n ** 3
    res = {}
    for kind in st.kinds:
        ka = st.kind_attrs(kind)
        done = st.done([kind])
        rec = {"dtype": ka["dtype"], "records": int(len(done)), "raw_float32_bytes": raw,
               "bytes_per_record": st.stored_bytes(kind) / max(len(done), 1)}
        rec["percent_of_raw"] = 100 * rec["bytes_per_record"] / raw
        pick = done[np.random.default_rng(0).permutation(len(done))[:n_check]]
        ref = []
        for i in pick:
            z, pos = st.atoms(int(i))
            g = st.grid(int(i))
            if kind == "dft":
                dm, basis = st.density_matrix(int(i))
                s = ka["params"]["settings"]
                ref.append(dft_density(z, pos, g, basis, dm, ka["params"]["blur"], (s["xc"], s["basis"])))
            else:
                item = (int(i), z, pos, g.center, g.n, g.spacing)
                ref.append(compute_batch(kind, ka["params"], [item])[0][1]["density"])
        ref = np.stack(ref).astype(np.float32)
        got = np.stack([st.read(int(i), [kind])[0] for i in pick])
        err = np.abs(got.astype(np.float64) - ref)
        big = np.abs(ref) > 1e-3 * np.abs(ref).reshape(len(ref), -1).max(1)[:, None, None, None]
        rec.update({"max_abs_error": float(err.max()), "max_value": float(np.abs(ref).max()),
                    "max_rel_error_above_1e-3_of_max": float((err[big] / np.abs(ref[big])).max())})
        if kind != "potential":
            gs = [st.grid(int(i)) for i in pick]
            rec["max_electron_count_rel_error"] = float(max(abs(integrate(a, g) - integrate(b, g)) / integrate(b, g)
                                                            for a, b, g in zip(got, ref, gs)))
        # the same records stored as float32 + zstd, for comparison
        import zarr

        from elprop.density.store import _compressor
        p = out / f"f32_{kind}.zarr"
        shutil.rmtree(p, ignore_errors=True)
        a = zarr.create_array(str(p), shape=ref.shape, chunks=(1, n, n, n), dtype="float32", compressors=_compressor())
        a[...] = ref
        b32 = sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.name != "zarr.json")
        rec["float32_zstd_percent_of_raw"] = 100 * b32 / len(ref) / raw
        res[kind] = rec
    return res


def read_throughput(dev: Path, out: Path, kind: str, n_read: int) -> dict:
    import h5py

    from elprop.density.store import DensityStore
    st = DensityStore(dev)
    done = st.done([kind])[:n_read]
    data = np.stack([st.read(int(i), [kind])[0] for i in done]).astype(np.float16)
    n = data.shape[-1]
    d = out / "read"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name, kw in (("hdf5_gzip", dict(compression="gzip", compression_opts=4, shuffle=True)), ("hdf5_raw", {})):
        with h5py.File(d / f"{name}.h5", "w") as f:
            f.create_dataset("density", data=data, chunks=(1, n, n, n), **kw)
    (d / "npy").mkdir()
    for k, x in enumerate(data):
        np.save(d / "npy" / f"{k}.npy", x)
    order = np.random.default_rng(1).permutation(len(done))
    res = {"records": int(len(done)), "dtype": "float16", "kind": kind}

    def timed(read):
        read(int(order[0]))
        t0 = time.time()
        for k in order:
            read(int(k))
        return len(order) / (time.time() - t0)

    res["zarr_records_per_s"] = timed(lambda k: st.read(int(done[k]), [kind]))
    for name in ("hdf5_gzip", "hdf5_raw"):
        with h5py.File(d / f"{name}.h5", "r") as f:
            ds = f["density"]
            res[f"{name}_records_per_s"] = timed(lambda k: ds[k].astype(np.float32))
    res["npy_records_per_s"] = timed(lambda k: np.load(d / "npy" / f"{k}.npy").astype(np.float32))
    raw = 4 * n ** 3 * len(done)
    res["bytes_percent_of_raw_float32"] = {
        "zarr": 100 * st.stored_bytes(kind) / max(len(st.done([kind])), 1) * len(done) / raw,
        "hdf5_gzip": 100 * (d / "hdf5_gzip.h5").stat().st_size / raw,
        "hdf5_raw": 100 * (d / "hdf5_raw.h5").stat().st_size / raw,
        "npy": 100 * sum(f.stat().st_size for f in (d / "npy").iterdir()) / raw}
    return res


def dft_throughput(ds, out: Path, n_mol: int, n_qm9_level: int) -> dict:
    from elprop.density.generate import generate, kind_params
    from elprop.density.store import DensityStore
    heavy = np.array([int((ds.z[ds.offsets[i]:ds.offsets[i + 1]] > 1).sum()) for i in range(len(ds))])
    nine = np.nonzero(heavy == 9)[0]
    idx = np.sort(np.random.default_rng(2).choice(nine, n_mol, replace=False))  # typical QM9: 9 heavy atoms
    res = {"molecules": n_mol, "heavy_atoms": 9, "mean_atoms": float(ds.n_atoms[idx].mean())}
    for workers in (1, 2):
        p = out / f"dft_{workers}.zarr"
        shutil.rmtree(p, ignore_errors=True)
        st = DensityStore.create(p, ds, idx, 48, 18.0, 0.6)
        s = generate(st, "dft", kind_params("dft", 0.6, xc="pbe", basis="def2-svp", fallback_basis="sto-3g",
                                                grid_level=1),
                     workers=workers, **QUIET)
        res[f"pbe_svp_workers_{workers}_s"] = s["wall_s"]
        res[f"pbe_svp_workers_{workers}_mol_per_hour"] = s["molecules_per_hour"]
    res["dask_scaling_efficiency_1_to_2"] = res["pbe_svp_workers_1_s"] / (2 * res["pbe_svp_workers_2_s"])
    if n_qm9_level:
        p = out / "dft_qm9level.zarr"
        shutil.rmtree(p, ignore_errors=True)
        st = DensityStore.create(p, ds, idx[:n_qm9_level], 48, 18.0, 0.6)
        s = generate(st, "dft", kind_params("dft", 0.6), workers=2, **QUIET)
        per = s["wall_s"] / max(s["computed"], 1)  # wall seconds per molecule with 2 single-threaded workers
        g = st.root["dft"]
        ok = st.done(["dft"])
        tg = st.targets()
        res.update(qm9_level_molecules=n_qm9_level, qm9_level_failed=s["failed"],
                   qm9_level_wall_s_per_molecule_2_workers=per,
                   qm9_level_scf_s_per_molecule_1_core=float(np.mean(g["wall_s"][:][ok])),
                   qm9_level_all_qm9_core_hours_estimate=per * 2 * len(ds) / 3600,
                   qm9_level_vs_labels_eV={
                       "homo_mean_abs_diff": float(np.mean(np.abs(g["homo_eV"][:][ok] - tg["homo"][ok]))),
                       "lumo_mean_abs_diff": float(np.mean(np.abs(g["lumo_eV"][:][ok] - tg["lumo"][ok]))),
                       "gap_mean_abs_diff": float(np.mean(np.abs((g["lumo_eV"][:] - g["homo_eV"][:])[ok]
                                                                 - tg["gap"][ok]))),
                       "mu_mean_abs_diff_D": float(np.mean(np.abs(np.linalg.norm(g["dipole_D"][:][ok], axis=1)
                                                                  - tg["mu"][ok])))})
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev-store", required=True, help="a store from `elprop density devset`")
    ap.add_argument("--n-vox", type=int, default=500, help="molecules for the voxelisation timing")
    ap.add_argument("--n-check", type=int, default=40, help="records checked for the float16 error")
    ap.add_argument("--n-read", type=int, default=300, help="records in the read benchmark")
    ap.add_argument("--n-dft", type=int, default=8, help="molecules for the DFT scaling run")
    ap.add_argument("--n-qm9-level", type=int, default=4, help="molecules timed at B3LYP/6-31G(2df,p)")
    ap.add_argument("--skip", default="", help="comma-separated: vox,storage,read,dft")
    ap.add_argument("--out", default=str(HERE / "out" / "density_store"))
    args = ap.parse_args()
    from elprop.data.qm9 import load_qm9
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    ds = load_qm9()
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    if "vox" not in skip:
        res["voxelisation"] = voxelisation(ds, args.n_vox, out)
        print(json.dumps(res["voxelisation"], indent=1))
    if "storage" not in skip:
        res["storage"] = storage(Path(args.dev_store), out, args.n_check)
        print(json.dumps(res["storage"], indent=1))
    if "read" not in skip:
        res["read"] = {k: read_throughput(Path(args.dev_store), out, k, args.n_read) for k in ("dft", "potential")}
        print(json.dumps(res["read"], indent=1))
    if "dft" not in skip:
        res["dft"] = dft_throughput(ds, out, args.n_dft, args.n_qm9_level)
        print(json.dumps(res["dft"], indent=1))
    (out / "results.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()

"""``elprop density generate | info | devset | cube``: electron densities on grids, in a Zarr store."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from elprop.core.dataset import InputError

GEN_EPILOG = """examples:
  elprop density generate --data qm9 --kind promolecular --subset 0:1000 --out qm9.zarr
  elprop density generate --data qm9 --kind dft --subset 0:1000 --out qm9.zarr --workers 2
  elprop density generate --data qm9 --kind dft --subset random:50 --xc pbe --basis def2-svp --out pbe.zarr
  elprop density generate --data qm9 --kind dft --subset 0:130831 --out qm9.zarr --scheduler tcp://host:8786

Rerun the same command after a kill: finished records are kept and skipped. With --scf-archive DIR, every
converged SCF is also kept compactly in DIR (small enough to commit), and any later store that asks for the
same molecules at the same settings is rebuilt from DIR in seconds per molecule instead of minutes.
All kinds of one store share its molecules and grids, so a 3D CNN can stack them as channels. On a SLURM machine, start workers with
dask-jobqueue and pass the scheduler address (see docs/densities.md).
"""


def _grid_args(p):
    p.add_argument("--shape", type=int, help="voxels per axis (default: 48, or the existing store's)")
    p.add_argument("--box", type=float,
                   help="box edge in Å (default: 18, which fits every QM9 molecule in every orientation)")
    p.add_argument("--blur", type=float,
                   help="Gaussian smoothing σ in voxels; 0 stores point values at voxel centres (default: 0.6)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored precision")


def _dft_args(p, fallback: bool = True):
    p.add_argument("--xc", default="b3lyp", help="functional (default: b3lyp, the QM9 level)")
    p.add_argument("--basis", default="6-31g(2df,p)", help="basis set (default: 6-31g(2df,p), the QM9 level)")
    p.add_argument("--no-density-fit", action="store_true", help="exact Coulomb/exchange instead of density fitting")
    if fallback:  # labels never fall back to another basis: that would be another level of theory
        p.add_argument("--fallback-basis", default="6-31g*", help="basis of the last SCF fallback (default: 6-31g*)")
    p.add_argument("--grid-level", type=int, default=3, help="PySCF XC integration grid level 0-9 (default: 3)")
    p.add_argument("--charge", type=int, default=0, help="molecular charge of every molecule (default: 0)")
    p.add_argument("--spin", type=int, help="2S, unpaired electrons, of every molecule (UKS when > 0; default: closed "
                                            "shell, and an odd electron count is an error)")


def _run_args(p):
    p.add_argument("--workers", type=int, default=2, help="Dask LocalCluster worker processes (default: 2; "
                                                          "0 runs in this process without Dask)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="PySCF threads per worker (default: 1)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (e.g. tcp://host:8786)")
    p.add_argument("--retry-failed", action="store_true", help="recompute records that failed before")
    p.add_argument("--scf-archive", metavar="DIR",
                   help="kind dft: also keep every converged SCF (occupied orbitals, about 21 kB per QM9 "
                        "molecule) in DIR, and take molecules DIR already holds at the same settings from there "
                        "instead of running their SCF again (a fresh store, another grid, another machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(sub):
    p = sub.add_parser("density", help="electron densities on grids (promolecular, potential, DFT)",
                       description="Compute electron densities and potentials of molecules on voxel grids and "
                                   "keep them in a Zarr store.",
                       epilog="examples:\n  elprop density generate --data qm9 --kind dft --subset 0:100 --out q.zarr\n"
                              "  elprop density info q.zarr\n  elprop density devset --out dev.zarr\n"
                              "  elprop density cube q.zarr 0 --kind dft -o mol0.cube\n\n"
                              "See docs/densities.md for grids, units, the store layout and SLURM.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="density_command", metavar="subcommand")
    dsub.required = True

    g = dsub.add_parser("generate", help="compute one kind of density for a subset of molecules",
                        description="Compute one kind of field on molecule-centred grids and add it to a store. "
                                    "Kinds: promolecular (sum of free-atom densities), potential (softened "
                                    "nuclear Coulomb potential or Gaussian nuclear charges), dft (PySCF RKS "
                                    "density; also stores energy, HOMO, LUMO, dipole and the density matrix).",
                        epilog=GEN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("--data", default="qm9", help="'qm9' (default), a QM9 tarball/folder, or an xyz/extxyz/sdf file")
    g.add_argument("--kind", required=True, choices=["promolecular", "potential", "dft"])
    g.add_argument("--subset", help="molecules: A:B, i,j,k, @file, random:N[:seed] or stratified:N[:seed] "
                                    "(default: all; must match the store's if it exists)")
    g.add_argument("--out", required=True, help="the store (a .zarr directory; created if missing)")
    _grid_args(g)
    _dft_args(g)
    g.add_argument("--form", default="coulomb", choices=["coulomb", "gaussian"], help="potential form")
    g.add_argument("--softening", type=float, default=0.3, help="Coulomb softening length a, Å (default: 0.3)")
    g.add_argument("--width", type=float, default=0.3, help="Gaussian nuclear charge width σ, Å (default: 0.3)")
    _run_args(g)
    g.set_defaults(func=run_generate)

    i = dsub.add_parser("info", help="counts, failures, level of theory and storage of a store",
                        description="Report a density store: records per kind, failures, levels of theory, "
                                    "bytes per record, and for DFT how HOMO/LUMO/gap/μ compare with the "
                                    "source labels.",
                        epilog="examples:\n  elprop density info dev.zarr",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("store")
    i.set_defaults(func=run_info)

    d = dsub.add_parser("devset", help="build the development store (promolecular, potential and DFT)",
                        description="Build a development store for the volumetric models: a seeded subset of "
                                    "QM9 stratified by heavy-atom count, with all three kinds on shared grids. "
                                    "The DFT defaults to PBE/def2-SVP with density fitting and a coarse XC grid "
                                    "(level 1) so that 200 molecules finish in well under an hour on 2 cores.",
                        epilog="examples:\n  elprop density devset --out dev.zarr --n 200\n"
                               "  elprop density devset --out dev1k.zarr --n 1000 --scf-archive "
                               "benchmarks/volumetric/scf-archive",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", required=True)
    d.add_argument("--n", type=int, default=200, help="molecules (default: 200)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--data", default="qm9")
    _grid_args(d)
    d.set_defaults(xc="pbe", basis="def2-svp")
    d.add_argument("--xc", default="pbe", help="functional (default: pbe)")
    d.add_argument("--basis", default="def2-svp", help="basis (default: def2-svp)")
    d.add_argument("--fallback-basis", default="sto-3g", help="basis of the last SCF fallback (default: sto-3g)")
    d.add_argument("--no-density-fit", action="store_true")
    d.add_argument("--grid-level", type=int, default=1, help="PySCF XC grid level (default: 1; the energy "
                                                             "differs from level 3 by about 0.1 mHa per atom)")
    _run_args(d)
    d.set_defaults(func=run_devset)

    c = dsub.add_parser("cube", help="write one record of a store as a Gaussian cube file",
                        description="Write record INDEX of a kind as a Gaussian cube file (e/bohr³), which VMD, "
                                    "Avogadro and ASE open.",
                        epilog="examples:\n  elprop density cube dev.zarr 0 --kind dft -o mol0.cube",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("store")
    c.add_argument("index", type=int, help="record number (0-based)")
    c.add_argument("--kind", default="dft")
    c.add_argument("-o", "--output", required=True)
    c.set_defaults(func=run_cube)


def _load_data(path):
    """The molecules to voxelise, through the one data source of every command (``load_data``)."""
    from elprop.data.load import DataSpec, load_data
    return load_data(DataSpec(data=path))


def _open_or_create(out, ds, idx, args):
    from elprop.density.store import DensityStore
    given = (args.shape, args.box, args.blur)
    if (args.shape is not None and args.shape < 4) or (args.box is not None and args.box <= 0) \
            or (args.blur is not None and args.blur < 0):
        raise InputError("--shape must be at least 4, --box positive and --blur non-negative")
    if Path(out).exists():
        st = DensityStore(out, mode="r+")
        gp = st.grid_params
        have = (int(gp["shape"]), float(gp["box_A"]), float(gp["blur_voxels"]))
        if any(g is not None and g != h for g, h in zip(given, have)):
            raise InputError(f"{out}: the store's grid is {gp['shape']}³ over {gp['box_A']} Å with blur "
                             f"{gp['blur_voxels']}; rerun with those settings or use a new store")
        if args.subset is not None and not np.array_equal(st.source_index(), idx):
            raise InputError(f"{out}: the store holds another subset of molecules; drop --subset or use a new store")
        return st
    from elprop.density.grid import DEFAULT_BOX, DEFAULT_SHAPE
    return DensityStore.create(out, ds, idx, args.shape or DEFAULT_SHAPE, args.box or DEFAULT_BOX,
                               0.6 if args.blur is None else args.blur)


def _check_electrons(st, charge, spin):
    """Every record's electron count fits --charge/--spin, before any SCF runs (one line naming the first that
    does not)."""
    from elprop.density.dft import DFTSettings
    settings = DFTSettings(charge=charge, spin=spin)
    na, z = st.root["n_atoms"][:], st.root["z"][:]
    smiles = st.root["smiles"]
    for i in range(len(na)):
        try:
            settings.spin_of(z[i, :na[i]])
        except ValueError as e:
            raise InputError(f"{st.path}: record {i} ({smiles[i]}): {e}") from None


def _generate(st, kind, args, **kw):
    from elprop.density.generate import generate, kind_params
    blur = float(st.grid_params["blur_voxels"])
    if kind == "dft":
        charge, spin = getattr(args, "charge", 0), getattr(args, "spin", None)
        kw.update(charge=charge, spin=spin)
        _check_electrons(st, charge, spin)
    params = kind_params(kind, blur, xc=args.xc, basis=args.basis, density_fit=not args.no_density_fit,
                         fallback_basis=args.fallback_basis, grid_level=args.grid_level, **kw)
    if args.workers < 0 or args.threads_per_worker < 1:
        raise InputError("--workers must be >= 0 and --threads-per-worker >= 1")
    return generate(st, kind, params, dtype=args.dtype, workers=args.workers, scheduler=args.scheduler,
                    threads_per_worker=args.threads_per_worker, retry_failed=args.retry_failed,
                    progress=not args.no_progress, scf_archive=args.scf_archive)


def run_generate(args) -> int:
    from elprop.density.generate import parse_subset
    ds = _load_data(args.data)
    idx = parse_subset(args.subset, ds)
    st = _open_or_create(args.out, ds, idx, args)
    extra = {"form": args.form, "softening": args.softening, "width": args.width} if args.kind == "potential" else {}
    _generate(st, args.kind, args, **extra)
    status = st.status(args.kind)
    print(f"store: {args.out} ({args.kind}: {int((status == 1).sum())}/{len(st)} done, "
          f"{int((status == 2).sum())} failed)")
    if (status == 2).any():
        print("failed records are listed by `elprop density info`; `--retry-failed` computes them again")
    return 0


def run_devset(args) -> int:
    import time

    from elprop.density.generate import stratified_subset
    args.subset = f"stratified:{args.n}:{args.seed}"  # a rerun must ask for the same molecules
    ds = _load_data(args.data)
    idx = stratified_subset(ds, args.n, args.seed)
    st = _open_or_create(args.out, ds, idx, args)
    t0 = time.time()
    out = []
    for kind in ("promolecular", "potential", "dft"):
        out.append(_generate(st, kind, args))
    print(f"dev store {args.out}: {len(st)} molecules, total {time.time() - t0:.0f} s")
    for s in out:
        print(f"  {s['kind']:<13} computed {s['computed']}, failed {s['failed']}, {s['wall_s']:.0f} s")
    return 0


def run_info(args) -> int:
    from elprop.density.store import DONE, FAILED, DensityStore
    st = DensityStore(args.store)
    gp = st.grid_params
    n = int(gp["shape"])
    print(f"store:   {args.store}")
    print(f"source:  {st.attrs.get('source', '')}, {len(st)} molecules")
    print(f"grid:    {n}³ voxels, {gp['box_A']} Å box, spacing {gp['spacing_A']:.3f} Å, "
          f"blur σ = {gp['blur_voxels']} voxels")
    raw = 4 * n ** 3
    for kind in st.kinds:
        a = st.kind_attrs(kind)
        s = st.status(kind)
        n_done, n_fail = int((s == DONE).sum()), int((s == FAILED).sum())
        stored = st.stored_bytes(kind)
        per = stored / max(n_done, 1)
        print(f"\n[{kind}] {a.get('level_of_theory', '')}")
        print(f"  records: {n_done} done, {n_fail} failed, {len(s) - n_done - n_fail} pending; stored as {a['dtype']}")
        if n_done:
            print(f"  storage: {per / 1024:.1f} KiB per record, {100 * per / raw:.1f} % of raw float32 "
                  f"({raw / 1024:.0f} KiB)")
        for f in st.failures(kind)[:10]:
            last = f["attempts"][-1] if f["attempts"] else {}
            print(f"  failed record {f['record']}: {f.get('error') or last.get('error', 'not converged')} "
                  f"({len(f['attempts'])} attempts)")
        if kind == "dft" and n_done:
            _dft_report(st)
    return 0


def _dft_report(st):
    from elprop.density.store import DONE
    g = st.root["dft"]
    ok = np.nonzero(st.status("dft") == DONE)[0]
    attempt = g["attempt"][:][ok]
    wall = g["wall_s"][:][ok]
    names = [a["name"] for a in g.attrs["attempts"]]
    used = ", ".join(f"{names[k]} {int((attempt == k).sum())}" for k in range(len(names)) if (attempt == k).any())
    print(f"  SCF: converged by attempt: {used}; SCF wall time median {np.median(wall):.1f} s, "
          f"total {wall.sum() / 3600:.2f} CPU-process hours")
    n_el = np.array([int(st.atoms(i)[0].sum()) for i in ok])
    e = g["electrons"][:][ok]
    rel = np.abs(e - n_el) / n_el
    print(f"  electrons on the grid: mean |error| {100 * rel.mean():.3f} %, max {100 * rel.max():.3f} %")
    tg = st.targets()
    homo, lumo = g["homo_eV"][:][ok], g["lumo_eV"][:][ok]
    comp = {"HOMO": ("homo", homo), "LUMO": ("lumo", lumo), "gap": ("gap", lumo - homo),
            "μ": ("mu", np.linalg.norm(g["dipole_D"][:][ok], axis=1))}
    rows = [(name, t, calc) for name, (t, calc) in comp.items() if t in tg]
    if rows:
        print(f"  vs the source labels ({len(ok)} molecules): computed - label")
        print(f"    {'property':<8} {'unit':<5} {'mean offset':>12} {'MAE':>9} {'MAE after offset':>17}")
        for name, t, calc in rows:
            d = calc - tg[t][ok]
            d = d[np.isfinite(d)]
            unit = "D" if t == "mu" else "eV"
            print(f"    {name:<8} {unit:<5} {d.mean():12.4f} {np.abs(d).mean():9.4f} "
                  f"{np.abs(d - d.mean()).mean():17.4f}")


def run_cube(args) -> int:
    from elprop.density.cube import write_cube
    from elprop.density.store import DONE, DensityStore
    st = DensityStore(args.store)
    if args.kind not in st.kinds:
        raise InputError(f"{args.store}: no {args.kind!r} densities; it has {', '.join(st.kinds) or 'none'}")
    if not 0 <= args.index < len(st):
        raise InputError(f"record {args.index} is outside the store's {len(st)} records")
    if st.status(args.kind)[args.index] != DONE:
        raise InputError(f"record {args.index} of {args.kind!r} is not computed")
    z, pos = st.atoms(args.index)
    vals = st.read(args.index, [args.kind])[0]
    smi = str(st.root["smiles"][args.index])
    write_cube(args.output, vals, st.grid(args.index), z, pos, comment=f"{args.kind} {smi}",
               density=args.kind != "potential")
    print(f"wrote {args.output}")
    return 0

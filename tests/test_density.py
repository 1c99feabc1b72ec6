"""Grids, promolecular/potential/DFT fields, the Zarr store, generation (resume after kill, SCF fallbacks)."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from elprop.density.grid import QM9_MAX_RADIUS, Grid, integrate, molecule_grid, random_rotation

LEVEL = ("pbe", "def2-svp")  # cheap level for the DFT tests


def _mol(qm9, i):
    m = qm9[i]
    return m.z.astype(int), m.pos.astype(float)


# --- grids -------------------------------------------------------------------------------------------------------
def test_grid_geometry_rotation_translation():
    rng = np.random.default_rng(0)
    g = Grid(np.array([1.0, -2.0, 0.5]), 8, 0.5)
    pts = g.points()
    assert pts.shape == (512, 3)
    assert np.allclose(pts.mean(0), g.center) and np.allclose(pts[0], g.origin)
    assert np.isclose(pts[1, 2] - pts[0, 2], 0.5)  # z fastest
    rot = random_rotation(rng)
    assert np.allclose(rot @ rot.T, np.eye(3)) and np.isclose(np.linalg.det(rot), 1.0)
    r = g.rotated(rot)
    # rotation about the centre keeps distances to the centre and maps points by rot
    assert np.allclose(np.linalg.norm(r.points() - g.center, axis=1), np.linalg.norm(pts - g.center, axis=1))
    assert np.allclose(r.points() - g.center, (pts - g.center) @ rot.T)
    assert np.allclose(r.rotated(rot.T).points(), pts)
    t = g.translated([0.1, 0.2, 0.3])
    assert np.allclose(t.points() - pts, [0.1, 0.2, 0.3])


def test_default_box_fits_every_qm9_molecule_in_every_orientation(qm9):
    r = np.array([np.linalg.norm(p - p.mean(0), axis=1).max()
                  for p in (qm9.pos[qm9.offsets[i]:qm9.offsets[i + 1]] for i in range(len(qm9)))])
    assert np.isclose(r.max(), QM9_MAX_RADIUS, atol=0.01)
    worst = qm9[int(r.argmax())]
    rng = np.random.default_rng(1)
    for _ in range(50):
        g = molecule_grid(worst.pos, rotation=random_rotation(rng))
        assert g.fits(worst.pos, margin=1.5)


def test_random_rotations_are_uniform_on_so3():
    rng = np.random.default_rng(2)
    v = np.array([random_rotation(rng) @ [0, 0, 1.0] for _ in range(4000)])
    assert np.abs(v.mean(0)).max() < 0.05  # rotated unit vectors cover the sphere evenly
    assert np.allclose(np.cov(v.T), np.eye(3) / 3, atol=0.03)


# --- promolecular and potential ------------------------------------------------------------------------------------
def test_radial_tables_hold_the_electron_count():
    from elprop.density.promolecular import atom_tables, radial_density
    from elprop.density.atoms import radial_grid
    r = radial_grid()
    for z in (1, 6, 7, 8, 9):
        for sigma in (0.0, 0.225):
            n = np.trapezoid(4 * np.pi * r ** 2 * radial_density(z, r, sigma=sigma), r)
            assert abs(n - z) < 2e-3 * z, (z, sigma, n)
    meta = atom_tables()[3]
    assert meta["xc"] == "b3lyp" and meta["basis"] == "6-31g(2df,p)"


def test_promolecular_integrates_to_electron_count_in_any_orientation(qm9):
    from elprop.density.promolecular import promolecular_density
    rng = np.random.default_rng(3)
    for i in (1, 100, 5000, 114701):
        z, pos = _mol(qm9, i)
        for n in (32, 48):
            g = molecule_grid(pos, n, 18.0, rotation=random_rotation(rng), shift=rng.uniform(-0.5, 0.5, 3) * 18 / n)
            rho = promolecular_density(z, pos, g)
            assert rho.dtype == np.float32 and rho.shape == (n, n, n) and rho.min() >= 0
            assert abs(integrate(rho, g) - z.sum()) < 1e-3 * z.sum(), (i, n)


def test_promolecular_fast_path_matches_a_direct_sum(qm9):
    """The separable sub-box evaluation against a plain sum over all atoms and all points."""
    from elprop.density.promolecular import promolecular_density, radial_density
    z, pos = _mol(qm9, 777)
    g = molecule_grid(pos, 24, 12.0, rotation=random_rotation(np.random.default_rng(4)))
    pts = g.points()
    direct = sum(radial_density(a, np.linalg.norm(pts - p, axis=1)) for a, p in zip(z, pos)).reshape(g.shape)
    fast = promolecular_density(z, pos, g, blur=0.0)
    assert np.allclose(fast, direct, rtol=1e-4, atol=1e-6)


def test_potential_fields(qm9):
    from elprop.density.potential import potential_field
    z, pos = _mol(qm9, 50)
    g = molecule_grid(pos, 40, 16.0)
    q = potential_field(z, pos, g, "gaussian", width=0.4)
    assert abs(integrate(q, g) - z.sum()) < 1e-3 * z.sum()
    v = potential_field(z, pos, g, "coulomb", softening=0.3)
    p = g.points()[1234]
    expected = sum(a * 0.52917721092 / np.sqrt(np.sum((p - r) ** 2) + 0.09) for a, r in zip(z, pos))
    assert np.isclose(v.reshape(-1)[1234], expected, rtol=1e-5)


# --- DFT -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def water_scf(qm9):
    from elprop.density.dft import DFTSettings, run_scf
    z, pos = _mol(qm9, 2)  # H2O
    s = DFTSettings(xc=LEVEL[0], basis=LEVEL[1])
    return z, pos, s, run_scf(z, pos, s)


def test_dft_density_matches_an_independent_pyscf_evaluation(water_scf):
    """Our grid evaluation (from the density matrix) against 2 Σ_occ |ψ_i|² from a separate PySCF run's orbitals."""
    from pyscf import dft, gto

    from elprop.density.dft import dft_density
    z, pos, s, res = water_scf
    assert res["ok"] and res["attempt"] == 0
    g = molecule_grid(pos, 20, 8.0)
    ours = dft_density(z, pos, g, res["basis"], res["dm"], blur=0.0, level=LEVEL)
    mol = gto.M(atom=[[int(a), tuple(p)] for a, p in zip(z, pos)], basis=LEVEL[1], unit="Angstrom", verbose=0)
    mf = dft.RKS(mol).density_fit()
    mf.xc = LEVEL[0]
    mf.kernel()
    pick = np.random.default_rng(5).choice(g.n ** 3, 12, replace=False)
    pts_bohr = g.points()[pick] / 0.52917721092
    psi = mol.eval_ao("GTOval", pts_bohr) @ mf.mo_coeff[:, mf.mo_occ > 0]
    ref = 2 * (psi ** 2).sum(1) / 0.52917721092 ** 3
    assert np.allclose(ours.reshape(-1)[pick], ref, rtol=1e-4, atol=1e-6)


def test_dft_density_integrates_within_one_percent_at_0p2_angstrom(water_scf):
    from elprop.density.dft import dft_density
    z, pos, s, res = water_scf
    rng = np.random.default_rng(6)
    for _ in range(2):
        g = molecule_grid(pos, 60, 12.0, rotation=random_rotation(rng), shift=rng.uniform(-0.1, 0.1, 3))
        assert np.isclose(g.spacing, 0.2)
        rho = dft_density(z, pos, g, res["basis"], res["dm"], blur=0.6, level=LEVEL)
        assert abs(integrate(rho, g) - 10) < 0.01 * 10
    # dipole from the smoothed grid density plus nuclei matches PySCF's analytic dipole
    q = np.asarray(z, float)
    pts = g.points()
    mu_e = -(rho.reshape(-1, 1).astype(np.float64) * pts).sum(0) * g.voxel_volume
    mu = (mu_e + (q[:, None] * pos).sum(0)) / 0.20819434  # e·Å -> Debye
    assert np.allclose(mu, res["dipole_D"], atol=0.05)


def test_scf_fallbacks_are_recorded_and_failures_are_not_dropped(water_scf):
    from elprop.density.dft import run_scf
    z, pos, s, _ = water_scf
    attempts = [{"name": "diis", "max_cycle": 1}, {"name": "level_shift", "level_shift": 0.5, "max_cycle": 1},
                {"name": "damping", "damp": 0.3, "max_cycle": 100}]
    res = run_scf(z, pos, s, attempts=attempts)
    assert res["ok"] and res["attempt"] == 2
    assert [e["name"] for e in res["log"]] == ["diis", "level_shift", "damping"]
    assert [e["converged"] for e in res["log"]] == [False, False, True]
    bad = run_scf(z, pos, s, attempts=attempts[:2])
    assert not bad["ok"] and bad["attempt"] == -1 and len(bad["log"]) == 2
    odd = run_scf(np.array([1]), np.zeros((1, 3)), s)
    assert not odd["ok"] and "odd electron" in odd["log"][0]["error"]


# --- store and generation --------------------------------------------------------------------------------------------
def _store(tmp_path, qm9, idx, n=24, box=12.0, name="s.zarr"):
    from elprop.density.store import DensityStore
    return DensityStore.create(tmp_path / name, qm9, np.asarray(idx), n, box, 0.6)


def test_store_roundtrip_metadata_precision_and_torch_dataset(tmp_path, qm9):
    import torch

    from elprop.density.generate import generate, kind_params
    from elprop.density.promolecular import promolecular_density
    from elprop.density.store import DONE, DensityStore
    idx = [3, 10, 200, 3000]
    for dtype in ("float32", "float16"):
        st = _store(tmp_path, qm9, idx, name=f"{dtype}.zarr")
        generate(st, "promolecular", kind_params("promolecular", 0.6), dtype=dtype, workers=0, progress=False,
                 log=lambda *a: None)
        st = DensityStore(tmp_path / f"{dtype}.zarr")
        assert list(st.source_index()) == idx and (st.status("promolecular") == DONE).all()
        for k, i in enumerate(idx):
            z, pos = st.atoms(k)
            assert np.array_equal(z, qm9[i].z) and np.allclose(pos, qm9[i].pos)
            g = st.grid(k)
            assert np.allclose(st.root["origin"][k], g.origin) and np.isclose(st.root["spacing"][k], 0.5)
            ref = promolecular_density(z, pos, g)
            got = st.read(k, ["promolecular"])[0]
            assert np.array_equal(got, st.root["promolecular"]["density"][k].astype(np.float32))  # fast path
            if dtype == "float32":
                assert np.array_equal(got, ref)
            else:
                assert np.allclose(got, ref, rtol=1e-3, atol=1e-4)
    ds = st.torch_dataset(["promolecular"], targets=["gap", "homo"])
    x, y = ds[1]
    assert x.shape == (1, 24, 24, 24) and x.dtype == torch.float32
    assert np.allclose(y.numpy(), [qm9.target("gap")[10], qm9.target("homo")[10]], rtol=1e-6)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)))
    assert batch[0].shape == (4, 1, 24, 24, 24)


def test_fast_chunk_writes_are_the_bytes_zarr_writes(tmp_path, qm9):
    """The store writes one-record chunk files itself (a fifth of Zarr's per-call cost); they must be the very
    bytes Zarr writes, so any Zarr reader (and the slow path) reads them."""
    from elprop.density.generate import generate, kind_params
    from elprop.density.store import DensityStore
    idx = [5, 6, 7]
    st = _store(tmp_path, qm9, idx, name="fast.zarr")
    generate(st, "promolecular", kind_params("promolecular", 0.6), dtype="float16", workers=0, progress=False,
             log=lambda *a: None)
    st = DensityStore(tmp_path / "fast.zarr", mode="a")
    assert st._fast_layout("promolecular")
    chunk = tmp_path / "fast.zarr" / "promolecular" / "density" / "c" / "1" / "0" / "0" / "0"
    fast_bytes = chunk.read_bytes()
    grid = st.read(1, ["promolecular"])[0]
    st.root["promolecular"]["density"][1] = grid  # the same grid through Zarr's own write path
    assert chunk.read_bytes() == fast_bytes
    assert not list(chunk.parent.glob("*.part"))


def test_generate_through_dask_local_cluster_matches_in_process(tmp_path, qm9):
    from elprop.density.generate import generate, kind_params
    idx = np.arange(40, 80)
    a, b = _store(tmp_path, qm9, idx, name="a.zarr"), _store(tmp_path, qm9, idx, name="b.zarr")
    p = kind_params("potential", 0.6)
    generate(a, "potential", p, workers=0, progress=False, log=lambda *x: None)
    s = generate(b, "potential", p, workers=2, progress=False, log=lambda *x: None)
    assert s["computed"] == 40 and s["failed"] == 0
    for k in (0, 17, 39):
        assert np.array_equal(a.read(k, ["potential"]), b.read(k, ["potential"]))
    # an existing cluster, by scheduler address (as with dask-jobqueue on SLURM)
    from dask.distributed import LocalCluster
    c = _store(tmp_path, qm9, idx, name="c.zarr")
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        s = generate(c, "potential", p, scheduler=cluster.scheduler_address, progress=False, log=lambda *x: None)
    assert s["computed"] == 40
    assert np.array_equal(a.read(39, ["potential"]), c.read(39, ["potential"]))


def _gen_cmd(out, kind, subset, *extra):
    return [sys.executable, "-m", "elprop.cli.main", "density", "generate", "--kind", kind, "--subset", subset,
            "--out", str(out), "--shape", "24", "--box", "12", "--workers", "0", "--no-progress", *extra]


def test_kill_between_density_and_status_leaves_no_record_counted_done(tmp_path):
    from elprop.density.store import DONE, PENDING, DensityStore
    out = tmp_path / "k.zarr"
    env = dict(os.environ, ELPROP_KILL_AT_RECORD="37")
    res = subprocess.run(_gen_cmd(out, "promolecular", "0:100"), env=env, capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL
    st = DensityStore(out)
    s = st.status("promolecular")
    assert s[37] == PENDING and (s[:32] == DONE).all()  # batches of 16: records 32..47 were in the killed batch
    assert st.read(37, ["promolecular"]).any()  # its density was written, but it does not count
    res = subprocess.run(_gen_cmd(out, "promolecular", "0:100"), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "100 records, 32 done" in res.stdout
    clean = tmp_path / "c.zarr"
    subprocess.run(_gen_cmd(clean, "promolecular", "0:100"), capture_output=True, text=True, check=True)
    a, b = DensityStore(out), DensityStore(clean)
    assert (a.status("promolecular") == DONE).all()
    for k in (0, 37, 99):
        assert np.array_equal(a.read(k, ["promolecular"]), b.read(k, ["promolecular"]))


def test_dft_generation_resumes_after_sigkill(tmp_path):
    """A real kill -9 in the middle of a DFT run; the rerun recomputes only what was not finished."""
    from elprop.density.store import DONE, DensityStore
    out = tmp_path / "d.zarr"
    cmd = _gen_cmd(out, "dft", "0:8", "--xc", LEVEL[0], "--basis", LEVEL[1])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    n_done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            n_done = int((DensityStore(out).status("dft") == DONE).sum())
        except Exception:
            continue
        if n_done >= 2:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    st = DensityStore(out)
    done_before = np.nonzero(st.status("dft") == DONE)[0]
    assert 2 <= len(done_before) < 8
    energies_before = st.root["dft"]["energy_eV"][:][done_before]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"8 records, {len(done_before)} done" in res.stdout
    st = DensityStore(out)
    assert (st.status("dft") == DONE).all()
    assert np.array_equal(st.root["dft"]["energy_eV"][:][done_before], energies_before)  # kept, not recomputed
    # every record is complete: its stored density matrix reproduces its stored grid
    from elprop.density.dft import dft_density
    for k in range(8):
        dm, basis = st.density_matrix(k)
        z, pos = st.atoms(k)
        again = dft_density(z, pos, st.grid(k), basis, dm, blur=0.6, level=LEVEL)
        assert np.allclose(st.read(k, ["dft"])[0], again, rtol=2e-3, atol=1e-4)
        assert abs(st.root["dft"]["electrons"][k] - z.sum()) < 0.03 * z.sum()  # coarse 0.5 Å test grid


def test_failed_scf_is_recorded_reported_and_retried(tmp_path, qm9, cli):
    from elprop.density.generate import generate, kind_params
    from elprop.density.store import FAILED, DensityStore
    st = _store(tmp_path, qm9, [1, 2], name="f.zarr")
    failing = [{"name": "diis", "max_cycle": 1}, {"name": "level_shift", "level_shift": 0.5, "max_cycle": 1}]
    p = kind_params("dft", 0.6, xc=LEVEL[0], basis=LEVEL[1], attempts=failing)
    s = generate(st, "dft", p, workers=0, progress=False, log=lambda *a: None)
    assert s["failed"] == 2 and s["computed"] == 0
    st = DensityStore(tmp_path / "f.zarr", mode="r+")
    assert (st.status("dft") == FAILED).all()
    assert [f["record"] for f in st.failures("dft")] == [0, 1]
    assert not st.read(1, ["dft"]).any()  # a record never written reads as the fill value
    res = cli("density", "info", tmp_path / "f.zarr")
    assert res.returncode == 0 and "0 done, 2 failed" in res.stdout and "failed record 0" in res.stdout
    s = generate(st, "dft", p, workers=0, progress=False, log=lambda *a: None)  # a rerun skips failures
    assert s["computed"] == s["failed"] == 0
    with pytest.raises(Exception, match="other settings"):
        generate(st, "dft", kind_params("dft", 0.6, xc=LEVEL[0], basis=LEVEL[1]), workers=0, progress=False)


def test_density_cli_info_cube_and_bad_input(tmp_path, cli):
    from elprop.density.cube import read_cube
    out = tmp_path / "c.zarr"
    res = cli(*_gen_cmd(out, "dft", "2,3", "--xc", LEVEL[0], "--basis", LEVEL[1])[3:])
    assert res.returncode == 0, res.stderr
    res = cli("density", "info", out)
    assert res.returncode == 0
    for s in ("2 done, 0 failed", "RKS PBE/def2-svp", "HOMO", "mean offset", "% of raw float32"):
        assert s in res.stdout, s
    res = cli("density", "cube", out, "0", "--kind", "dft", "-o", tmp_path / "w.cube")
    assert res.returncode == 0, res.stderr
    vals, origin, axes, z, pos = read_cube(tmp_path / "w.cube")
    assert vals.shape == (24, 24, 24) and list(z) == [8, 1, 1]
    from elprop.density.store import DensityStore
    st = DensityStore(out)
    n_cube = vals.sum() * abs(np.linalg.det(axes / 0.52917721092))  # e/bohr³ × bohr³
    assert np.isclose(n_cube, integrate(st.read(0, ["dft"])[0], st.grid(0)), rtol=1e-4)
    assert np.allclose(origin, st.grid(0).origin, atol=1e-5) and np.allclose(pos, st.atoms(0)[1], atol=1e-5)
    for args, msg in ((["density", "info", tmp_path], "not a density store"),
                      (["density", "generate", "--kind", "promolecular", "--subset", "x:y", "--out", tmp_path / "e"],
                       "bad --subset"),
                      (["density", "generate", "--kind", "promolecular", "--subset", "0:5", "--out", out],
                       "another subset"),
                      (["density", "generate", "--kind", "promolecular", "--subset", "2,3", "--out", out,
                        "--shape", "32"], "grid is 24")):
        res = cli(*args)
        assert res.returncode == 2 and msg in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)


def test_stratified_subset_is_seeded_and_covers_every_size(qm9):
    from elprop.density.generate import parse_subset
    a = parse_subset("stratified:300:0", qm9)
    assert len(a) == 300 and np.array_equal(a, parse_subset("stratified:300:0", qm9))
    heavy = {int((qm9[int(i)].z > 1).sum()) for i in a}
    assert heavy == set(range(1, 10))
    assert not np.array_equal(a, parse_subset("stratified:300:1", qm9))


def test_scf_archive_rebuilds_a_fresh_store_without_any_scf(tmp_path, qm9, monkeypatch):
    """Converged SCFs go into the archive; a new store (another grid) of the same molecules takes them from there
    and gets the same energies and, on the same grid, the same densities, with no SCF run at all."""
    import elprop.density.dft as dft_mod
    from elprop.density.generate import generate, kind_params
    from elprop.density.scf_archive import SCFArchive
    arch = tmp_path / "scf"
    p = kind_params("dft", 0.6, xc=LEVEL[0], basis=LEVEL[1])
    quiet = dict(workers=0, progress=False, log=lambda *a: None, scf_archive=arch)
    first = _store(tmp_path, qm9, [1, 2, 5], name="a.zarr")
    s = generate(first, "dft", p, **quiet)
    assert s["computed"] == 3 and s["restored"] == 0
    a = SCFArchive(arch, p["settings"])
    assert len(a) == 3 and (a.dir / "settings.json").is_file()
    assert not list(a.dir.glob(".*tmp*"))  # nothing half-written left behind

    def no_scf(*args, **kw):
        raise AssertionError("an archived molecule ran its SCF again")
    monkeypatch.setattr(dft_mod, "run_scf", no_scf)
    same = _store(tmp_path, qm9, [5, 1, 2], name="b.zarr")  # same grid, other record order
    s = generate(same, "dft", p, **quiet)
    assert s["computed"] == 3 and s["restored"] == 3
    g1, g2 = first.root["dft"], same.root["dft"]
    for i, j in [(0, 1), (1, 2), (2, 0)]:
        assert g2["energy_eV"][j] == g1["energy_eV"][i] and g2["homo_eV"][j] == g1["homo_eV"][i]
        assert np.allclose(same.read(j, ["dft"]), first.read(i, ["dft"]), rtol=2e-3, atol=1e-4)
        dm1, b1 = first.density_matrix(i)
        dm2, b2 = same.density_matrix(j)
        assert b1 == b2 and np.abs(dm1 - dm2).max() < 1e-5
    other = _store(tmp_path, qm9, [1, 2, 5], n=16, box=10.0, name="c.zarr")  # another grid: still no SCF
    assert generate(other, "dft", p, **quiet)["restored"] == 3
    for k in range(3):
        z, _ = other.atoms(k)
        assert abs(other.root["dft"]["electrons"][k] - z.sum()) < 0.05 * z.sum()
    # another level of theory is another archive: nothing restored, so the SCF would run
    p2 = kind_params("dft", 0.6, xc="b3lyp", basis=LEVEL[1])
    assert len(SCFArchive(arch, p2["settings"])) == 0

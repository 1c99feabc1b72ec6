"""Generate density records in parallel with Dask, resumably.

The driver (this process) owns the store: it submits work for the pending records to a Dask cluster (a
``LocalCluster`` by default, or an existing scheduler), keeps a bounded number of tasks in flight, and writes
each result as it arrives. Workers only compute, so no two processes ever write the same chunk. A rerun skips
records whose status is done (and, unless ``retry_failed``, failed); a kill loses at most the records in
flight.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict

import numpy as np

from elprop.core.dataset import InputError
from elprop.density.store import DONE, FAILED, PENDING, DensityStore


# --- work done on the workers --------------------------------------------------------------------------------
def compute_batch(kind: str, params: dict, items: list[tuple], threads: int = 1) -> list[tuple[int, dict]]:
    """Compute records ``items`` = [(record, z, pos, center, n, spacing[, archived])] of ``kind``; runs on a Dask
    worker (or in process). ``archived``: an SCF result from an ``SCFArchive``, used instead of running the SCF.
    Returns [(record, result dict)]; a failure is a result with ok=False and a message."""
    from elprop.density.grid import Grid
    out = []
    for rec, z, pos, center, n, spacing, *archived in items:
        grid = Grid(np.asarray(center), int(n), float(spacing))
        try:
            out.append((rec, _compute_one(kind, params, z, pos, grid, threads, archived[0] if archived else None)))
        except InputError as e:
            out.append((rec, {"ok": False, "error": str(e), "log": []}))
    return out


def _compute_one(kind, params, z, pos, grid, threads, archived=None):
    if kind == "promolecular":
        from elprop.density.promolecular import promolecular_density
        rho = promolecular_density(z, pos, grid, blur=params["blur"], level=(params["xc"], params["basis"]))
        return {"ok": True, "density": rho}
    if kind == "potential":
        from elprop.density.potential import potential_field
        return {"ok": True, "density": potential_field(z, pos, grid, params["form"], params["softening"],
                                                       params["width"])}
    from pyscf import lib

    from elprop.density.dft import DFTSettings, dft_density, pack_dm, run_scf
    from elprop.density.grid import integrate
    lib.num_threads(threads)
    settings = DFTSettings(**params["settings"])
    res = archived if archived is not None else run_scf(z, pos, settings, attempts=params.get("attempts"))
    if not res["ok"]:
        return {"ok": False, "log": res["log"], "error": "SCF did not converge in any attempt"
                if res["log"] and "error" not in res["log"][-1] else res["log"][-1].get("error", "")}
    rho = dft_density(z, pos, grid, res["basis"], res["dm"], params["blur"], (settings.xc, settings.basis))
    return {"ok": True, "density": rho, "dm_packed": pack_dm(res["dm"]), "nao": res["dm"].shape[0],
            "energy_eV": res["energy_eV"], "homo_eV": res["homo_eV"], "lumo_eV": res["lumo_eV"],
            "dipole_D": res["dipole_D"], "converged": True, "attempt": res["attempt"], "n_cycles": res["n_cycles"],
            "wall_s": res["wall_s"], "electrons": integrate(rho, grid), "log": res["log"],
            "orbitals": res.get("orbitals"), "basis": res["basis"], "restored": archived is not None}


def _same_basis(archived: dict, attempts: list[dict], params: dict) -> bool:
    k = archived["attempt"]
    return 0 <= k < len(attempts) and attempts[k].get("basis", params["settings"]["basis"]) == archived["basis"]


# --- parameters of each kind ---------------------------------------------------------------------------------
def kind_params(kind: str, blur: float, *, xc="b3lyp", basis="6-31g(2df,p)", density_fit=True, fallback_basis="6-31g*",
                grid_level=3, form="coulomb", softening=0.3, width=0.3, attempts=None, charge=0, spin=None) -> dict:
    """The parameters stored with a kind (a rerun must use the same ones)."""
    from elprop.density.dft import DFTSettings
    if kind == "promolecular":
        return {"blur": blur, "xc": xc, "basis": basis}
    if kind == "potential":
        return {"blur": 0.0, "form": form, "softening": softening, "width": width}
    if kind == "dft":
        s = DFTSettings(xc=xc, basis=basis, density_fit=density_fit, fallback_basis=fallback_basis,
                        grid_level=int(grid_level), charge=int(charge), spin=None if spin is None else int(spin))
        p = {"blur": blur, "settings": asdict(s)}
        if attempts is not None:
            p["attempts"] = attempts
        return p
    raise InputError(f"unknown density kind {kind!r}")


def level_of_theory(kind: str, params: dict) -> str:
    from elprop.density.dft import DFTSettings
    from elprop.density.potential import describe
    if kind == "promolecular":
        return f"sum of free atoms, UKS {params['xc'].upper()}/{params['basis']} (PySCF), spherically averaged"
    if kind == "potential":
        return describe(params["form"], params["softening"], params["width"])
    s = DFTSettings(**params["settings"])
    return ("UKS " if s.spin else "RKS ") + s.level() + " (PySCF)"


# --- the driver ----------------------------------------------------------------------------------------------
def generate(store: DensityStore, kind: str, params: dict, *, dtype="float16", workers: int = 2, scheduler=None,
             threads_per_worker: int = 1, retry_failed: bool = False, batch: int | None = None, progress=True,
             log=print, scf_archive=None) -> dict:
    """Fill the pending records of ``kind`` in ``store``; returns a summary dict.

    ``scf_archive`` (a folder, kind dft only): every converged SCF is also written there (``SCFArchive``), and a
    record whose molecule the archive already holds at these settings is evaluated from the archived orbitals
    instead of running its SCF again (counted as ``restored``)."""
    from elprop.density.dft import DFTSettings
    store.lock()
    try:
        g = store.ensure_kind(kind, params, dtype)
        if kind == "dft":
            g.attrs["attempts"] = params.get("attempts") or DFTSettings(**params["settings"]).attempts()
        g.attrs["level_of_theory"] = level_of_theory(kind, params)
        st = store.status(kind)
        todo = np.nonzero((st == PENDING) | ((st == FAILED) if retry_failed else False))[0]
        n_done0 = int((st == DONE).sum())
        log(f"{kind}: {len(st)} records, {n_done0} done, {int((st == FAILED).sum())} failed, {len(todo)} to compute")
        summary = {"kind": kind, "records": len(st), "computed": 0, "failed": 0, "restored": 0, "wall_s": 0.0}
        if len(todo) == 0:
            return summary
        batch = batch or (1 if kind == "dft" else 16)
        gp = store.grid_params
        z_all, pos_all = store.root["z"][:], store.root["pos"][:]
        na, centers = store.root["n_atoms"][:], store.root["center"][:]
        archive = None
        if scf_archive is not None and kind == "dft":
            from elprop.density.scf_archive import SCFArchive
            archive = SCFArchive(scf_archive, params["settings"])
            n_have = sum((z_all[r, :na[r]], pos_all[r, :na[r]]) in archive for r in todo)
            log(f"dft: the SCF archive {archive.dir} holds {n_have} of the {len(todo)} molecules to compute")

        def atoms(r):
            return z_all[r, :na[r]].astype(np.int64), pos_all[r, :na[r]].astype(np.float64)

        def items(recs):
            out = []
            for r in recs:
                z, pos = atoms(r)
                it = (int(r), z, pos, centers[r], int(gp["shape"]), float(gp["spacing_A"]))
                got = archive.get(z, pos) if archive is not None else None
                if got is not None and not _same_basis(got, g.attrs["attempts"], params):
                    got = None  # converged under another attempt list: the store could not name its basis
                out.append(it if got is None else it + (got,))
            return out
        chunks = [todo[s:s + batch] for s in range(0, len(todo), batch)]
        t0 = time.time()
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), desc=f"{kind} densities", unit="mol", mininterval=1.0)

        def write(results):
            if archive is not None:  # the archive first: a kill after it loses only the cheap grid
                for rec, res in results:
                    if res.get("ok") and not res.get("restored") and res.get("orbitals") is not None:
                        archive.put(*atoms(rec), res, smiles=str(store.root["smiles"][rec]))
            store.write_records(kind, [r for r, _ in results], [res for _, res in results])
            for rec, res in results:
                summary["computed" if res.get("ok") else "failed"] += 1
                summary["restored"] += bool(res.get("restored"))
                if not res.get("ok"):
                    log(f"record {rec} (source index {int(store.root['source_index'][rec])}) failed: "
                        f"{res.get('error', '')}")
            if bar is not None:
                bar.update(len(results))
                bar.set_postfix(failed=summary["failed"])

        if workers == 0 and scheduler is None:
            for c in chunks:
                write(compute_batch(kind, params, items(c), threads_per_worker))
        else:
            from elprop.core.parallel import run_dask
            run_dask(compute_batch, chunks, lambda c: (kind, params, items(c), threads_per_worker), write,
                     workers, scheduler, threads_per_worker, log)
        if bar is not None:
            bar.close()
        wall = time.time() - t0
        summary["wall_s"] = wall
        n = summary["computed"] + summary["failed"]
        summary["molecules_per_hour"] = n / wall * 3600 if wall > 0 else float("nan")
        restored = f" ({summary['restored']} from the SCF archive)" if archive is not None else ""
        log(f"{kind}: computed {summary['computed']}{restored}, failed {summary['failed']} in {wall:.1f} s "
            f"({summary['molecules_per_hour']:.0f} molecules/hour)")
        return summary
    finally:
        store.unlock()


# --- choosing molecules ----------------------------------------------------------------------------------------
def parse_subset(spec: str | None, ds) -> np.ndarray:
    """Indices of ``ds`` from a subset spec: None/'all', 'A:B' (a range), 'i,j,k', '@file' (indices, one per line
    or a JSON list), 'random:N[:seed]', or 'stratified:N[:seed]' (seeded, proportional to the number of molecules
    with each heavy-atom count, at least one of each)."""
    n = len(ds)
    if spec in (None, "", "all"):
        return np.arange(n)
    try:
        if spec.startswith("@"):
            import json
            path = spec[1:]
            if not os.path.isfile(path):
                raise InputError(f"subset file {path} does not exist")
            text = open(path).read().strip()
            idx = np.asarray(json.loads(text) if text.startswith("[") else text.split(), dtype=np.int64)
        elif spec.startswith(("random:", "stratified:")):
            parts = spec.split(":")
            k, seed = int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
            idx = random_subset(ds, k, seed) if parts[0] == "random" else stratified_subset(ds, k, seed)
        elif ":" in spec:
            a, b = spec.split(":")
            idx = np.arange(int(a or 0), int(b) if b else n)
        else:
            idx = np.asarray([int(x) for x in spec.split(",")], dtype=np.int64)
    except ValueError:
        raise InputError(f"bad --subset {spec!r}: use A:B, i,j,k, @file, random:N[:seed] or stratified:N[:seed]") \
            from None
    if len(idx) == 0:
        raise InputError(f"--subset {spec!r} selects no molecules")
    if idx.min() < 0 or idx.max() >= n:
        raise InputError(f"--subset {spec!r} has indices outside the {n} molecules of the data")
    return idx


def random_subset(ds, k: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(len(ds), min(k, len(ds)), replace=False))


def stratified_subset(ds, k: int, seed: int = 0) -> np.ndarray:
    heavy = np.array([int((ds.z[ds.offsets[i]:ds.offsets[i + 1]] > 1).sum()) for i in range(len(ds))])
    rng = np.random.default_rng(seed)
    sizes, counts = np.unique(heavy, return_counts=True)
    quota = np.maximum(1, np.floor(k * counts / counts.sum()).astype(int))
    quota = np.minimum(quota, counts)
    while quota.sum() < min(k, len(ds)):  # hand the rounding remainder to the largest strata
        quota[np.argmax(counts - quota)] += 1
    while quota.sum() > k:
        quota[np.argmax(quota)] -= 1
    picks = [rng.choice(np.nonzero(heavy == s)[0], q, replace=False) for s, q in zip(sizes, quota)]
    return np.sort(np.concatenate(picks))

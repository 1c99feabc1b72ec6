"""``elprop label``: a resumable, Dask-parallel batch of DFT labels written into one folder.

Layout of ``--out DIR``:
  config.json         level of theory, geometry route and seed (a rerun must match it)
  atoms.json          free-atom energies at the same level [eV], for atomization energies
  results/KEY.json    one file per molecule, written atomically when it finishes (the resume state)
  labels.csv          every labelled molecule, targets in elprop units in the headers (ready for `elprop train`)
  geometries.extxyz   the final geometries, properties on each comment line
  failures.csv        molecules whose geometry or SCF failed, with the stage and the message
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from elprop.core.cache import atomic_write, write_csv
from elprop.core.dataset import SYMBOLS, InputError
from elprop.density.dft import DFTSettings

ASSEMBLE_EVERY_S = 30.0  # how often labels.csv and geometries.extxyz are rewritten while a batch runs
LABEL_COLUMNS = ["homo", "lumo", "gap", "mu", "E", "E_atom", "alpha"]


def molecule_items(ds, settings: DFTSettings) -> list[dict]:
    """One work item per molecule of ``ds``, checked before anything is computed: a SMILES that does not parse,
    a charge or spin that does not fit the settings, or an element without a basis is an InputError."""
    from rdkit import Chem

    from elprop.chem.rdkit_utils import mol_from_smiles
    items, elements = [], set()
    for i in range(len(ds)):
        a, b = ds.offsets[i], ds.offsets[i + 1]
        name = ds.names[i] if ds.names is not None else f"mol_{i}"
        smiles = ds.smiles[i] if ds.smiles is not None else ""
        item = {"name": str(name), "smiles": smiles or "", "z": None, "pos": None}
        if b > a and ds.pos is not None and np.isfinite(ds.pos[a:b]).all():
            item["z"], item["pos"] = ds.z[a:b].astype(int).tolist(), ds.pos[a:b].astype(float).tolist()
            z = ds.z[a:b]
        else:
            if not smiles:
                raise InputError(f"molecule {name}: neither a geometry nor a SMILES")
            m = Chem.AddHs(mol_from_smiles(smiles))
            charge = Chem.GetFormalCharge(m)
            unpaired = sum(at.GetNumRadicalElectrons() for at in m.GetAtoms())
            if charge != settings.charge:
                raise InputError(f"molecule {name} ({smiles}) has net charge {charge:+d}: give --charge {charge} "
                                 "(every molecule of a run shares it), or label it separately")
            if unpaired != (settings.spin or 0):
                raise InputError(f"molecule {name} ({smiles}) has {unpaired} unpaired electron(s): give --spin "
                                 f"{unpaired} (2S) to label it open shell")
            z = np.array([at.GetAtomicNum() for at in m.GetAtoms()])
        try:
            settings.spin_of(z)
        except ValueError as e:
            raise InputError(f"molecule {name}: {e}") from None
        elements.update(int(x) for x in z)
        item["key"] = item_key(item["smiles"], item["z"], item["pos"])
        items.append(item)
    check_basis(elements, settings.basis)
    return items


def item_key(smiles: str, z=None, pos=None) -> str:
    """The name of a molecule's result file: a hash of its SMILES and, when given, its input geometry (the same
    molecule from the same start is never computed twice in a folder)."""
    src = json.dumps([smiles, z, None if pos is None else np.round(np.asarray(pos), 5).tolist()])
    return hashlib.sha1(src.encode()).hexdigest()[:16]


def check_basis(elements, basis: str) -> None:
    from pyscf import gto

    from elprop.label.compute import ATOM_SPIN
    for z in sorted(elements):
        sym = SYMBOLS[z]
        try:
            import warnings
            with warnings.catch_warnings():  # PySCF's hint to install basis-set-exchange: not for our users
                warnings.simplefilter("ignore")
                ok = bool(gto.basis.load(basis, sym))
        except Exception:  # PySCF raises a bare Exception/KeyError/BasisNotFoundError for a missing element
            ok = False
        if not ok:
            raise InputError(f"element {sym} has no basis functions in {basis}")
        if z not in ATOM_SPIN:
            raise InputError(f"element {sym}: elprop labels elements H to Ar (no free-atom state for Z={z})")


def _config(settings: DFTSettings, opt: str, seed: int, polarizability: bool, method: str = "dft") -> dict:
    from elprop import __version__
    level = "GFN2-xTB (tblite), a stand-in for DFT" if method == "xtb" else \
        ("UKS " if settings.spin else "RKS ") + settings.level() + " (PySCF)"
    return {"level_of_theory": level, "method": method,
            "settings": settings.to_dict(), "opt": opt, "seed": seed, "polarizability": polarizability,
            "scf_attempts": [a["name"] for a in settings.attempts() if "basis" not in a],
            "elprop": __version__}


def open_run(out: Path, config: dict) -> None:
    """Create ``out`` or check that it was labelled with the same settings (a resume)."""
    path = out / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        keys = ("settings", "opt", "seed", "polarizability", "method")
        diff = [k for k in keys if old.get(k, "dft" if k == "method" else None) != config.get(k)]
        if diff:
            raise InputError(f"{out} holds labels made with other settings ({', '.join(diff)} differ); "
                             "use a new --out, or the same options to resume")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=1)))


def atom_energies(out: Path, elements, settings: DFTSettings, log=print, method: str = "dft") -> dict[int, float]:
    """Free-atom energies [eV] at the run's level, kept in ``out/atoms.json`` and in elprop's cache (computed
    once per level of theory on a machine)."""
    from elprop.core.cache import cache_dir
    from elprop.label.compute import free_atom_energies
    level = json.dumps({k: v for k, v in settings.to_dict().items() if k not in ("charge", "spin")}, sort_keys=True)
    level = "gfn2-xtb" if method == "xtb" else level
    cached = cache_dir() / f"atoms-{hashlib.sha1(level.encode()).hexdigest()[:16]}.json"
    have = {}
    for path in (cached, out / "atoms.json"):
        if path.exists():
            have.update({int(k): v for k, v in json.loads(path.read_text()).items()})
    need = sorted(set(int(e) for e in elements) - set(have))
    if need:
        log(f"free atoms at the same level: {', '.join(SYMBOLS[z] for z in need)}")
        have.update(free_atom_energies(need, settings, method))
    text = json.dumps({str(k): v for k, v in sorted(have.items())}, indent=1)
    for path in (cached, out / "atoms.json"):
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return have


def label_items(items: list[dict], out, settings: DFTSettings, *, opt: str = "xtb", polarizability: bool = False,
                seed: int = 42, workers: int = 2, scheduler: str | None = None, threads_per_worker: int = 1,
                retry_failed: bool = False, progress: bool = True, log=print, method: str = "dft") -> dict:
    """Label ``items`` (from ``molecule_items``) into ``out``; returns a summary. Rerunning skips finished ones.
    ``method`` "xtb": GFN2-xTB labels instead of DFT (a cheap stand-in)."""
    out = Path(out)
    open_run(out, _config(settings, opt, seed, polarizability, method))
    with _locked(out):
        return _label(items, out, settings, opt, polarizability, seed, workers, scheduler, threads_per_worker,
                      retry_failed, progress, log, method)


def _locked(out: Path):
    """One labelling process per folder: a second one would compute the same molecules twice."""
    import contextlib
    import os

    @contextlib.contextmanager
    def lock():
        path = out / ".lock"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = path.read_text().strip()
            if pid.isdigit() and _alive(int(pid)):
                raise InputError(f"{out} is being labelled by process {pid}; wait for it, or stop it and rerun "
                                 "to resume") from None
            path.unlink()  # left by a killed run
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
    return lock()


def _alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _label(items, out, settings, opt, polarizability, seed, workers, scheduler, threads_per_worker, retry_failed,
           progress, log, method="dft") -> dict:
    from elprop.label.compute import label_one
    res_dir = out / "results"
    res_dir.mkdir(exist_ok=True)
    elements = {z for it in items for z in (it["z"] or _smiles_elements(it["smiles"]))}
    atoms = atom_energies(out, elements, settings, log, method)

    def finished(it):
        p = res_dir / f"{it['key']}.json"
        if not p.exists():
            return False
        return retry_failed is False or json.loads(p.read_text()).get("ok", False)
    todo = [it for it in items if not finished(it)]
    log(f"label: {len(items)} molecules, {len(items) - len(todo)} already done, {len(todo)} to compute "
        f"({_config(settings, opt, seed, polarizability, method)['level_of_theory']}, geometry: {opt})")
    summary = {"molecules": len(items), "computed": 0, "failed": 0, "wall_s": 0.0}
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="DFT labels", unit="mol", mininterval=1.0)

    def write(res):
        res["E_atom"] = _atomization(res, atoms) if res.get("ok") else None
        atomic_write(res_dir / f"{res['key']}.json", lambda tmp: Path(tmp).write_text(json.dumps(res)))
        cache[res["key"]] = res  # a retried molecule's new result replaces the old one read before
        summary["computed" if res.get("ok") else "failed"] += 1
        if not res.get("ok"):
            log(f"{res['name']} ({res['smiles']}) failed at {res.get('stage')}: {res.get('error')}")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=summary["failed"])
        if time.time() - last[0] >= ASSEMBLE_EVERY_S:  # the tables grow as results arrive
            assemble(items, out, cache)
            last[0] = time.time()

    t0 = time.time()
    last, cache = [t0], {}  # time of the last table update; results already read (each file is read once)
    args = (settings.to_dict(), opt, polarizability, seed, threads_per_worker, method)
    try:
        if workers == 0 and scheduler is None:
            for it in todo:
                write(label_one(it, *args))
        elif todo:
            from elprop.core.parallel import run_dask
            run_dask(label_one, todo, lambda it: (it, *args), write, workers, scheduler, threads_per_worker, log)
    finally:
        if bar is not None:
            bar.close()
        summary.update(assemble(items, out, cache))
    summary["wall_s"] = round(time.time() - t0, 1)
    return summary


def _smiles_elements(smiles: str) -> set[int]:
    from rdkit import Chem
    m = Chem.AddHs(Chem.MolFromSmiles(smiles))
    return {a.GetAtomicNum() for a in m.GetAtoms()}


def _atomization(res: dict, atoms: dict[int, float]) -> float:
    """Electronic atomization energy [eV]: free-atom energies minus the molecule's (positive when bound), no ZPE."""
    return float(sum(atoms[int(z)] for z in res["z"]) - res["E"])


def assemble_all(out: Path) -> dict:
    """labels.csv and the rest from every result in ``out`` (a folder several batches wrote into, such as the
    design loop's), in the order of the files' names."""
    res = sorted((Path(out) / "results").glob("*.json"))
    items = [{"key": p.stem} for p in res]
    return assemble(items, Path(out))


def assemble(items: list[dict], out: Path, cache: dict | None = None) -> dict:
    """labels.csv, geometries.extxyz and failures.csv from the results present, in input order. ``cache`` (key ->
    result) keeps what earlier calls of one run have read, so a growing batch reads each result file once."""
    from elprop.core.units import TARGETS
    res_dir = out / "results"
    cache = {} if cache is None else cache
    rows, fails, frames = [], [], []
    for it in items:
        r = cache.get(it["key"])
        if r is None:
            p = res_dir / f"{it['key']}.json"
            if not p.exists():
                continue
            r = cache[it["key"]] = json.loads(p.read_text())
        if not r.get("ok"):
            fails.append({"name": r["name"], "smiles": r["smiles"], "stage": r.get("stage", ""),
                          "error": r.get("error", ""), "wall_s": r.get("wall_s")})
            continue
        row = {"name": r["name"], "smiles": r["smiles"]}
        for c in LABEL_COLUMNS:
            if r.get(c) is not None:
                row[f"{c} [{TARGETS[c].unit}]"] = round(float(r[c]), 6)
        row.update(geometry=r["opt"], scf=r["scf_attempt"], scf_cycles=r["n_cycles"], wall_s=r["wall_s"],
                   key=r["key"])
        rows.append(row)
        props = " ".join(f"{c}={float(r[c]):.6f}" for c in LABEL_COLUMNS if r.get(c) is not None)
        body = "\n".join(f"{SYMBOLS[z]} {x:.6f} {y:.6f} {w:.6f}" for z, (x, y, w) in zip(r["z"], r["pos"]))
        frames.append(f"{len(r['z'])}\nProperties=species:S:1:pos:R:3 name=\"{r['name']}\" smiles=\"{r['smiles']}\" "
                      f"{props} units=\"eV,D,bohr^3\"\n{body}\n")
    write_csv(out / "labels.csv", rows)
    if frames:
        atomic_write(out / "geometries.extxyz", lambda tmp: Path(tmp).write_text("".join(frames)))
    if fails:
        write_csv(out / "failures.csv", fails)
    elif (out / "failures.csv").exists():
        (out / "failures.csv").unlink()
    return {"labelled": len(rows), "failures": len(fails), "pending": len(items) - len(rows) - len(fails)}

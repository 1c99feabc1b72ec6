"""Label one molecule (runs on a Dask worker, or in process): geometry, SCF, properties in elprop units.

A result is a plain dict that is written as JSON: ``ok``, the properties (``homo``, ``lumo``, ``gap`` [eV],
``mu`` [D], ``E`` [eV], and ``alpha`` [bohr^3] when asked), the final geometry, the SCF attempts and the time of
each stage. A failure (embedding, geometry or SCF) is a result with ``ok`` false, ``stage`` and ``error``."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from elprop.density.dft import DFTSettings, build_mol, run_scf

# ground-state multiplicities (2S) of the free atoms of QM9's elements and their neighbours (Hund's rules)
ATOM_SPIN = {1: 1, 2: 0, 3: 1, 4: 0, 5: 1, 6: 2, 7: 3, 8: 2, 9: 1, 10: 0, 11: 1, 12: 0, 13: 1, 14: 2, 15: 3, 16: 2,
             17: 1, 18: 0}


def same_basis_attempts(settings: DFTSettings) -> list[dict]:
    """The SCF fallbacks that keep the basis: a label in a smaller basis would not be the same level of theory."""
    return [a for a in settings.attempts() if "basis" not in a]


METHODS = ("dft", "xtb")  # the level of the labels: DFT (PySCF, the settings) or GFN2-xTB (tblite), a cheap stand-in


def label_one(item: dict, settings: dict, opt: str = "xtb", polarizability: bool = False, seed: int = 42,
              threads: int = 1, method: str = "dft") -> dict:
    """``item``: key, name, smiles, and z/pos (Å) when the input has a geometry. ``method`` "xtb" labels at the
    GFN2-xTB level instead of DFT (seconds, not minutes; for tests and quick stand-ins, not QM9-level labels)."""
    from pyscf import lib
    lib.num_threads(threads)
    s = DFTSettings(**settings)
    out = {"key": item["key"], "name": item["name"], "smiles": item["smiles"], "ok": False, "opt": opt}
    t0 = time.time()
    stage = "geometry"
    try:
        z, pos, geo = _geometry(item, s, opt, seed)
        out.update(geometry=geo, t_geometry_s=round(time.time() - t0, 2))
        stage = "scf"
        t1 = time.time()
        res = xtb_single_point(z, pos, s.charge, s.spin_of(z)) if method == "xtb" else \
            run_scf(z, pos, s, attempts=same_basis_attempts(s))
        out.update(scf_log=res["log"], t_scf_s=round(time.time() - t1, 2))
        if not res["ok"]:
            last = res["log"][-1] if res["log"] else {}
            raise RuntimeError(last.get("error") or f"SCF did not converge in {len(res['log'])} attempts")
        out.update(z=[int(a) for a in z], pos=np.round(np.asarray(pos), 6).tolist(),
                   homo=res["homo_eV"], lumo=res["lumo_eV"], gap=res["lumo_eV"] - res["homo_eV"],
                   mu=float(np.linalg.norm(res["dipole_D"])), dipole_D=np.round(res["dipole_D"], 6).tolist(),
                   E=res["energy_eV"], scf_attempt=res["log"][res["attempt"]]["name"], n_cycles=res["n_cycles"],
                   spin=res["spin"])
        if polarizability and method == "xtb":
            raise RuntimeError("no polarizability at the xTB level")
        if polarizability:
            stage = "polarizability"
            t2 = time.time()
            out["alpha"], out["alpha_tensor"] = finite_field_alpha(z, pos, s, res["dm"])
            out["t_alpha_s"] = round(time.time() - t2, 2)
        out["ok"] = True
    except Exception as e:  # recorded, listed, never fatal to the batch
        out.update(stage=stage, error=f"{type(e).__name__}: {e}")
    out["wall_s"] = round(time.time() - t0, 2)
    return out


def _geometry(item, s: DFTSettings, opt: str, seed: int):
    """(z, pos, info) of the structure to label."""
    from elprop.label.geometry import dft_optimize, xtb_optimize
    info = {}
    if item.get("pos") is not None:
        z, pos = np.asarray(item["z"], dtype=int), np.asarray(item["pos"], dtype=float)
        info["start"] = "input geometry"
    else:
        from elprop.chem.rdkit_utils import embed_mol, mol_from_smiles
        m = embed_mol(mol_from_smiles(item["smiles"]), seed=seed, label=item["smiles"])
        z = np.array([a.GetAtomicNum() for a in m.GetAtoms()])
        pos = m.GetConformer().GetPositions()
        info["start"] = f"RDKit ETKDG + MMFF94 (seed {seed})"
    spin = s.spin_of(z)  # a charge/spin that does not fit the electron count fails here, with its reason
    if opt in ("xtb", "dft"):
        pos, info["xtb"] = xtb_optimize(z, pos, s.charge, spin)
    if opt == "dft":
        pos, info["dft"] = dft_optimize(z, pos, s)
    return z, np.asarray(pos), info


def finite_field_alpha(z, pos, s: DFTSettings, dm0, field: float = 1e-3) -> tuple[float, list]:
    """Static isotropic polarizability [bohr^3] from central differences of the dipole in a uniform field of
    ``field`` a.u. along ±x, ±y, ±z (six SCFs started from the field-free density)."""
    from pyscf import dft
    spin = s.spin_of(z)
    mol = build_mol(z, pos, s.basis, s.charge, spin)
    r = mol.intor("int1e_r", comp=3)
    tensor = np.zeros((3, 3))
    for i in range(3):
        mu = []
        for sign in (1.0, -1.0):
            mf = dft.RKS(mol) if spin == 0 else dft.UKS(mol)
            mf.xc, mf.grids.level, mf.conv_tol = s.xc, s.grid_level, 1e-10
            if s.density_fit:
                mf = mf.density_fit()
            h = mf.get_hcore() + sign * field * r[i]  # the electrons' energy in the field F along +i is +F·r
            mf.get_hcore = lambda *a, h=h: h
            mf.kernel(dm0 if spin == 0 else None)
            if not mf.converged:
                raise RuntimeError(f"finite-field SCF (axis {'xyz'[i]}, sign {sign:+.0f}) did not converge")
            mu.append(np.asarray(mf.dip_moment(unit="AU", verbose=0)))
        tensor[:, i] = (mu[0] - mu[1]) / (2 * field)
    return float(np.trace(tensor) / 3), np.round(tensor, 4).tolist()


def xtb_single_point(z, pos, charge: int = 0, spin: int = 0) -> dict:
    """GFN2-xTB (tblite) at a fixed geometry, in the shape of ``run_scf``'s result: orbital energies [eV] of the
    highest doubly occupied and lowest empty orbital, dipole [D], energy [eV]."""
    from tblite.interface import Calculator

    from elprop.core.units import BOHR, HARTREE_TO_EV
    from elprop.density.dft import DEBYE_PER_AU
    t0 = time.time()
    calc = Calculator("GFN2-xTB", np.asarray(z, dtype=int), np.asarray(pos, dtype=float) / BOHR,
                      charge=float(charge), uhf=int(spin))
    calc.set("verbosity", 0)
    res = calc.singlepoint()
    e = np.asarray(res.get("orbital-energies")) * HARTREE_TO_EV
    occ = np.asarray(res.get("orbital-occupations"))
    occ = occ.sum(axis=0) if occ.ndim == 2 else occ
    n_occ = int(np.flatnonzero(occ > 0.5).max()) + 1  # xTB counts valence electrons only; its occupations say
    log = [{"name": "gfn2-xtb", "converged": True, "cycles": 0, "wall_s": round(time.time() - t0, 2)}]
    return {"ok": True, "attempt": 0, "log": log, "energy_eV": float(res.get("energy")) * HARTREE_TO_EV,
            "homo_eV": float(e[n_occ - 1]), "lumo_eV": float(e[n_occ]) if len(e) > n_occ else float("nan"),
            "dipole_D": np.asarray(res.get("dipole"), dtype=float) * DEBYE_PER_AU, "dm": None, "spin": spin,
            "n_cycles": 0, "occupations": occ.round(4).tolist()[:n_occ + 1]}


def free_atom_energies(elements, settings: DFTSettings, method: str = "dft") -> dict[int, float]:
    """Free-atom energies [eV] at the level of ``settings`` (UKS in each atom's ground-state multiplicity), or
    GFN2-xTB's with ``method`` "xtb"."""
    out = {}
    for a in sorted({int(e) for e in elements}):
        if a not in ATOM_SPIN:
            raise ValueError(f"no free-atom spin state for element Z={a}")
        if method == "xtb":
            out[a] = xtb_single_point([a], np.zeros((1, 3)), 0, ATOM_SPIN[a])["energy_eV"]
            continue
        s = replace(settings, charge=0, spin=ATOM_SPIN[a])
        res = run_scf(np.array([a]), np.zeros((1, 3)), s, attempts=same_basis_attempts(s))
        if not res["ok"]:
            raise RuntimeError(f"free-atom SCF for Z={a} did not converge")
        out[a] = res["energy_eV"]
    return out


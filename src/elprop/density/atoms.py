"""Spherically averaged free-atom densities from PySCF: the radial tables behind the promolecular kind.

For H, C, N, O and F: a spin-unrestricted Kohn-Sham calculation of the free atom in its ground-state
multiplicity (H 2, C 3, N 4, O 3, F 2). The density is averaged over a 302-point Lebedev sphere at each radius
of a radial grid, which removes the angular dependence of open p shells. The table at the QM9 level
(B3LYP/6-31G(2df,p)) ships in ``data/atom_densities.npz`` (``tools/make_atom_densities.py`` rebuilds it);
tables at other levels are computed on first use (a few seconds) and cached under ``$ELPROP_CACHE``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from elprop.core.units import BOHR

SPIN = {1: 1, 6: 2, 7: 3, 8: 2, 9: 1}  # 2S of the free-atom ground state
SYMBOL = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
SHIPPED = Path(__file__).resolve().parent / "data" / "atom_densities.npz"
SHIPPED_LEVEL = ("b3lyp", "6-31g(2df,p)")


def radial_grid() -> np.ndarray:
    """0 and 1,600 log-spaced radii from 1e-5 to 12 Å: fine near the nucleus, where the density is steep."""
    return np.concatenate([[0.0], np.logspace(-5, np.log10(12.0), 1600)])


def atom_density(z: int, xc: str, basis: str, r: np.ndarray) -> tuple[np.ndarray, float]:
    """(spherically averaged density in e/Å³ at radii ``r`` in Å, total energy in Hartree) of free atom ``z``."""
    from pyscf import dft, gto
    from pyscf.dft import numint

    mol = gto.M(atom=[[z, (0.0, 0.0, 0.0)]], basis=basis, spin=SPIN[z], unit="Angstrom", verbose=0)
    mf = dft.UKS(mol)
    mf.xc = xc
    mf.conv_tol = 1e-10
    if mol.nao > 1:  # (one orbital, as H in STO-3G, has no rotation for Newton's method to make)
        mf = mf.newton()  # second-order SCF: open-shell atoms (F, O) can oscillate for hundreds of DIIS cycles
    mf.kernel()
    if not mf.converged:
        raise RuntimeError(f"SCF of the free {SYMBOL[z]} atom did not converge ({xc}/{basis})")
    dm = mf.make_rdm1()
    sph = dft.gen_grid.gen_atomic_grids(mol, atom_grid={SYMBOL[z]: (1, 302)})[SYMBOL[z]]
    dirs = sph[0] / np.linalg.norm(sph[0], axis=1, keepdims=True)  # unit vectors of the Lebedev sphere
    w = sph[1] / sph[1].sum()
    pts = (r[:, None, None] / BOHR * dirs[None]).reshape(-1, 3)
    rho = numint.eval_rho(mol, mol.eval_gto("GTOval", pts), dm[0] + dm[1]).reshape(len(r), len(w)) @ w
    return rho / BOHR ** 3, float(mf.e_tot)


def compute_tables(xc: str, basis: str, log=None) -> dict:
    r = radial_grid()
    tables, meta = {"r": r}, {"xc": xc, "basis": basis, "unit_r": "angstrom", "unit_rho": "electrons/angstrom^3",
                              "electrons": {}, "energy_hartree": {}}
    for z in SYMBOL:
        rho, e = atom_density(z, xc, basis, r)
        tables[f"rho_{z}"] = rho
        meta["electrons"][SYMBOL[z]] = float(np.trapezoid(4 * np.pi * r ** 2 * rho, r))
        meta["energy_hartree"][SYMBOL[z]] = e
        if log:
            log(f"{SYMBOL[z]}: E = {e:.6f} Ha, 4 pi r^2 rho integrates to {meta['electrons'][SYMBOL[z]]:.6f}")
    tables["meta"] = np.array(json.dumps(meta))
    return tables


def table_path(xc: str, basis: str) -> Path:
    """The table file for a level of theory: the shipped one, or a cached one (computed if missing)."""
    key = (xc.lower(), basis.lower())
    if key == SHIPPED_LEVEL:
        return SHIPPED
    from elprop.core.cache import atomic_write, cache_dir
    slug = re.sub(r"[^a-z0-9]+", "_", f"{key[0]}_{key[1]}").strip("_")
    path = cache_dir() / "atom_densities" / f"{slug}.npz"
    if not path.exists():
        tables = compute_tables(xc, basis)
        atomic_write(path, lambda tmp: np.savez_compressed(open(tmp, "wb"), **tables))
    return path

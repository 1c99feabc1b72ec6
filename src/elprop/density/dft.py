"""Kohn-Sham DFT with PySCF: SCF with recorded fallbacks, and the total electron density on grids.

Defaults are the QM9 level of theory, B3LYP/6-31G(2df,p), with density fitting. An SCF that does not converge
is retried with a level shift, then with damping and more cycles, then in a smaller basis; every attempt is
recorded, and a molecule for which all fail is reported as failed, never dropped. The result keeps the AO
density matrix, from which the density on any grid can be evaluated again without a new SCF.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from elprop.core.units import BOHR, HARTREE_TO_EV

DEBYE_PER_AU = 2.541746473


@dataclass(frozen=True)
class DFTSettings:
    xc: str = "b3lyp"
    basis: str = "6-31g(2df,p)"
    density_fit: bool = True
    conv_tol: float = 1e-9
    max_cycle: int = 100
    grid_level: int = 3
    fallback_basis: str = "6-31g*"
    charge: int = 0
    spin: int | None = None  # 2S, the number of unpaired electrons; None: closed shell (an even electron count)

    def level(self) -> str:
        state = "" if not self.charge and not self.spin else f", charge {self.charge}, 2S = {self.spin or 0}"
        return f"{self.xc.upper()}/{self.basis}" + (" (density fitting)" if self.density_fit else "") + \
            f", XC grid level {self.grid_level}{state}"

    def spin_of(self, z) -> int:
        """2S for a molecule with atomic numbers ``z``; ValueError with a one-line reason when the charge and
        spin do not fit its electron count (an odd count needs --spin, or a --charge that makes it even)."""
        n_el = int(np.sum(z)) - int(self.charge)
        if n_el <= 0:
            raise ValueError(f"charge {self.charge} leaves {n_el} electrons")
        if self.spin is None:
            if n_el % 2:
                raise ValueError(f"odd electron count ({n_el} at charge {self.charge}): give --spin (2S, e.g. 1 for "
                                 "a doublet) or a --charge that makes it even")
            return 0
        if self.spin < 0 or self.spin > n_el or (n_el - self.spin) % 2:
            raise ValueError(f"spin 2S = {self.spin} does not fit {n_el} electrons (charge {self.charge}): "
                             "2S and the electron count must be both even or both odd")
        return int(self.spin)

    def attempts(self) -> list[dict]:
        """The SCF attempts in order: plain DIIS, level shift, damping with more cycles, smaller basis."""
        return [{"name": "diis"},
                {"name": "level_shift", "level_shift": 0.5},
                {"name": "damping", "damp": 0.5, "diis_start_cycle": 8, "max_cycle": 3 * self.max_cycle},
                {"name": "smaller_basis", "basis": self.fallback_basis, "level_shift": 0.3,
                 "max_cycle": 3 * self.max_cycle}]

    def to_dict(self) -> dict:
        return asdict(self)


def build_mol(z, pos, basis: str, charge: int = 0, spin: int | None = None):
    from pyscf import gto
    n_el = int(np.sum(z)) - charge
    return gto.M(atom=[[int(a), tuple(float(c) for c in p)] for a, p in zip(z, pos)], basis=basis,
                 unit="Angstrom", charge=charge, spin=n_el % 2 if spin is None else spin, verbose=0)


def run_scf(z, pos, settings: DFTSettings = DFTSettings(), attempts: list[dict] | None = None) -> dict:
    """RKS (closed shell) or, with ``settings.spin`` > 0, UKS on a molecule (Å) of charge ``settings.charge``.
    Returns a dict with ``ok``, ``attempt`` (index of the attempt
    that converged, -1 if none), ``log`` (one entry per attempt), and, when ok: ``energy_eV``, ``homo_eV``,
    ``lumo_eV``, ``dipole_D`` (3-vector), ``basis``, ``dm`` (AO density matrix), ``orbitals`` (the occupied MO
    coefficients and their occupations, from which ``dm`` follows; see ``scf_archive``), ``n_cycles``, ``wall_s``."""
    from pyscf import dft

    from elprop.density.scf_archive import occupied_orbitals
    t0 = time.time()
    attempts = settings.attempts() if attempts is None else attempts
    log = []
    try:
        spin = settings.spin_of(z)
    except ValueError as e:
        return {"ok": False, "attempt": -1, "wall_s": 0.0, "log": [{"name": "check", "error": str(e)}]}
    for k, at in enumerate(attempts):
        t1 = time.time()
        basis = at.get("basis", settings.basis)
        entry = {"name": at["name"], "basis": basis}
        try:
            mol = build_mol(z, pos, basis, settings.charge, spin)
            mf = dft.RKS(mol) if spin == 0 else dft.UKS(mol)
            mf.xc = settings.xc
            mf.grids.level = settings.grid_level
            if settings.density_fit:
                mf = mf.density_fit()
            mf.conv_tol = settings.conv_tol
            mf.max_cycle = int(at.get("max_cycle", settings.max_cycle))
            mf.level_shift = float(at.get("level_shift", 0.0))
            mf.damp = float(at.get("damp", 0.0))
            if "diis_start_cycle" in at:
                mf.diis_start_cycle = int(at["diis_start_cycle"])
            cycles = []
            mf.callback = lambda env: cycles.append(env.get("cycle"))
            energy = mf.kernel()
            entry.update(converged=bool(mf.converged), cycles=len(cycles), wall_s=round(time.time() - t1, 2))
        except Exception as e:  # an SCF that crashes counts as a failed attempt, with its message
            entry.update(converged=False, error=f"{type(e).__name__}: {e}", wall_s=round(time.time() - t1, 2))
            log.append(entry)
            continue
        log.append(entry)
        if not mf.converged or not np.isfinite(energy):
            continue
        occ = np.asarray(mf.mo_occ)
        e_mo = np.asarray(mf.mo_energy)
        dip = mf.dip_moment(unit="Debye", verbose=0)
        dm = np.asarray(mf.make_rdm1())
        if dm.ndim == 3:  # UKS: the total density of both spins
            dm = dm[0] + dm[1]
        return {"ok": True, "attempt": k, "log": log, "basis": basis, "energy_eV": float(energy) * HARTREE_TO_EV,
                "homo_eV": float(e_mo[occ > 0].max()) * HARTREE_TO_EV,
                "lumo_eV": float(e_mo[occ == 0].min()) * HARTREE_TO_EV if (occ == 0).any() else float("nan"),
                "dipole_D": np.asarray(dip, dtype=np.float64), "dm": dm, "spin": spin,
                "orbitals": occupied_orbitals(mf.mo_coeff, mf.mo_occ),
                "n_cycles": len(cycles), "wall_s": time.time() - t0}
    return {"ok": False, "attempt": -1, "log": log, "wall_s": time.time() - t0}


def density_at(z, pos, basis: str, dm: np.ndarray, points: np.ndarray, block: int = 16384) -> np.ndarray:
    """The electron density (e/Å³) of AO density matrix ``dm`` at ``points`` (Å), in blocks to bound memory."""
    from pyscf.dft import numint
    mol = build_mol(z, pos, basis)
    pts = np.asarray(points, dtype=np.float64) / BOHR
    out = np.empty(len(pts))
    for s in range(0, len(pts), block):
        ao = mol.eval_gto("GTOval", pts[s:s + block])
        out[s:s + block] = numint.eval_rho(mol, ao, dm)
    return out / BOHR ** 3


def dft_density(z, pos, grid, basis: str, dm: np.ndarray, blur: float, level: tuple[str, str]) -> np.ndarray:
    """The DFT density on ``grid`` (float32, e/Å³).

    ``blur`` = 0: point values at the voxel centres. ``blur`` > 0: the density convolved with a Gaussian of
    σ = blur × spacing, like the promolecular kind. The cusped part is handled exactly: ρ = ρ_pro + Δρ, where the
    free-atom sum ρ_pro (at the same level ``level`` = (xc, basis)) is blurred analytically from its radial tables
    and the smooth deformation density Δρ is sampled and filtered on the grid."""
    from scipy.ndimage import gaussian_filter

    from elprop.density.promolecular import promolecular_density
    rho = density_at(z, pos, basis, dm, grid.points()).reshape(grid.shape)
    if blur <= 0:
        return rho.astype(np.float32)
    delta = rho - promolecular_density(z, pos, grid, blur=0.0, level=level)
    smooth = promolecular_density(z, pos, grid, blur=blur, level=level).astype(np.float64)
    smooth += gaussian_filter(delta, sigma=blur, mode="constant", cval=0.0, truncate=4.0)
    return smooth.astype(np.float32)


def pack_dm(dm: np.ndarray) -> np.ndarray:
    """The lower triangle of a symmetric density matrix, row by row, as float32."""
    i, j = np.tril_indices(dm.shape[0])
    return dm[i, j].astype(np.float32)


def unpack_dm(packed: np.ndarray, nao: int) -> np.ndarray:
    dm = np.zeros((nao, nao))
    i, j = np.tril_indices(nao)
    dm[i, j] = packed
    dm[j, i] = packed
    return dm

"""Geometries for labelling: RDKit ETKDG + MMFF94 (seeded), GFN2-xTB with tblite, or DFT with geomeTRIC."""
from __future__ import annotations

import numpy as np

OPT_CHOICES = ("xtb", "mmff", "dft", "none")


def xtb_optimize(z, pos, charge: int = 0, spin: int = 0, fmax: float = 0.01,
                 steps: int = 500) -> tuple[np.ndarray, dict]:
    """GFN2-xTB (tblite) relaxation with ASE's LBFGS to ``fmax`` eV/Å. Returns (positions Å, info)."""
    from ase import Atoms
    from ase.optimize import LBFGS
    from tblite.ase import TBLite

    atoms = Atoms(numbers=np.asarray(z, dtype=int), positions=np.asarray(pos, dtype=float))
    atoms.calc = TBLite(method="GFN2-xTB", charge=float(charge), multiplicity=int(spin) + 1, verbosity=0)
    opt = LBFGS(atoms, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    fmax_now = float(np.sqrt((atoms.get_forces() ** 2).sum(axis=1)).max())
    info = {"method": "GFN2-xTB (tblite), ASE LBFGS", "converged": converged, "steps": int(opt.get_number_of_steps()),
            "fmax_eV_per_A": round(fmax_now, 5), "energy_eV": float(atoms.get_potential_energy())}
    if not converged:
        raise RuntimeError(f"xTB optimisation did not reach fmax {fmax} eV/Å in {steps} steps (at {fmax_now:.3f})")
    return atoms.get_positions(), info


def dft_optimize(z, pos, settings, max_steps: int = 100) -> tuple[np.ndarray, dict]:
    """Relaxation at the DFT level of ``settings`` (PySCF gradients, geomeTRIC). Returns (positions Å, info)."""
    from pyscf import dft
    from pyscf.geomopt.geometric_solver import optimize

    from elprop.density.dft import build_mol
    spin = settings.spin_of(z)
    mol = build_mol(z, pos, settings.basis, settings.charge, spin)
    mf = dft.RKS(mol) if spin == 0 else dft.UKS(mol)
    mf.xc = settings.xc
    mf.grids.level = settings.grid_level
    if settings.density_fit:
        mf = mf.density_fit()
    import contextlib
    import io
    import logging
    for name in ("geometric", "geometric.nifty"):  # its step-by-step log is not for our users' screens
        logging.getLogger(name).setLevel(logging.ERROR)
    conv = {}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        mol_eq = optimize(mf, maxsteps=max_steps, callback=lambda env: conv.update(step=conv.get("step", 0) + 1))
    return mol_eq.atom_coords(unit="Angstrom"), {"method": f"{settings.xc.upper()}/{settings.basis} (geomeTRIC)",
                                                  "steps": conv.get("step", 0)}

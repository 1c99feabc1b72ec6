"""Artificial potential fields from the nuclei alone: cheap, exact inputs for the Hohenberg-Kohn map.

Two forms, evaluated like the promolecular density in the grid's own frame (separable squared distances):
- ``coulomb``: a softened nuclear potential V(r) = Σ_A Z_A / √(|r − R_A|² + a²), in Hartree per unit charge
  (distances in bohr), with softening length ``a`` (Å) so the grid never samples a singularity;
- ``gaussian``: nuclear charges smeared as normalised Gaussians of width σ (Å),
  ρ_n(r) = Σ_A Z_A (2πσ²)^(-3/2) exp(−|r − R_A|² / 2σ²), in e/Å³; it integrates to the total nuclear charge.
"""
from __future__ import annotations

import numpy as np

from elprop.core.dataset import InputError
from elprop.core.units import BOHR
from elprop.density.grid import Grid

FORMS = ("coulomb", "gaussian")
DEFAULTS = {"form": "coulomb", "softening": 0.3, "width": 0.3}  # Å


def potential_field(z: np.ndarray, pos: np.ndarray, grid: Grid, form: str = "coulomb", softening: float = 0.3,
                    width: float = 0.3) -> np.ndarray:
    """The ``form`` field on ``grid`` as a float32 (n, n, n) array (see the module docstring for units)."""
    if form not in FORMS:
        raise InputError(f"unknown potential form {form!r}; choose one of {', '.join(FORMS)}")
    if (softening if form == "coulomb" else width) <= 0:
        raise InputError("the potential's softening and width must be positive (Å)")
    n = grid.n
    ax = grid.local_axis()
    loc = (np.asarray(pos, dtype=np.float64) - grid.center) @ np.asarray(grid.axes).T
    out = np.zeros((n, n, n), dtype=np.float64)
    for za, p in zip(np.asarray(z, dtype=float), loc):
        r2 = ((ax - p[0]) ** 2)[:, None, None] + ((ax - p[1]) ** 2)[None, :, None] + ((ax - p[2]) ** 2)[None, None, :]
        if form == "coulomb":
            out += za * BOHR / np.sqrt(r2 + softening ** 2)  # Z / (distance in bohr)
        else:
            out += za * (2 * np.pi * width ** 2) ** -1.5 * np.exp(-r2 / (2 * width ** 2))
    return out.astype(np.float32)


def describe(form: str, softening: float, width: float) -> str:
    if form == "coulomb":
        return f"softened nuclear Coulomb potential, a = {softening} Å (Hartree/e)"
    return f"Gaussian-smeared nuclear charges, sigma = {width} Å (e/Å³)"

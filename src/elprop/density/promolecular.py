"""The promolecular density: a sum of spherically averaged free-atom densities, voxelised fast.

The radial tables (H, C, N, O, F; electrons/Å³ against r in Å) come from ``elprop.density.atoms``: the
B3LYP/6-31G(2df,p) table ships with the package, other levels are computed once and cached. Evaluation is
separable: in the grid's own frame the squared distance from an atom to voxel (i, j, k) is dx_i² + dy_j² + dz_k², so each atom
only touches the sub-box within its cutoff radius (where its density falls below 1e-8 e/Å³), and the radial
table is read by linear interpolation on a uniform grid in √r (dense near the nucleus, where ρ is steep).

By default the sampled field is the density convolved with a Gaussian of σ = 0.6 voxel spacings, computed
exactly from the 1D tables. Point values of a density with nuclear cusps alias badly: at 0.375 Å spacing the
voxel sum of point values misses the electron count by up to 70 %, and by 4 % at 0.2 Å. The smoothed field
integrates to the electron count and keeps the dipole (a symmetric kernel preserves every first moment).
"""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from elprop.core.dataset import SYMBOLS, InputError
from elprop.density.atoms import SHIPPED_LEVEL, table_path
from elprop.density.grid import Grid

_NU = 8192  # points of the √r lookup table
_RHO_FLOOR = 1e-8  # e/Å³; beyond the radius where an element's density is below this, it is dropped
DEFAULT_BLUR = 0.6  # Gaussian smoothing σ in voxel spacings (0: point values at voxel centres)


@lru_cache(maxsize=16)
def atom_tables(xc: str = SHIPPED_LEVEL[0], basis: str = SHIPPED_LEVEL[1], sigma: float = 0.0):
    """(u grid step, {Z: table over u = √r}, {Z: cutoff radius in Å}, meta) at a level of theory, with the
    free-atom densities convolved with a normalised 3D Gaussian of width ``sigma`` (Å) when it is positive."""
    with np.load(table_path(xc, basis)) as f:
        r = f["r"]
        meta = json.loads(str(f["meta"]))
        raw = {int(k[4:]): f[k] for k in f.files if k.startswith("rho_")}
    u = np.linspace(0.0, np.sqrt(r[-1]), _NU)
    tables, cutoffs = {}, {}
    for z, rho in raw.items():
        if sigma > 0:
            rho = _blur_radial(r, rho, sigma)
        above = np.nonzero(rho > _RHO_FLOOR)[0]
        cutoffs[z] = float(r[min(above[-1] + 1, len(r) - 1)]) if len(above) else 0.0
        t = np.interp(u ** 2, r, rho)
        t[-1] = 0.0
        tables[z] = t.astype(np.float32)
    return float(u[1] - u[0]), tables, cutoffs, meta


def _blur_radial(r: np.ndarray, rho: np.ndarray, sigma: float) -> np.ndarray:
    """The radial profile of ρ(|x|) convolved with a normalised 3D Gaussian of width σ:
    (ρ * G)(r) = 1/(σ√(2π) r) ∫ s ρ(s) [exp(−(r−s)²/2σ²) − exp(−(r+s)²/2σ²)] ds, written with expm1 so that
    neither small r nor large rs/σ² loses precision. Charge and all radial moments' normalisation are kept."""
    s = r[None, :]
    rr = np.maximum(r[:, None], 1e-12)
    ker = np.exp(-(rr - s) ** 2 / (2 * sigma ** 2)) * -np.expm1(-2 * rr * s / sigma ** 2) / rr
    out = np.trapezoid(ker * (s * rho[None, :]), r, axis=1) / (sigma * np.sqrt(2 * np.pi))
    return out


def supported_elements() -> list[int]:
    return sorted(atom_tables()[1])


def radial_density(z: int, r: np.ndarray, sigma: float = 0.0, level=SHIPPED_LEVEL) -> np.ndarray:
    """The free-atom density of element ``z`` at radii ``r`` (Å), in e/Å³ (blurred by ``sigma`` Å if > 0)."""
    du, tables, _, _ = atom_tables(*level, round(float(sigma), 6))
    return _lookup(tables[int(z)], np.sqrt(np.asarray(r, dtype=np.float32)), du)


def _lookup(table: np.ndarray, u: np.ndarray, du: float) -> np.ndarray:
    x = u * np.float32(1.0 / du)
    i = np.minimum(x.astype(np.int32), len(table) - 2)
    f = np.minimum(x - i, 1.0)
    return table[i] * (1 - f) + table[i + 1] * f


def promolecular_density(z: np.ndarray, pos: np.ndarray, grid: Grid, blur: float = DEFAULT_BLUR,
                         level=SHIPPED_LEVEL) -> np.ndarray:
    """ρ_pro on ``grid`` as a float32 (n, n, n) array in e/Å³ (positions in Å).

    ``blur`` > 0 convolves the density with a Gaussian of σ = blur × spacing before sampling (an anti-aliasing
    filter: the voxel sum then integrates the electron count accurately, which point values of a cusped
    density do not); ``blur`` = 0 gives point values. ``level`` = (xc, basis) of the free-atom tables."""
    du, tables, cutoffs, _ = atom_tables(*level, round(float(blur) * grid.spacing, 6))
    unknown = sorted({int(a) for a in z} - set(tables))
    if unknown:
        raise InputError("no free-atom density for " + ", ".join(SYMBOLS[a] if a < len(SYMBOLS) else str(a)
                                                                  for a in unknown)
                         + f"; the promolecular kind covers {', '.join(SYMBOLS[a] for a in tables)}")
    n, h = grid.n, grid.spacing
    ax = grid.local_axis().astype(np.float32)
    loc = ((np.asarray(pos, dtype=np.float64) - grid.center) @ np.asarray(grid.axes).T).astype(np.float32)
    out = np.zeros((n, n, n), dtype=np.float32)
    for a, p in zip(np.asarray(z, dtype=int), loc):
        rc = cutoffs[a]
        sl = []
        for d in range(3):  # index range of voxels within the cutoff along each axis
            lo = int(np.ceil((p[d] - rc - ax[0]) / h))
            hi = int(np.floor((p[d] + rc - ax[0]) / h)) + 1
            sl.append(slice(max(lo, 0), min(hi, n)))
        if any(s.start >= s.stop for s in sl):
            continue
        dx2 = (ax[sl[0]] - p[0]) ** 2
        dy2 = (ax[sl[1]] - p[1]) ** 2
        dz2 = (ax[sl[2]] - p[2]) ** 2
        r2 = dx2[:, None, None] + dy2[None, :, None] + dz2[None, None, :]
        out[sl[0], sl[1], sl[2]] += _lookup(tables[a], np.sqrt(np.sqrt(r2)), du)
    return out


def level_of_theory(level=SHIPPED_LEVEL) -> str:
    meta = atom_tables(*level)[3]
    return f"free atoms, UKS {meta['xc']}/{meta['basis']} (PySCF), spherically averaged"

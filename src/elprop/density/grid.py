"""Molecule-centred voxel grids: a cubic box of physical size ``box`` (Å) cut into ``shape``³ voxels.

A grid is the voxel centres ``center + R @ ((i - (n-1)/2) * h)`` for i = 0..n-1 on each axis, with spacing
``h = box / n`` Å and an orthonormal axes matrix ``R`` (identity unless rotated). The box is centred on the
unweighted centroid of the atoms, which rotates with the molecule, so one box size fits a molecule in every
orientation if its half-width exceeds the largest atom-centroid distance plus a margin for the density's tail.

Default: 48³ voxels over an 18 Å box (h = 0.375 Å). The largest atom-centroid distance in QM9 is 7.40 Å
(``CCCC#CC#CC#C``, QM9 index 114701); 18 Å leaves a 1.6 Å margin beyond the farthest nucleus in any
orientation, where a hydrogen's density has dropped to below 0.2 % of its value at 0.5 Å.

Rotating or translating the grid samples the same field in another frame: ``rotated(R)`` and
``translated(t)`` return new grids, which the augmentation of the volumetric models reuses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_SHAPE = 48
DEFAULT_BOX = 18.0  # Å
QM9_MAX_RADIUS = 7.40  # Å, max over QM9 of the largest atom-centroid distance (see module docstring)


@dataclass(frozen=True)
class Grid:
    center: np.ndarray  # (3,) Å
    n: int = DEFAULT_SHAPE
    spacing: float = DEFAULT_BOX / DEFAULT_SHAPE  # Å
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))  # rows: the grid's x, y, z directions

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n, self.n, self.n)

    @property
    def box(self) -> float:
        return self.n * self.spacing

    @property
    def voxel_volume(self) -> float:
        return self.spacing ** 3

    @property
    def origin(self) -> np.ndarray:
        """Position (Å) of voxel (0, 0, 0)."""
        return np.asarray(self.center) + self.local_axis()[0] * np.asarray(self.axes).sum(0)

    def local_axis(self) -> np.ndarray:
        """Voxel-centre offsets along one axis, in Å, relative to the centre."""
        return (np.arange(self.n) - (self.n - 1) / 2.0) * self.spacing

    def points(self, dtype=np.float64) -> np.ndarray:
        """Voxel centres, (n³, 3) in Å, C order (x slowest)."""
        a = self.local_axis()
        loc = np.stack(np.meshgrid(a, a, a, indexing="ij"), -1).reshape(-1, 3)
        return (loc @ np.asarray(self.axes) + np.asarray(self.center)).astype(dtype)

    def rotated(self, rot: np.ndarray) -> "Grid":
        """The same grid turned by rotation matrix ``rot`` about its centre."""
        return Grid(np.asarray(self.center), self.n, self.spacing, np.asarray(self.axes) @ np.asarray(rot).T)

    def translated(self, shift) -> "Grid":
        return Grid(np.asarray(self.center) + np.asarray(shift, dtype=float), self.n, self.spacing,
                    np.asarray(self.axes))

    def fits(self, pos: np.ndarray, margin: float = 0.0) -> bool:
        """Whether every atom lies inside the box at least ``margin`` Å from its faces."""
        loc = (np.asarray(pos) - np.asarray(self.center)) @ np.asarray(self.axes).T
        return bool(np.all(np.abs(loc) <= self.box / 2 - margin))


def molecule_grid(pos: np.ndarray, n: int = DEFAULT_SHAPE, box: float = DEFAULT_BOX, rotation=None,
                  shift=None) -> Grid:
    """A grid centred on the centroid of ``pos`` (Å), optionally rotated and shifted (Å)."""
    g = Grid(np.asarray(pos, dtype=np.float64).mean(0), int(n), float(box) / int(n))
    if rotation is not None:
        g = g.rotated(rotation)
    if shift is not None:
        g = g.translated(shift)
    return g


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (a normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def integrate(values: np.ndarray, grid: Grid) -> float:
    """∫ f dV over the box by the voxel sum (values in units per Å³ give a count)."""
    return float(np.asarray(values, dtype=np.float64).sum() * grid.voxel_volume)

"""Gaussian cube files (VMD, Avogadro, ASE, PySCF's cubegen read them): write and read a grid with its atoms.

Cube files are in atomic units: positions and voxel vectors in bohr, densities in electrons/bohr³; elprop's
grids are in Å and e/Å³, converted here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from elprop.core.cache import atomic_write
from elprop.core.units import BOHR
from elprop.density.grid import Grid



def write_cube(path, values: np.ndarray, grid: Grid, z, pos, comment: str = "elprop density",
               density: bool = True):
    """Write ``values`` (n³, in e/Å³ if ``density``, otherwise as they are) on ``grid`` with atoms (Å)."""
    v = np.asarray(values, dtype=np.float64).reshape(grid.shape)
    if density:
        v = v * BOHR ** 3  # e/Å³ -> e/bohr³
    axes = np.asarray(grid.axes) * grid.spacing / BOHR
    lines = [comment.replace("\n", " ")[:200],
             "values in e/bohr^3; written by elprop" if density else "written by elprop",
             f"{len(z):5d} " + " ".join(f"{c:12.6f}" for c in np.asarray(grid.origin) / BOHR)]
    for k in range(3):
        lines.append(f"{grid.n:5d} " + " ".join(f"{c:12.6f}" for c in axes[k]))
    for a, p in zip(z, np.asarray(pos) / BOHR):
        lines.append(f"{int(a):5d} {float(a):12.6f} " + " ".join(f"{c:12.6f}" for c in p))

    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write("\n".join(lines) + "\n")
            flat = v.reshape(-1, grid.n)  # z fastest, wrapped every 6 values within each (x, y) row
            for row in flat:
                for s in range(0, len(row), 6):
                    fh.write(" ".join(f"{x:13.5e}" for x in row[s:s + 6]) + "\n")
    atomic_write(path, write)
    return Path(path)


def read_cube(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(values [nx, ny, nz] as stored, origin (Å), axes (3x3, Å per voxel), z, pos (Å))."""
    with open(path) as fh:
        fh.readline()
        fh.readline()
        head = fh.readline().split()
        nat, origin = abs(int(head[0])), np.array([float(x) for x in head[1:4]]) * BOHR
        shape, axes = [], []
        for _ in range(3):
            parts = fh.readline().split()
            shape.append(int(parts[0]))
            axes.append([float(x) * BOHR for x in parts[1:4]])
        z, pos = [], []
        for _ in range(nat):
            parts = fh.readline().split()
            z.append(int(parts[0]))
            pos.append([float(x) * BOHR for x in parts[2:5]])
        vals = np.array(fh.read().split(), dtype=np.float64).reshape(shape)
    return vals, origin, np.array(axes), np.array(z), np.array(pos)

"""The expensive part of a DFT density store, kept compact enough to commit and rebuilt from in minutes.

A DFT record costs an SCF (tens of seconds per QM9 molecule); its grid is cheap to evaluate again from the
converged orbitals (well under a second). ``elprop density generate --kind dft --scf-archive DIR`` writes every
converged SCF into DIR, and a later run (a fresh store, another grid, another machine) takes the SCF from DIR
instead of running it again.

Layout::

    DIR/<settings key>/settings.json   the DFT settings (functional, basis, density fitting, grid, charge, spin)
    DIR/<settings key>/<geometry key>.npz
        z [A], pos [A, 3] (Å)         the geometry the SCF ran at
        c [nao, k] float32            occupied MO coefficients (RKS: the doubly occupied ones; UKS: α then β)
        w [k] float32                 their occupations (2, or 1 for each spin)
        basis                         the basis the SCF converged in (a fallback basis when one was needed)
        energy_eV, homo_eV, lumo_eV, dipole_D [3], attempt, n_cycles, wall_s, log (JSON), smiles

The density matrix is ``(c * w) @ c.T``. Occupied orbitals take about 2.5× less space than the packed lower
triangle of the density matrix (QM9 in def2-SVP: a mean 169 × 33 numbers against 14,500, about 21 kB compressed).
The settings key is a hash of the settings, and the geometry key a hash of the atomic numbers and the
coordinates rounded to 1e-5 Å, so the same molecule at the same level is found whatever store asks for it.
Files are written to a temporary name and renamed, so a kill never leaves a half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

SCALARS = ("energy_eV", "homo_eV", "lumo_eV", "attempt", "n_cycles", "wall_s")


def settings_key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def geometry_key(z, pos) -> str:
    z = np.asarray(z, dtype=np.int64)
    pos = np.round(np.asarray(pos, dtype=np.float64), 5) + 0.0  # + 0.0 turns -0.0 into 0.0
    return hashlib.sha1(z.tobytes() + pos.tobytes()).hexdigest()[:20]


def occupied_orbitals(mo_coeff, mo_occ) -> tuple[np.ndarray, np.ndarray]:
    """(c [nao, k], w [k]) of the occupied orbitals of an RKS (2-D ``mo_coeff``) or UKS (3-D) solution."""
    mo_coeff, mo_occ = np.asarray(mo_coeff), np.asarray(mo_occ)
    if mo_coeff.ndim == 2:
        mo_coeff, mo_occ = mo_coeff[None], mo_occ[None]
    cs, ws = [], []
    for c, occ in zip(mo_coeff, mo_occ):
        keep = occ > 0
        cs.append(c[:, keep])
        ws.append(occ[keep])
    return np.concatenate(cs, axis=1), np.concatenate(ws)


def density_matrix(c: np.ndarray, w: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return (c * np.asarray(w, dtype=np.float64)) @ c.T


class SCFArchive:
    """One folder of converged SCF results at one level of theory (``settings``: ``DFTSettings`` as a dict)."""

    def __init__(self, root, settings: dict):
        self.root = Path(root)
        self.settings = dict(settings)
        self.dir = self.root / settings_key(self.settings)
        self._known = None

    def _ensure(self):
        if not (self.dir / "settings.json").is_file():
            self.dir.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(self.dir / "settings.json", json.dumps(self.settings, indent=1, sort_keys=True) + "\n")

    def keys(self) -> set[str]:
        if self._known is None:
            self._known = {p.stem for p in self.dir.glob("*.npz")} if self.dir.is_dir() else set()
        return self._known

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, zpos) -> bool:
        return geometry_key(*zpos) in self.keys()

    def get(self, z, pos) -> dict | None:
        """The archived result for this geometry (a dict like ``run_scf``'s, with ``dm``), or None."""
        key = geometry_key(z, pos)
        if key not in self.keys():
            return None
        try:
            with np.load(self.dir / f"{key}.npz", allow_pickle=False) as f:
                if not np.array_equal(f["z"], np.asarray(z)) or \
                        not np.allclose(f["pos"], np.asarray(pos, dtype=np.float64), atol=2e-5):
                    return None  # a hash collision, however unlikely, is never taken for the same molecule
                out = {k: f[k].item() for k in SCALARS}
                out.update(ok=True, basis=str(f["basis"]), dipole_D=f["dipole_D"].astype(np.float64),
                           dm=density_matrix(f["c"], f["w"]), log=json.loads(str(f["log"])))
        except (OSError, ValueError, KeyError):  # an unreadable entry is recomputed, not trusted
            return None
        out["attempt"], out["n_cycles"] = int(out["attempt"]), int(out["n_cycles"])
        return out

    def put(self, z, pos, result: dict, smiles: str = "") -> Path:
        """Archive one converged SCF (a result with ``orbitals`` = (c, w), as ``run_scf`` returns)."""
        self._ensure()
        c, w = result["orbitals"]
        key = geometry_key(z, pos)
        path = self.dir / f"{key}.npz"
        tmp = self.dir / f".{key}.{os.getpid()}.tmp.npz"
        np.savez_compressed(tmp, z=np.asarray(z, dtype=np.int64), pos=np.asarray(pos, dtype=np.float64),
                            c=np.asarray(c, dtype=np.float32), w=np.asarray(w, dtype=np.float32),
                            basis=np.str_(result["basis"]), dipole_D=np.asarray(result["dipole_D"], dtype=np.float64),
                            log=np.str_(json.dumps(result.get("log", []), default=float)), smiles=np.str_(smiles),
                            **{k: np.asarray(result[k]) for k in SCALARS})
        os.replace(tmp, path)
        self.keys().add(key)
        return path

    def stored_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("*.npz")) if self.dir.is_dir() else 0


def _atomic_write_text(path: Path, text: str):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

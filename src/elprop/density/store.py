"""The volumetric store: a Zarr (v3) group with one record per molecule and one sub-group per density kind.

Layout of ``store.zarr``::

    attrs            grid (shape n, box, spacing, blur), source, targets and their units, elprop version
    source_index [N] the molecule's index in the source data set (QM9 index for the embedded default)
    smiles [N], n_atoms [N], z [N, A], pos [N, A, 3] (Å)
    center [N, 3], origin [N, 3] (Å, voxel (0,0,0)), spacing [N] (Å)
    targets/<name> [N]  labels of the source, in elprop units (eV, D, bohr³ ...)
    <kind>/          kind = promolecular | potential | dft, attrs: level of theory and parameters
        density [N, n, n, n]   chunk = one record, Blosc zstd + bit shuffle, float16 or float32
        status  [N]            0 pending, 1 done, 2 failed; written last, so a record counts only when complete
    dft/             also energy_eV, homo_eV, lumo_eV, dipole_D [N, 3], converged, attempt, n_cycles, wall_s,
                     electrons (the grid integral), nao, dm_start, dm (the packed lower triangles of the AO
                     density matrices, float32, one after another), and failures.jsonl / attempts.jsonl

One process writes (the generation driver; workers only compute), guarded by a lock file. Zarr's local store
writes each chunk to a temporary file and renames it, and ``status`` is set only after everything else of the
record is written, so a process killed at any point leaves no half-written record that counts as done.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np

from elprop.core.dataset import InputError
from elprop.density.grid import Grid

KINDS = ("promolecular", "potential", "dft", "hk")  # hk: densities predicted by a trained HK map
PENDING, DONE, FAILED = 0, 1, 2
DFT_SCALARS = {"energy_eV": "float64", "homo_eV": "float64", "lumo_eV": "float64", "converged": "bool",
               "attempt": "int8", "n_cycles": "int16", "wall_s": "float32", "electrons": "float64", "nao": "int32",
               "dm_start": "int64"}
_META_CHUNK = 4096


def _compressor(level: int = 5):
    from zarr.codecs import BloscCodec, BloscShuffle
    return BloscCodec(cname="zstd", clevel=level, shuffle=BloscShuffle.bitshuffle)


class DensityStore:
    """Open an existing store (``mode='r'`` to read, ``'r+'`` to write records)."""

    def __init__(self, path, mode: str = "r"):
        import zarr
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise InputError(f"{path}: not a density store (no zarr.json); create one with `elprop density generate`")
        try:
            self.root = zarr.open_group(str(self.path), mode=mode)
        except Exception as e:  # a malformed zarr.json
            raise InputError(f"{path}: cannot open the density store ({type(e).__name__}: {e})") from None
        if "elprop_store" not in self.root.attrs:
            raise InputError(f"{path}: a Zarr group, but not an elprop density store")
        self.attrs = dict(self.root.attrs)
        self._lock = None
        self._cache = {}

    # --- creation ------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path, ds, indices, n: int, box: float, blur: float, source: str = "") -> "DensityStore":
        """A new store for molecules ``indices`` of Dataset ``ds`` on n³ grids of ``box`` Å."""
        import zarr

        from elprop import __version__
        from elprop.core.units import unit
        from elprop.density.grid import molecule_grid
        indices = np.asarray(indices, dtype=np.int64)
        N = len(indices)
        if N == 0:
            raise InputError("the subset is empty: nothing to store")
        if ds.pos is None:
            raise InputError(f"{ds.source}: densities need 3D coordinates, and this data has none")
        n_atoms = ds.n_atoms[indices]
        A = int(n_atoms.max())
        z = np.zeros((N, A), np.int8)
        pos = np.zeros((N, A, 3), np.float32)
        center = np.zeros((N, 3))
        origin = np.zeros((N, 3))
        for k, i in enumerate(indices):
            m = ds[int(i)]
            z[k, :len(m.z)] = m.z
            pos[k, :len(m.z)] = m.pos
            g = molecule_grid(m.pos, n, box)
            center[k], origin[k] = g.center, g.origin
        root = zarr.open_group(str(path), mode="w-")
        chunk = (min(N, _META_CHUNK),)

        def arr(name, data, dtype=None):
            data = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype)
            a = root.create_array(name, shape=data.shape, chunks=chunk + data.shape[1:], dtype=data.dtype)
            a[...] = data
        arr("source_index", indices)
        arr("n_atoms", n_atoms, "int16")
        arr("z", z)
        arr("pos", pos)
        arr("center", center)
        arr("origin", origin)
        arr("spacing", np.full(N, box / n))
        a = root.create_array("smiles", shape=(N,), chunks=chunk, dtype=str)
        a[...] = np.asarray([str(s) for s in ds.smiles[indices]], dtype=object)
        units = {}
        for t in ds.target_names:
            arr(f"targets/{t}", ds.target(t)[indices], "float64")
            try:
                units[t] = unit(t)
            except Exception:
                units[t] = ""
        root.attrs.update({"elprop_store": 1, "elprop_version": __version__,
                           "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "grid": {"shape": int(n), "box_A": float(box), "spacing_A": float(box) / n,
                                    "blur_voxels": float(blur)},
                           "source": source or ds.source, "n_records": N, "targets": units})
        return cls(path, mode="r+")

    # --- facts -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.attrs["n_records"])

    @property
    def grid_params(self) -> dict:
        return self.attrs["grid"]

    def _array(self, name):
        if name not in self._cache:
            self._cache[name] = self.root[name]
        return self._cache[name]

    @property
    def kinds(self) -> list[str]:
        return [k for k in KINDS if k in self.root and "status" in self.root[k]]

    def kind_attrs(self, kind: str) -> dict:
        return dict(self.root[kind].attrs)

    def grid(self, i: int) -> Grid:
        gp = self.grid_params
        return Grid(np.asarray(self._array("center")[i]), int(gp["shape"]), float(gp["spacing_A"]))

    def atoms(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        na = int(self._array("n_atoms")[i])
        return self._array("z")[i, :na].astype(np.int64), self._array("pos")[i, :na].astype(np.float64)

    def source_index(self) -> np.ndarray:
        return self._array("source_index")[:]

    def status(self, kind: str) -> np.ndarray:
        if kind not in self.kinds:
            return np.zeros(len(self), np.int8)
        return self.root[kind]["status"][:]

    def targets(self) -> dict[str, np.ndarray]:
        if "targets" not in self.root:
            return {}
        return {k: self.root["targets"][k][:] for k in self.root["targets"].array_keys()}

    # --- writing -----------------------------------------------------------------------------------------
    def lock(self):
        """Take the writer lock (one writing process per store); InputError if another process holds it."""
        fh = open(self.path / ".writer.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise InputError(f"{self.path}: another process is writing this store; wait for it or stop it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock = fh
        return self

    def unlock(self):
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def ensure_kind(self, kind: str, params: dict, dtype: str = "float16"):
        """Create the group of ``kind`` or check that an existing one was made with the same ``params``."""
        if kind not in KINDS:
            raise InputError(f"unknown density kind {kind!r}; known: {', '.join(KINDS)}")
        if dtype not in ("float16", "float32"):
            raise InputError(f"--dtype must be float16 or float32, not {dtype!r}")
        params = json.loads(json.dumps(params))  # normalised as it will be stored
        if kind in self.root:
            g = self.root[kind]
            old = g.attrs.get("params")
            if old != params or g.attrs.get("dtype") != dtype:
                raise InputError(f"{self.path}: kind {kind!r} exists with other settings "
                                 f"({old}, {g.attrs.get('dtype')}); "
                                 f"use a new store or the same settings ({params}, {dtype})")
            return g
        N, n = len(self), int(self.grid_params["shape"])
        g = self.root.create_group(kind)
        g.create_array("density", shape=(N, n, n, n), chunks=(1, n, n, n), dtype=dtype, compressors=_compressor(),
                       fill_value=0)
        chunk = (min(N, _META_CHUNK),)
        if kind == "dft":
            for name, dt in DFT_SCALARS.items():
                g.create_array(name, shape=(N,), chunks=chunk, dtype=dt, fill_value=-1 if dt.startswith("int") else 0)
            g.create_array("dipole_D", shape=(N, 3), chunks=chunk + (3,), dtype="float64", fill_value=0)
            g.create_array("dm", shape=(0,), chunks=(1 << 20,), dtype="float32", compressors=_compressor(3),
                           fill_value=0)
        g.attrs.update({"params": params, "dtype": dtype})
        # last: its presence marks the kind as ready
        g.create_array("status", shape=(N,), chunks=chunk, dtype="int8", fill_value=PENDING)
        self._cache.clear()
        return g

    def write_record(self, kind: str, i: int, result: dict):
        """Write record ``i`` of ``kind`` from a worker result; ``status`` goes last."""
        g = self.root[kind]
        if result.get("ok"):
            g["density"][i] = result["density"]
            _fault_injection(i)
            if kind == "dft":
                packed = result["dm_packed"]
                dm = g["dm"]
                start = dm.shape[0]
                dm.resize((start + len(packed),))
                dm[start:start + len(packed)] = packed
                for name in DFT_SCALARS:
                    if name == "dm_start":
                        g[name][i] = start
                    elif name in result:
                        g[name][i] = result[name]
                g["dipole_D"][i] = result["dipole_D"]
            if len(result.get("log", [])) > 1:
                self._append_jsonl(kind, "attempts.jsonl", {"record": int(i), "attempts": result["log"]})
            g["status"][i] = DONE
        else:
            self._append_jsonl(kind, "failures.jsonl", {"record": int(i), "attempts": result.get("log", []),
                                                         "error": result.get("error", "")})
            g["status"][i] = FAILED

    def write_records(self, kind: str, recs, results: list[dict]):
        """Write several records at once (densities of a contiguous run in one call, then their status in one
        call); results that failed or carry DFT extras go through ``write_record``."""
        recs = np.asarray(recs, dtype=np.int64)
        simple = kind != "dft" and all(r.get("ok") for r in results) and len(recs) > 1 \
            and np.all(np.diff(recs) == 1)
        if not simple:
            for i, r in zip(recs, results):
                self.write_record(kind, int(i), r)
            return
        g = self.root[kind]
        if self._fast_layout(kind):
            for i, r in zip(recs, results):
                self._write_one(kind, int(i), r["density"])
        else:
            g["density"][recs[0]:recs[-1] + 1] = np.stack([r["density"] for r in results])
        for i in recs:
            _fault_injection(i)
        g["status"][recs[0]:recs[-1] + 1] = DONE

    def _write_one(self, kind: str, i: int, density) -> None:
        """Write record ``i``'s grid as its chunk file directly: the Blosc codec of the array's metadata over the
        little-endian bytes, atomically (temp file + rename). This is what Zarr writes for one-record chunks, at
        a fifth of the cost of its per-call machinery; only used where ``_fast_layout`` holds."""
        from numcodecs import Blosc
        arr = self._array(f"{kind}/density")
        cfg = self._cache[("blosc", kind)]
        data = np.ascontiguousarray(np.asarray(density).astype("<" + np.dtype(arr.dtype).str[1:], copy=False))
        if data.shape != tuple(arr.shape[1:]):
            raise ValueError(f"record {i}: grid of shape {data.shape}, the store holds {tuple(arr.shape[1:])}")
        codec = Blosc(cname=cfg["cname"], clevel=int(cfg["clevel"]), blocksize=int(cfg.get("blocksize", 0)),
                      shuffle={"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE,
                               "bitshuffle": Blosc.BITSHUFFLE}[cfg["shuffle"]])
        path = self.path / kind / "density" / "c" / str(i) / "0" / "0" / "0"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".0.{os.getpid()}.part")
        tmp.write_bytes(codec.encode(data))
        os.replace(tmp, path)

    def _fast_layout(self, kind: str) -> bool:
        """Whether ``kind``'s density chunks are one record each, little-endian bytes then Blosc, under default
        '/'-separated keys: the layout this store creates, which its fast read and write paths handle directly."""
        fast = self._cache.get(("fast", kind))
        if fast is None:
            arr = self._array(f"{kind}/density")
            meta = json.loads((self.path / kind / "density" / "zarr.json").read_text())
            codecs = meta.get("codecs", [])
            fast = ([c["name"] for c in codecs] == ["bytes", "blosc"]
                    and codecs[0].get("configuration", {}).get("endian") == "little"
                    and codecs[1].get("configuration", {}).get("shuffle") in ("noshuffle", "shuffle", "bitshuffle")
                    and meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
                    and tuple(meta["chunk_grid"]["configuration"]["chunk_shape"]) == (1,) + tuple(arr.shape[1:]))
            self._cache[("fast", kind)] = fast
            if fast:
                self._cache[("blosc", kind)] = codecs[1]["configuration"]
        return fast

    def _append_jsonl(self, kind, name, row):
        with open(self.path / kind / name, "a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")

    def failures(self, kind: str) -> list[dict]:
        """The latest failure entry of every record whose status is failed."""
        p = self.path / kind / "failures.jsonl"
        if not p.exists():
            return []
        st = self.status(kind)
        rows = {}
        for line in p.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:  # a line cut by a kill
                continue
            rows[r["record"]] = r
        return [r for k, r in sorted(rows.items()) if st[k] == FAILED]

    # --- reading -----------------------------------------------------------------------------------------
    def read(self, i: int, kinds=("dft",)) -> np.ndarray:
        """Record ``i`` as float32 [len(kinds), n, n, n]."""
        return np.stack([self._read_one(k, int(i)) for k in kinds]).astype(np.float32)

    def _read_one(self, kind: str, i: int) -> np.ndarray:
        """One record's grid. Fast path (``_fast_layout``): the chunk file is Blosc-compressed little-endian bytes,
        so decode it directly and skip Zarr's per-call machinery, which costs more than the decompression;
        anything else goes through Zarr."""
        arr = self._array(f"{kind}/density")
        if self._fast_layout(kind):
            p = self.path / kind / "density" / "c" / str(i) / "0" / "0" / "0"
            try:
                buf = p.read_bytes()
            except FileNotFoundError:  # never written: the fill value
                return np.zeros(arr.shape[1:], dtype=arr.dtype)
            from numcodecs import Blosc
            return np.frombuffer(Blosc().decode(buf), dtype="<" + np.dtype(arr.dtype).str[1:]).reshape(arr.shape[1:])
        return arr[i]

    def density_matrix(self, i: int) -> tuple[np.ndarray, str]:
        """(AO density matrix, basis) of DFT record ``i``: evaluate it anywhere with ``dft.density_at``."""
        from elprop.density.dft import unpack_dm
        g = self.root["dft"]
        if g["status"][i] != DONE:
            raise InputError(f"record {i} has no DFT result (status {int(g['status'][i])})")
        nao, start = int(g["nao"][i]), int(g["dm_start"][i])
        packed = g["dm"][start:start + nao * (nao + 1) // 2]
        attempt = int(g["attempt"][i])
        attempts = g.attrs["attempts"]
        basis = attempts[attempt].get("basis", g.attrs["params"]["settings"]["basis"])
        return unpack_dm(packed, nao), basis

    def done(self, kinds) -> np.ndarray:
        """Indices of the records finished in every one of ``kinds``."""
        ok = np.ones(len(self), bool)
        for k in kinds:
            ok &= self.status(k) == DONE
        return np.nonzero(ok)[0]

    def torch_dataset(self, kinds=("dft",), targets=(), indices=None):
        return VolumeDataset(self.path, kinds, targets, indices)

    def stored_bytes(self, kind: str) -> int:
        d = self.path / kind / "density"
        return sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and f.name != "zarr.json")


def _fault_injection(i):
    """Tests set ELPROP_KILL_AT_RECORD=i to SIGKILL the writer after record i's density is written and before its
    status is, the worst moment for a kill."""
    at = os.environ.get("ELPROP_KILL_AT_RECORD")
    if at is not None and int(at) == int(i):
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


def open_store(store, mode: str = "r") -> "DensityStore":
    """A :class:`DensityStore` from a path, or the store itself when it is one already (opened once, passed
    along as an object)."""
    return store if isinstance(store, DensityStore) else DensityStore(store, mode=mode)


class VolumeDataset:
    """A PyTorch map-style dataset over a density store: item k is (float32 tensor [C, n, n, n], float32 tensor
    [T] of targets, NaN where missing). Records default to those finished in every kind. Safe with DataLoader
    worker processes: each opens the store on first access."""

    def __init__(self, path, kinds=("dft",), targets=(), indices=None):
        self.path, self.kinds, self.target_names = Path(path), list(kinds), list(targets)
        st = DensityStore(self.path)
        missing = [k for k in self.kinds if k not in st.kinds]
        if missing:
            raise InputError(f"{path}: no {', '.join(missing)} densities; it has {', '.join(st.kinds) or 'none'}")
        self.indices = st.done(self.kinds) if indices is None else np.asarray(indices, dtype=np.int64)
        tg = st.targets()
        for t in self.target_names:
            if t not in tg:
                raise InputError(f"{path}: no target {t!r}; it has {', '.join(tg) or 'none'}")
        self.y = np.column_stack([tg[t] for t in self.target_names]).astype(np.float32) if self.target_names \
            else np.zeros((len(st), 0), np.float32)
        self._store = None

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        import torch
        if self._store is None:
            self._store = DensityStore(self.path)
        i = int(self.indices[k])
        return torch.from_numpy(self._store.read(i, self.kinds)), torch.from_numpy(self.y[i])

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_store"] = None
        return d

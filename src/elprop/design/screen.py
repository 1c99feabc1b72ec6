"""Screening a library by an objective: chunked, Dask-parallel, resumable, with flat memory.

The library is read lazily in chunks of ``chunk`` molecules (chunk i is always the same rows, so a rerun knows
what is done). Each chunk is predicted and scored on a worker, which loads the model once; the driver writes
``parts/part-NNNNNN.parquet`` (or .csv) atomically as results arrive and keeps a running top list. Nothing holds
more than a window of chunks in memory, however large the library.
"""
from __future__ import annotations

import heapq
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from elprop.core.cache import atomic_write
from elprop.core.dataset import InputError

_MODELS: dict = {}  # one loaded model per worker process


def iter_library(path, chunk: int):
    """(chunk index, list of (row, SMILES)) over a .smi/.txt (first token per line) or .csv (its smiles
    column) file, without reading the whole file."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        row = 0
        for i, df in enumerate(pd.read_csv(p, chunksize=chunk)):
            col = next((c for c in df.columns if str(c).lower() == "smiles"), None)
            if col is None:
                raise InputError(f"{p}: no 'smiles' column")
            smi = df[col].astype(str).tolist()
            yield i, list(zip(range(row, row + len(smi)), smi))
            row += len(smi)
        return
    buf, row, i = [], 0, 0
    with open(p) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            buf.append((row, s.split()[0]))
            row += 1
            if len(buf) == chunk:
                yield i, buf
                buf, i = [], i + 1
    if buf:
        yield i, buf


def check_library(path) -> None:
    """Exit-2 problems found before any work: a missing or empty file, or no parsable molecule among its first
    1,000 entries."""
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog("rdApp.*")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    first = next(iter_library(p, 1000), None)
    if first is None:
        raise InputError(f"{p}: the library is empty")
    if not any(Chem.MolFromSmiles(s) is not None for _, s in first[1]):
        raise InputError(f"{p}: none of its first {len(first[1])} entries is a valid SMILES")


def score_chunk(i: int, rows: list, model_dir: str, goal_spec: dict, threads: int = 1) -> tuple[int, pd.DataFrame]:
    """Predict and score one chunk (runs on a worker): one row per input molecule; an unparsable SMILES gets
    NaN predictions, score -inf and its error."""
    import torch
    from rdkit import Chem, RDLogger

    from elprop.design.objective import make_goal
    from elprop.train.saved import load_model
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(threads)
    if model_dir not in _MODELS:
        _MODELS.clear()
        _MODELS[model_dir] = load_model(model_dir)
    model = _MODELS[model_dir]
    units = {t.name: t.unit for t in model.specs}
    goal = make_goal(goal_spec["objectives"], goal_spec["constraints"], units, weights=goal_spec.get("weights"),
                     combine=goal_spec["combine"], acquisition=goal_spec["acquisition"], kappa=goal_spec["kappa"])
    idx = np.array([r for r, _ in rows], dtype=np.int64)
    smiles = [s for _, s in rows]
    ok = np.array([Chem.MolFromSmiles(s) is not None for s in smiles])
    df = pd.DataFrame({"row": idx, "smiles": smiles})
    for t in goal.targets:
        df[f"{t}_pred"] = np.nan
        df[f"{t}_std"] = np.nan
    df["warning"] = ""
    df["score"] = -np.inf
    df["error"] = np.where(ok, "", "invalid SMILES")
    sel_all = np.flatnonzero(ok)
    for a in range(0, len(sel_all), 2000):  # slices small enough to featurize without a progress bar of their own
        sel = sel_all[a:a + 2000]
        pred = model.predict([smiles[j] for j in sel])
        mean, std = {}, {}
        for t in goal.targets:
            k = model.config["targets"].index(t)
            mean[t], std[t] = pred.mean[:, k], pred.std[:, k]
            df.loc[sel, f"{t}_pred"] = mean[t]
            df.loc[sel, f"{t}_std"] = std[t]
        df.loc[sel, "warning"] = list(pred.flags)
        sc = goal.scores(mean, std)
        df.loc[sel, "score"] = np.where(np.isfinite(pred.mean).all(axis=1), sc, -np.inf)
        for j, e in (pred.errors or {}).items():
            df.loc[sel[int(j)], "error"] = str(e)
    return i, df


def screen(library, goal, model_dir, out, *, chunk: int = 5000, workers: int = 2, scheduler: str | None = None,
           fmt: str = "parquet", top: int = 100, threads: int = 1, progress: bool = True, log=print) -> dict:
    """Score every molecule of ``library`` into ``out/parts``; ``out/top.csv`` holds the best ``top``."""
    out = Path(out)
    check_library(library)
    if chunk < 1 or top < 1:
        raise InputError("--chunk and --top must be at least 1")
    if fmt not in ("parquet", "csv"):
        raise InputError(f"--format {fmt!r}: parquet or csv")
    goal_spec = {k: v for k, v in goal.to_dict().items() if k in ("objectives", "constraints", "weights", "combine",
                                                                   "acquisition", "kappa")}
    config = {"library": str(Path(library).resolve()), "model": str(model_dir), "goal": goal_spec,
              "chunk": chunk, "format": fmt}
    cpath = out / "config.json"
    if cpath.exists():
        old = json.loads(cpath.read_text())
        diff = [k for k in config if old.get(k) != json.loads(json.dumps(config[k]))]
        if diff:
            raise InputError(f"{out} holds a screen with other settings ({', '.join(diff)} differ); use a new "
                             "--out, or the same options to resume")
    (out / "parts").mkdir(parents=True, exist_ok=True)
    atomic_write(cpath, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=1)))

    def part(i):
        return out / "parts" / f"part-{i:06d}.{fmt}"
    heap: list = []  # (score, row, smiles): the running top list
    done = 0
    for p in sorted((out / "parts").glob(f"part-*.{fmt}")):  # what an earlier run finished
        _push(heap, _read(p, fmt), top)
        done += 1
    todo = (c for c in iter_library(library, chunk) if not part(c[0]).exists())
    stats = {"molecules": 0, "chunks": 0}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(desc="screening", unit="mol", mininterval=1.0)
    t0 = time.time()

    def write(res):
        i, df = res
        if fmt == "parquet":
            atomic_write(part(i), lambda tmp: df.to_parquet(tmp, index=False))
        else:
            atomic_write(part(i), lambda tmp: df.to_csv(tmp, index=False))
        _push(heap, df, top)
        stats["molecules"] += len(df)
        stats["chunks"] += 1
        if bar is not None:
            bar.update(len(df))
    try:
        if workers == 0 and scheduler is None:
            for i, rows in todo:
                write(score_chunk(i, rows, str(model_dir), goal_spec, threads))
        else:
            from elprop.core.parallel import run_dask
            run_dask(score_chunk, todo, lambda c: (c[0], c[1], str(model_dir), goal_spec, threads), write,
                     workers, scheduler, threads, log)
    finally:
        if bar is not None:
            bar.close()
        best = sorted(heap, reverse=True)
        tab = pd.DataFrame([r[2] for r in best])
        if len(tab):
            atomic_write(out / "top.csv", lambda tmp: tab.to_csv(tmp, index=False))
    wall = time.time() - t0
    summary = {"chunks_done_before": done, "chunks_now": stats["chunks"], "molecules_now": stats["molecules"],
               "wall_s": round(wall, 2), "molecules_per_s": round(stats["molecules"] / wall, 1) if wall > 0 else None,
               "workers": workers if scheduler is None else scheduler, "top": str(out / "top.csv")}
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    return summary


def _read(p: Path, fmt: str) -> pd.DataFrame:
    return pd.read_parquet(p) if fmt == "parquet" else pd.read_csv(p, keep_default_na=False, na_values=[""])


def _push(heap: list, df: pd.DataFrame, top: int) -> None:
    """Keep the ``top`` best rows (by score) of everything pushed so far."""
    s = df["score"].to_numpy(dtype=float)
    if not len(s):
        return
    keep = np.argsort(-s)[:top]
    for j in keep:
        if not np.isfinite(s[j]):
            continue
        item = (float(s[j]), int(df["row"].iat[j]), df.iloc[j].to_dict())
        if len(heap) < top:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)

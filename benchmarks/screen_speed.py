"""Throughput and memory of `elprop screen`: molecules/s at 1 and 2 Dask workers, and the driver's peak memory
as the library grows.

    python benchmarks/screen_speed.py [--n 20000] [--chunk 5000] [--model shipped] [--out benchmarks/out/screen]

The library is N QM9 SMILES (a seeded draw; repeated if N exceeds QM9). Each configuration screens it into a
fresh folder in a child process, timed from start to exit (model loading and Dask start-up included). Peak
memory (max RSS) is measured for the in-process run (--workers 0) on libraries of N/4, N/2 and N molecules:
flat memory means it does not grow with N. Writes screen_speed.json and .md into --out; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run(lib: Path, out: Path, workers: int, chunk: int, model: str) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-c", "import resource, sys\nfrom elprop.cli.main import main\nrc = main(sys.argv[1:])\n"
           "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)",
           "screen", str(lib), "--objective", "gap=3.0:3.5", "--model", model, "--out", str(out), "--workers",
           str(workers), "--chunk", str(chunk), "--no-progress"]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    rss = next(int(x.split()[1]) for x in r.stderr.splitlines() if x.startswith("MAXRSS_KB"))
    n = sum(1 for _ in open(lib))
    s = json.loads((out / "summary.json").read_text())
    return {"workers": workers, "molecules": n, "wall_s": round(wall, 1), "molecules_per_s": round(n / wall, 1),
            "screen_molecules_per_s": s["molecules_per_s"], "driver_max_rss_mb": round(rss / 1024, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--chunk", type=int, default=5000)
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/screen"))
    a = ap.parse_args()
    from elprop.data.load import DataSpec, load_data
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    qm9 = load_data(DataSpec("qm9"))
    idx = np.random.default_rng(0).choice(len(qm9), a.n, replace=a.n > len(qm9))
    libs = {}
    for n in (a.n // 4, a.n // 2, a.n):
        libs[n] = out / f"library-{n}.smi"
        libs[n].write_text("".join(f"{qm9.smiles[i]}\n" for i in idx[:n]))
    res = {"n": a.n, "chunk": a.chunk, "model": a.model, "speed": [], "memory": []}
    for w in (1, 2):
        res["speed"].append(run(libs[a.n], out / f"w{w}", w, a.chunk, a.model))
    for n in sorted(libs):
        res["memory"].append(run(libs[n], out / f"mem{n}", 0, a.chunk, a.model))
    (out / "screen_speed.json").write_text(json.dumps(res, indent=1))
    lines = ["| workers | molecules | wall s (start to exit) | molecules/s (wall) | molecules/s (screening only) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['molecules']} | {r['wall_s']} | {r['molecules_per_s']} | "
              f"{r['screen_molecules_per_s']} |" for r in res["speed"]]
    lines += ["", "| library (in process) | driver peak memory [MB] | molecules/s |", "|---|---|---|"]
    lines += [f"| {r['molecules']} | {r['driver_max_rss_mb']} | {r['molecules_per_s']} |" for r in res["memory"]]
    (out / "screen_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Learning curves: the 3D CNN on promolecular grids against the graph model and SchNet, at several training sizes.

    python benchmarks/volumetric_curves.py [--sizes 1000,5000,20000] [--budgets 300,900,2400] [--n-val 1000]
        [--n-test 2000] [--shape 32] [--box 18] [--models cnn3d,bondgraph,schnet] [--device auto] [--seed 0]
        [--parallel N] [--store benchmarks/out/curves.zarr] [--out benchmarks/out/volumetric_curves]
    python benchmarks/volumetric_curves.py --export-data draw.xyz.gz    (the seeded draw as extxyz, then stop)

The draw can travel without qm9pack: ``--export-data`` writes the molecules the store would hold (QM9 geometries,
SMILES, the five targets in elprop units, the QM9 index as ``name``) as gzipped extxyz; a machine without
qm9pack gunzips it and runs with ``--data draw.xyz`` (the draw of n out of n molecules is all of them).

1. **Store:** a seeded random draw of max(--sizes) + --n-val + --n-test QM9 molecules is voxelised into
   promolecular grids (`elprop density generate --kind promolecular --shape 32 --box 18`: 0.5625 Å voxels, about
   10 kB per record as float16). This is resumable, and a rerun reuses the store.
2. **Splits:** the test and validation molecules are the same for every size, and each training set holds the
   smaller ones (nested: train_1000 ⊂ train_5000 ⊂ ...). The split files hold store record indices.
3. **Runs:** at each size, every model gets the same wall-clock training budget (--budgets, one per size) and at
   most --max-epochs epochs. Each run is an `elprop train` that resumes after a kill, and a finished one is
   skipped on rerun. ``--parallel N`` runs N trainings at once (one GPU shared by all of them): the budgets
   are then wall-clock seconds on a shared device, the same for every model of a size because they run at the
   same time.
   - cnn3d reads the promolecular grid (`--channels promolecular`, SO(3) augmentation);
   - bondgraph reads the SMILES;
   - schnet reads the QM9 geometry.
   All models predict gap, HOMO, LUMO, μ and α. The weights kept are those of the best validation epoch.
4. **Report:**
   - test MAE per target, model and size, beside the MAE of predicting the training mean;
   - each curve's log-log slope between sizes;
   - the cnn3d / bondgraph ratio at each size (issue 17's goal: cnn3d within 2× of the graph model for the gap at
     ≥ 20k);
   - the extrapolation of each power law to the full QM9 (110k training molecules).
   Writes curves.json and curves.md to --out; asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROPS = ["gap", "homo", "lumo", "mu", "alpha"]
FULL_QM9_TRAIN = 110000


def elprop(*args) -> list[str]:
    return [sys.executable, "-m", "elprop.cli.main", *map(str, args)]


def sh(cmd, log: Path) -> float:
    t0 = time.time()
    with open(log, "a") as fh:
        r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd[3:6])} failed ({r.returncode}); see {log}:\n" + log.read_text()[-1500:])
    return time.time() - t0


def draw(a, ds) -> np.ndarray:
    """The seeded draw of max(--sizes) + --n-val + --n-test molecules of ``ds``, sorted."""
    n = max(a.sizes) + a.n_val + a.n_test
    if n > len(ds):
        raise SystemExit(f"{a.data}: {len(ds)} molecules, fewer than the {n} the sizes and splits need")
    return np.sort(np.random.default_rng(a.seed).permutation(len(ds))[:n])


def export_data(a, path: Path) -> int:
    """Write the draw as extxyz (gzipped when the name ends in .gz): one frame per molecule with its SMILES, its
    index in --data as ``name`` and the targets in elprop units. Returns the number of molecules."""
    import gzip
    from elprop.core.dataset import SYMBOLS
    from elprop.data.load import DataSpec, load_data
    ds = load_data(DataSpec(a.data))
    col = [ds.target_names.index(t) for t in PROPS]
    idx = draw(a, ds)
    lines = []
    for i in idx:
        m = ds[int(i)]
        tg = " ".join(f"{t}={ds.y[i, c]:.8g}" for t, c in zip(PROPS, col))
        lines.append(str(len(m.z)))
        lines.append(f'name={int(i)} smiles="{ds.smiles[i]}" {tg}')
        lines += [f"{SYMBOLS[int(z)]} {x:.6f} {y:.6f} {w:.6f}" for z, (x, y, w) in zip(m.z, m.pos)]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    if path.name.endswith(".gz"):
        with gzip.open(tmp, "wt", compresslevel=9) as fh:
            fh.write(text)
    else:
        tmp.write_text(text)
    tmp.replace(path)
    return len(idx)


def make_store(a, out: Path) -> float:
    pick = out / "molecules.txt"
    if not pick.exists():
        from elprop.data.load import DataSpec, load_data
        idx = draw(a, load_data(DataSpec(a.data)))
        pick.write_text("\n".join(map(str, idx)) + "\n")
    return sh(elprop("density", "generate", "--data", a.data, "--kind", "promolecular", "--subset", f"@{pick}",
                     "--shape", a.shape, "--box", a.box, "--out", a.store, "--workers", a.workers, "--no-progress"),
              out / "store.log")


def splits(a, out: Path) -> dict[int, Path]:
    from elprop.density.store import DensityStore
    st = DensityStore(a.store)
    ok = np.asarray(st.done(["promolecular"]))
    perm = np.random.default_rng(a.seed + 1).permutation(ok)
    test, val, rest = perm[:a.n_test], perm[a.n_test:a.n_test + a.n_val], perm[a.n_test + a.n_val:]
    files = {}
    for n in a.sizes:
        if n > len(rest):
            raise SystemExit(f"size {n}: only {len(rest)} training records in {a.store}")
        f = out / f"split-{n}.json"
        f.write_text(json.dumps({"train": sorted(map(int, rest[:n])), "val": sorted(map(int, val)),
                                 "test": sorted(map(int, test))}))
        files[n] = f
    return files


def mean_baseline(a, split: Path) -> dict:
    """MAE on the test molecules of predicting the training mean of each target (the no-learning line)."""
    from elprop.density.store import DensityStore
    st = DensityStore(a.store)
    sp = json.loads(split.read_text())
    out = {}
    for t in PROPS:
        y = np.asarray(st.root["targets"][t][:], dtype=float)
        out[t] = float(np.abs(y[sp["test"]] - y[sp["train"]].mean()).mean())
    return out


def train_command(a, out: Path, model: str, n: int, budget: float, split: Path) -> list[str] | None:
    """The `elprop train` command of one run, or None when the run has finished already."""
    name = f"{model}-{n}"
    if (out / "runs" / name / "metrics.csv").exists():
        return None
    cmd = ["train", "--model", model, "--density-store", a.store, "--targets", ",".join(PROPS), "--split", "file",
           "--split-file", split, "--epochs", a.max_epochs, "--time-budget", budget, "--device", a.device,
           "--seed", a.seed, "--runs-dir", out / "runs", "--name", name, "--no-progress"]
    if model == "cnn3d":
        cmd += ["--channels", "promolecular", "--dim", a.cnn_dim, "--layers", a.cnn_layers, "--batch-size",
                a.cnn_batch, "--lr", a.cnn_lr]
    else:
        cmd += ["--dim", 128, "--layers", 4, "--batch-size", 64 if n >= 5000 else 32, "--lr", 1e-3]
    return elprop(*cmd)


def collect(out: Path, model: str, n: int) -> dict:
    """Test MAE, units, epochs and throughput of a finished run."""
    d = out / "runs" / f"{model}-{n}"
    rows = list(csv.DictReader(open(d / "metrics.csv")))
    hist = list(csv.DictReader(open(d / "checkpoints" / "member_0" / "history.csv")))
    return {"mae": {r["target"]: float(r["mae"]) for r in rows if r["split"] == "test"},
            "units": {r["target"]: r["unit"] for r in rows if r["split"] == "test"},
            "epochs": len(hist), "train_s": float(hist[-1]["time_s"]) if hist else 0.0,
            "samples_per_s": n * len(hist) / max(float(hist[-1]["time_s"]), 1e-9) if hist else 0.0}


def run_all(a, out: Path, jobs: list[tuple[str, int, float, Path]]) -> list[tuple[str, int, str]]:
    """Run the pending trainings, --parallel at a time (1: one after the other). Returns the failures as
    (model, size, last lines of the log); a failed run does not stop the others."""
    pending = [(m, n, cmd) for m, n, b, f in jobs if (cmd := train_command(a, out, m, n, b, f)) is not None]
    running, failed = [], []
    while pending or running:
        while pending and len(running) < max(1, a.parallel):
            m, n, cmd = pending.pop(0)
            log = out / f"{m}-{n}.log"
            fh = open(log, "a")
            running.append((m, n, subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT), fh, log))
        time.sleep(0.5 if running else 0)
        for r in list(running):
            m, n, proc, fh, log = r
            if proc.poll() is None:
                continue
            fh.close()
            running.remove(r)
            if proc.returncode:
                failed.append((m, n, log.read_text()[-1500:]))
                print(f"{m} {n}: failed ({proc.returncode}); see {log}", flush=True)
            else:
                print(f"{m} {n}: done", flush=True)
    return failed


def slope(sizes, maes) -> float | None:
    """Least-squares slope of log MAE against log size (MAE ∝ N^slope)."""
    ok = [(s, m) for s, m in zip(sizes, maes) if m and m > 0]
    if len(ok) < 2:
        return None
    x, y = np.log([s for s, _ in ok]), np.log([m for _, m in ok])
    return float(np.polyfit(x, y, 1)[0])


def report(res: dict) -> str:
    sizes, models = res["sizes"], res["models"]
    lines = [f"- machine: {res['machine']}", f"- command: `{res['command']}`",
             f"- store: {res['n_records']} QM9 molecules, promolecular {res['shape']}³ grids over {res['box']} Å "
             f"({res['store_s']:.0f} s to build); test {res['n_test']}, validation {res['n_val']} (the same for every size)",
             f"- budgets (training s per run): " + ", ".join(f"{n}: {b:.0f}" for n, b in zip(sizes, res["budgets"]))
             + (f"; {res['parallel']} trainings at once on the shared machine" if res.get("parallel", 1) > 1 else ""),
             *([f"- failed runs: {', '.join(res['failed'])}"] if res.get("failed") else []), ""]
    units = next((r["units"] for r in res["runs"].values()), {})
    for t in PROPS:
        lines += [f"**{t}** ({units.get(t, '')}), test MAE", "",
                  "| model | " + " | ".join(str(n) for n in sizes) + " | log-log slope | at 110k (power law) |",
                  "|---" * (len(sizes) + 3) + "|"]
        for m in models + ["mean"]:
            maes = [res["baseline"][str(n)][t] if m == "mean" else res["runs"].get(f"{m}-{n}", {}).get("mae", {}).get(t)
                    for n in sizes]
            s = slope(sizes, maes) if m != "mean" else None
            ext = None
            if s is not None and maes[-1]:
                ext = maes[-1] * (FULL_QM9_TRAIN / sizes[-1]) ** s
            lines.append(f"| {m} | " + " | ".join("—" if v is None else f"{v:.4g}" for v in maes)
                         + f" | {'—' if s is None else f'{s:.2f}'} | {'—' if ext is None else f'{ext:.3g}'} |")
        lines.append("")
    if "cnn3d" in models and "bondgraph" in models:
        lines += ["**cnn3d / bondgraph, test MAE ratio** (issue 17's goal for the gap: ≤ 2 at ≥ 20k)", "",
                  "| target | " + " | ".join(str(n) for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
        for t in PROPS:
            cells = []
            for n in sizes:
                c, b = (res["runs"].get(f"{m}-{n}", {}).get("mae", {}).get(t) for m in ("cnn3d", "bondgraph"))
                cells.append("—" if not c or not b else f"{c / b:.2f}")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["| run | epochs | training s | samples/s |", "|---|---|---|---|"]
    lines += [f"| {k} | {r['epochs']} | {r['train_s']:.0f} | {r['samples_per_s']:.0f} |" for k, r in res["runs"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="qm9")
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--budgets", default="300,900,2400", help="training seconds per run, one per size")
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--shape", type=int, default=32)
    ap.add_argument("--box", type=float, default=18.0)
    ap.add_argument("--models", default="cnn3d,bondgraph,schnet")
    ap.add_argument("--cnn-dim", type=int, default=32)
    ap.add_argument("--cnn-layers", type=int, default=4)
    ap.add_argument("--cnn-batch", type=int, default=32)
    ap.add_argument("--cnn-lr", type=float, default=1e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=0, help="store generation workers (0: in process, fastest here)")
    ap.add_argument("--parallel", type=int, default=1, help="trainings at once (they share the machine and GPU)")
    ap.add_argument("--export-data", metavar="FILE", help="write the draw as extxyz (.xyz or .xyz.gz) and stop")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild curves.json/curves.md from the finished runs in --out (no store, no training)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", default=str(ROOT / "benchmarks/out/curves.zarr"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/volumetric_curves"))
    a = ap.parse_args()
    a.sizes = [int(s) for s in a.sizes.split(",")]
    a.budgets = [float(b) for b in a.budgets.split(",")]
    if len(a.budgets) != len(a.sizes):
        raise SystemExit("--budgets needs one value per size")
    if a.export_data:
        print(f"{export_data(a, Path(a.export_data))} molecules -> {a.export_data}")
        return 0
    out = Path(a.out)
    if a.report_only:  # e.g. the run folders of a GPU machine, unpacked here: no store or training needed
        res = json.loads((out / "curves.json").read_text())
        finish(res, out)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() and a.device != "cpu" else None
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
                      + (f", {gpu}" if gpu else ", no GPU"),
           "command": " ".join(sys.argv), "sizes": a.sizes, "budgets": a.budgets, "models": a.models.split(","),
           "shape": a.shape, "box": a.box, "n_val": a.n_val, "n_test": a.n_test, "parallel": a.parallel}
    res["store_s"] = make_store(a, out)
    files = splits(a, out)
    from elprop.density.store import DensityStore
    res["n_records"] = len(DensityStore(a.store).done(["promolecular"]))
    res["baseline"] = {str(n): mean_baseline(a, f) for n, f in files.items()}
    (out / "curves.json").write_text(json.dumps(res, indent=1))  # store and baseline facts, before any run
    jobs = [(m, n, b, files[n]) for n, b in zip(a.sizes, a.budgets) for m in res["models"]]
    if a.parallel > 1:  # the longest budgets first, so the largest runs never wait for a slot
        jobs.sort(key=lambda j: -j[2])
    res["failed"] = [f"{m}-{n}" for m, n, _ in run_all(a, out, jobs)]
    finish(res, out)
    return 0


def finish(res: dict, out: Path) -> None:
    """Collect every finished run into res, write curves.json and curves.md, print the report."""
    res["runs"] = {}
    for n in res["sizes"]:
        for m in res["models"]:
            if (out / "runs" / f"{m}-{n}" / "metrics.csv").exists():
                res["runs"][f"{m}-{n}"] = collect(out, m, n)
                print(f"{m} {n}: " + ", ".join(f"{t} {v:.4g}" for t, v in res["runs"][f"{m}-{n}"]["mae"].items()),
                      flush=True)
    (out / "curves.json").write_text(json.dumps(res, indent=1))
    (out / "curves.md").write_text(report(res))
    print(report(res))


if __name__ == "__main__":
    sys.exit(main())

"""Learning curves: the 3D CNN on promolecular grids against the graph model and SchNet, at several training sizes.

    python benchmarks/volumetric_curves.py [--sizes 1000,5000,20000] [--budgets 300,900,2400] [--n-val 1000]
        [--n-test 2000] [--shape 32] [--box 18] [--models cnn3d,bondgraph,schnet] [--device auto] [--seed 0]
        [--store benchmarks/out/curves.zarr] [--out benchmarks/out/volumetric_curves]

1. **Store:** a seeded random draw of max(--sizes) + --n-val + --n-test QM9 molecules is voxelised into
   promolecular grids (`elprop density generate --kind promolecular --shape 32 --box 18`: 0.5625 Å voxels, about
   10 kB per record as float16). This is resumable, and a rerun reuses the store.
2. **Splits:** the test and validation molecules are the same for every size, and each training set holds the
   smaller ones (nested: train_1000 ⊂ train_5000 ⊂ ...). The split files hold store record indices.
3. **Runs:** at each size, every model gets the same wall-clock training budget (--budgets, one per size) and at
   most --max-epochs epochs. Each run is an `elprop train` that resumes after a kill, and a finished one is
   skipped on rerun.
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


def make_store(a, out: Path) -> float:
    n = max(a.sizes) + a.n_val + a.n_test
    pick = out / "molecules.txt"
    if not pick.exists():
        from elprop.data.load import DataSpec, load_data
        ds = load_data(DataSpec(a.data))
        idx = np.sort(np.random.default_rng(a.seed).permutation(len(ds))[:n])
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


def run(a, out: Path, model: str, n: int, budget: float, split: Path) -> dict:
    name = f"{model}-{n}"
    d = out / "runs" / name
    if not (d / "metrics.csv").exists():
        cmd = ["train", "--model", model, "--density-store", a.store, "--targets", ",".join(PROPS), "--split", "file",
               "--split-file", split, "--epochs", a.max_epochs, "--time-budget", budget, "--device", a.device,
               "--seed", a.seed, "--runs-dir", out / "runs", "--name", name, "--no-progress"]
        if model == "cnn3d":
            cmd += ["--channels", "promolecular", "--dim", a.cnn_dim, "--layers", a.cnn_layers, "--batch-size",
                    a.cnn_batch, "--lr", a.cnn_lr]
        else:
            cmd += ["--dim", 128, "--layers", 4, "--batch-size", 64 if n >= 5000 else 32, "--lr", 1e-3]
        sh(elprop(*cmd), out / f"{name}.log")
    rows = list(csv.DictReader(open(d / "metrics.csv")))
    hist = list(csv.DictReader(open(d / "checkpoints" / "member_0" / "history.csv")))
    return {"mae": {r["target"]: float(r["mae"]) for r in rows if r["split"] == "test"},
            "units": {r["target"]: r["unit"] for r in rows if r["split"] == "test"},
            "epochs": len(hist), "train_s": float(hist[-1]["time_s"]) if hist else 0.0,
            "samples_per_s": n * len(hist) / max(float(hist[-1]["time_s"]), 1e-9) if hist else 0.0}


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
             f"- budgets (training s per run): " + ", ".join(f"{n}: {b:.0f}" for n, b in zip(sizes, res["budgets"])), ""]
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
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", default=str(ROOT / "benchmarks/out/curves.zarr"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/volumetric_curves"))
    a = ap.parse_args()
    a.sizes = [int(s) for s in a.sizes.split(",")]
    a.budgets = [float(b) for b in a.budgets.split(",")]
    if len(a.budgets) != len(a.sizes):
        raise SystemExit("--budgets needs one value per size")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() and a.device != "cpu" else None
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
                      + (f", {gpu}" if gpu else ", no GPU"),
           "command": " ".join(sys.argv), "sizes": a.sizes, "budgets": a.budgets, "models": a.models.split(","),
           "shape": a.shape, "box": a.box, "n_val": a.n_val, "n_test": a.n_test}
    res["store_s"] = make_store(a, out)
    files = splits(a, out)
    from elprop.density.store import DensityStore
    res["n_records"] = len(DensityStore(a.store).done(["promolecular"]))
    res["baseline"] = {str(n): mean_baseline(a, f) for n, f in files.items()}
    res["runs"] = {}
    for n, b in zip(a.sizes, a.budgets):
        for m in res["models"]:
            res["runs"][f"{m}-{n}"] = run(a, out, m, n, b, files[n])
            print(f"{m} {n}: " + ", ".join(f"{t} {v:.4g}" for t, v in res["runs"][f"{m}-{n}"]["mae"].items()),
                  flush=True)
            (out / "curves.json").write_text(json.dumps(res, indent=1))
    (out / "curves.md").write_text(report(res))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which input representation, and does attention over several beat each one alone and their concatenation?

    python benchmarks/representations.py [--n-train 10000] [--seeds 0,1,2] [--budget 600] [--epochs 60]
        [--configs element,ecfp,extended,bag,concat,attention] [--with-3d] [--parallel 1] [--device auto]
        [--out benchmarks/out/representations]
    python benchmarks/representations.py --export-subsets DIR      (then, on a machine without qm9pack, e.g. a GPU
    python benchmarks/representations.py --data DIR ...              machine: the same molecules from CSV files)

Every configuration is `elprop train --model multirep` on QM9 (gap, HOMO, LUMO), on the same molecules per seed:
--n-train training, --n-val validation and --n-test test molecules drawn from QM9 by the seed. Each run gets the
same wall-clock budget (--budget seconds of training, featurisation excluded and stated apart, since every
configuration reads the same features) and at most --epochs epochs; --budget 0 gives every run the same number
of epochs instead (K encoders cost about K times as much per epoch, so both views are worth reporting). The
weights kept are those of the best validation epoch. The test molecules are not looked at until every run of a seed has finished, and nothing is
chosen on them. Configurations:
  element, ecfp, extended   one bond-graph encoder over that atom-feature set
  bag                       the extended atom features with no message passing (a learned radius-0 fingerprint)
  mmff                      the extended graph with MMFF94 distances (--with-3d)
  concat                    every representation above, concatenated atom-wise
  attention                 every representation above, weighted per molecule by a learned attention
--parallel N runs N trainings at once (a GPU machine with many cores); the wall-clock budget is then shared
with the other runs, so use --budget 0 (equal epochs) there. --export-subsets writes each seed's molecules
(the same seeded draw as --data qm9 --limit) to DIR/qm9-N-seedS.csv (SMILES, gap/HOMO/LUMO in eV), and --data DIR
reads them, with identical splits and results, where qm9pack is not installed.
Reruns skip finished runs (each is a resumable `elprop train`). Writes representations.json and .md: test MAE per
target as mean ± sd over seeds, the wall time per run, and the attention model's mean weights by chemical class.
Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SINGLE = ("element", "ecfp", "extended", "bag")
TARGETS = ("gap", "homo", "lumo")


def config_args(name: str, with_3d: bool) -> list[str]:
    reps = list(SINGLE) + (["mmff"] if with_3d else [])
    geo = ["--geometry", "mmff"] if (name == "mmff" or (name in ("concat", "attention") and with_3d)) else []
    if name in ("concat", "attention"):
        return ["--reps", ",".join(reps), "--combine", name] + geo
    return ["--reps", name] + geo


def export_subsets(folder: Path, n: int, seeds) -> None:
    """Each seed's draw of n QM9 molecules, in order, as CSV (SMILES and the targets in eV)."""
    from elprop.data.load import DataSpec, load_data
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        ds = load_data(DataSpec("qm9", limit=n, seed=seed))
        cols = [ds.target_names.index(t) for t in TARGETS]
        df = pd.DataFrame({"smiles": ds.smiles, "name": ds.names})
        for t, j in zip(TARGETS, cols):
            df[f"{t} [eV]"] = ds.y[:, j]
        df.to_csv(folder / f"qm9-{n}-seed{seed}.csv", index=False, float_format="%.10g")
        print(f"wrote {folder / f'qm9-{n}-seed{seed}.csv'} ({len(df)} molecules)")


def machine(device: str) -> str:
    import os
    import platform
    import torch
    cpu = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    if device != "cpu" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}; {cpu}"
    return f"CPU only; {cpu}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=5000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=float, default=600.0,
                    help="training seconds per run (0: no time limit, every run trains --epochs epochs: equal epochs)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--configs", default="element,ecfp,extended,bag,concat,attention")
    ap.add_argument("--with-3d", action="store_true", help="add the mmff representation (and to concat/attention)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--parallel", type=int, default=1, help="trainings run at once (default 1)")
    ap.add_argument("--data", default="qm9", help="qm9 (default), or a folder written by --export-subsets")
    ap.add_argument("--export-subsets", metavar="DIR", help="write each seed's molecules as CSV to DIR and stop")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/representations"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = a.configs.split(",") + (["mmff"] if a.with_3d and "mmff" not in a.configs else [])
    seeds = [int(s) for s in a.seeds.split(",")]
    n = a.n_train + a.n_val + a.n_test
    if a.export_subsets:
        export_subsets(Path(a.export_subsets), n, seeds)
        return 0
    started, wall, runs = {}, {}, {}
    todo = [(c, seed) for seed in seeds for c in configs if not (out / f"{c}-seed{seed}" / "metrics.csv").exists()]
    procs = []
    for job in todo + [None]:
        while len(procs) >= max(1, a.parallel) or (job is None and procs):
            for p in list(procs):
                if p[0].poll() is not None:
                    procs.remove(p)
                    wall[p[1]] = round(time.time() - started[p[1]], 1)
                    if p[0].returncode:
                        print(f"{p[1][0]} seed {p[1][1]}: exit {p[0].returncode}; see "
                              f"{out / f'{p[1][0]}-seed{p[1][1]}.log'}", file=sys.stderr)
            time.sleep(0.5)
        if job is None:
            break
        c, seed = job
        d = out / f"{c}-seed{seed}"
        data = ["--data", "qm9", "--limit", str(n)] if a.data == "qm9" else \
            ["--data", str(Path(a.data) / f"qm9-{n}-seed{seed}.csv")]
        cmd = [sys.executable, "-m", "elprop.cli.main", "train", "--model", "multirep", *config_args(c, a.with_3d),
               *data, "--seed", str(seed), "--n-train", str(a.n_train),
               "--n-val", str(a.n_val), "--targets", ",".join(TARGETS), "--dim", str(a.dim), "--layers",
               str(a.layers), "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--device", a.device,
               "--out", str(d), "--no-progress"] + (["--time-budget", str(a.budget)] if a.budget > 0 else [])
        started[(c, seed)] = time.time()
        procs.append((subprocess.Popen(cmd, stdout=open(out / f"{c}-seed{seed}.log", "a"), stderr=subprocess.STDOUT),
                      (c, seed)))
    for seed in seeds:
        for c in configs:
            d = out / f"{c}-seed{seed}"
            if not (d / "metrics.csv").exists():
                continue
            m = pd.read_csv(d / "metrics.csv")
            hist = pd.read_csv(d / "history.csv")
            runs[(c, seed)] = {"test_mae": {t: float(m[(m.split == "test") & (m.target == t)]["mae"].iloc[0])
                                            for t in TARGETS},
                               "val_mae": {t: float(m[(m.split == "val") & (m.target == t)]["mae"].iloc[0])
                                           for t in TARGETS},
                               "train_s": float(hist["time_s"].max()), "epochs": int(hist["epoch"].max()),
                               "wall_s_this_call": wall.get((c, seed))}
            print(f"{c} seed {seed}: " + ", ".join(f"{t} {v:.4f}" for t, v in runs[(c, seed)]["test_mae"].items()))
    rows = []
    for c in configs:
        got = [runs[(c, s)] for s in seeds if (c, s) in runs]
        if not got:
            continue
        row = {"config": c, "seeds": len(got), "train_s": float(np.mean([g["train_s"] for g in got])),
               "epochs": float(np.mean([g["epochs"] for g in got]))}
        for t in TARGETS:
            v = [g["test_mae"][t] for g in got]
            row[f"{t}_mean"], row[f"{t}_sd"] = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
        rows.append(row)
    att = [pd.read_csv(out / f"attention-seed{s}" / "attention_summary.csv").assign(seed=s) for s in seeds
           if (out / f"attention-seed{s}" / "attention_summary.csv").exists()]
    res = {"machine": machine(a.device), "parallel": a.parallel, "batch_size": a.batch_size, "n_train": a.n_train, "n_val": a.n_val, "n_test": a.n_test, "budget_s": a.budget, "epochs": a.epochs,
           "dim": a.dim, "layers": a.layers, "seeds": seeds, "with_3d": a.with_3d, "rows": rows,
           "runs": {f"{c}-seed{s}": v for (c, s), v in runs.items()}}
    (out / "representations.json").write_text(json.dumps(res, indent=1))
    budget = f"{a.budget:.0f} s of training per run (at most {a.epochs} epochs)" if a.budget > 0 else \
        f"{a.epochs} epochs per run (no time limit)"
    lines = [f"Machine: {res['machine']}; {a.parallel} training(s) at once; batch size {a.batch_size}.", "",
             f"QM9, {a.n_train} training / {a.n_val} validation / {a.n_test} test molecules per seed; {budget}; "
             f"width {a.dim}, {a.layers} layers; seeds {a.seeds}.", "",
             "| configuration | seeds | test MAE gap [eV] | HOMO [eV] | LUMO [eV] | training s | epochs |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['seeds']} | " + " | ".join(f"{r[f'{t}_mean']:.4f} ± {r[f'{t}_sd']:.4f}"
                                                           for t in TARGETS)
              + f" | {r['train_s']:.0f} | {r['epochs']:.0f} |" for r in rows]
    if att:
        summ = pd.concat(att).groupby(["class", "value"], sort=False, dropna=False).mean(numeric_only=True).reset_index()
        cols = [c for c in summ.columns if c.startswith("attention_")]
        lines += ["", "Attention weights of the attention model on its test molecules, mean over seeds:", "",
                  "| class | value | n | " + " | ".join(c.removeprefix("attention_") for c in cols) + " |",
                  "|---|---|---|" + "---|" * len(cols)]
        lines += [f"| {r['class']} | {r['value'] if str(r['value']) != 'nan' else ''} | {r['n']:.0f} | "
                  + " | ".join(f"{r[c]:.3f}" for c in cols) + " |" for _, r in summ.iterrows()]
    (out / "representations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""elprop vs Chemprop v2 vs SchNetPack on QM9, side by side: same molecules, same wall-clock training budget.

    python benchmarks/qm9_budget.py --budget 600            (peers from ~/.cache/elprop/peers-venv)

Every tool trains one multi-target model on the same 10,000 training molecules with the same validation and
test molecules (a seeded random draw from the embedded QM9), for the same training budget in wall-clock seconds:
  elprop     `elprop train --time-budget B` (bondgraph from SMILES; 3D distances from MMFF conformers of the SMILES)
  elprop-3d  the same with `--data qm9 --geometry dataset`: the bondgraph also reads heavy-atom distances from
             the QM9 DFT geometries (the input SchNetPack gets), on the same molecules (split by QM9 index)
  Chemprop   `chemprop train`; the epoch count is set so the run fits B (one calibration epoch measures it)
  SchNetPack `spktrain` with `trainer.max_time=B` (its qm9 recipe, PaiNN, 3D DFT geometries)
Targets: gap, HOMO, LUMO and U0 (as the U0 atomization energy; for fixed composition the two differ by a
constant, so their MAEs are equal), all in eV. Prints the MAE table and elprop/best-peer ratios, then the
prediction throughput (SMILES -> properties, whole commands incl. start-up) of `elprop predict` vs
`chemprop predict`. Writes results.json and results.md to --out. This script asserts nothing.

The peers pull torch 2.4.1 and live in their own venv (--peers-venv), outside the repository:
    python3 -m venv ~/.cache/elprop/peers-venv && ~/.cache/elprop/peers-venv/bin/pip install chemprop==2.3.1 \
        schnetpack==2.1.1
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TARGETS = ["gap", "homo", "lumo", "U0_atom"]
LABEL = {"gap": "gap", "homo": "HOMO", "lumo": "LUMO", "U0_atom": "U0"}


def sh(cmd, log, timeout=None, env=None, cwd=None):
    t0 = time.time()
    with open(log, "w") as fh:
        p = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, env=env,
                           cwd=cwd)
    dt = time.time() - t0
    if p.returncode != 0:
        tail = Path(log).read_text()[-2000:]
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}); see {log}\n{tail}")
    return dt


def mae(y, p):
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(p))))


def prepare(out: Path, n_train, n_val, n_test, seed):
    from elprop.data.qm9 import load_qm9
    ds = load_qm9()
    perm = np.random.default_rng(seed).permutation(len(ds))[:n_train + n_val + n_test]
    sub = ds.subset(perm)  # rows 0..n_train-1 train, then val, then test
    split = {"train": np.arange(n_train), "val": np.arange(n_train, n_train + n_val),
             "test": np.arange(n_train + n_val, len(sub))}
    y = np.column_stack([sub.target(t) for t in TARGETS])
    names = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    with open(out / "data.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["smiles", "split"] + TARGETS)
        for i in range(len(sub)):
            w.writerow([sub.smiles[i], names[i]] + [f"{v:.8f}" for v in y[i]])
    with open(out / "test.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["smiles"])
        for i in split["test"]:
            w.writerow([sub.smiles[i]])
    (out / "split.json").write_text(json.dumps({k: v.tolist() for k, v in split.items()}))
    (out / "split_qm9.json").write_text(json.dumps({k: perm[v].tolist() for k, v in split.items()}))
    np.savez(out / "data.npz", z=sub.z, pos=sub.pos, offsets=sub.offsets, y=y, targets=np.array(TARGETS),
             **{k: v for k, v in split.items()})
    return sub, split, y, perm


def run_elprop(out: Path, budget, args, variant="elprop"):
    d = out / variant
    data = ["--data", out / "data.csv", "--split-file", out / "split.json"]
    extra = args.elprop_args.split() + args.elprop_smiles_args.split()
    if variant == "elprop-3d":  # the same molecules by QM9 index, with their DFT geometries
        data = ["--data", "qm9", "--split-file", out / "split_qm9.json"]
        extra = args.elprop_args.split() + args.elprop_3d_args.split()
    cmd = [sys.executable, "-m", "elprop.cli.main", "train", *data, "--targets", ",".join(TARGETS),
           "--split", "file", "--time-budget", budget, "--epochs", 100000,
           "--dim", args.elprop_dim, "--layers", 4, "--name", "run", "--runs-dir", d, "--no-progress", *extra]
    wall = sh(cmd, out / f"{variant}.log")
    rows = list(csv.DictReader(open(d / "run" / "metrics.csv")))
    return {LABEL[r["target"]]: float(r["mae"]) for r in rows if r["split"] == "test"}, wall


def run_chemprop(out: Path, budget, peers, y_test):
    d = out / "chemprop"
    base = [peers / "chemprop", "train", "-i", out / "data.csv", "-s", "smiles", "--target-columns", *TARGETS,
            "--splits-column", "split", "-t", "regression", "--num-workers", 0, "--accelerator", "cpu"]
    # chemprop needs more epochs than its 2 warm-up epochs: time 3 and 5 epochs to get s/epoch and start-up.
    # A first, untimed call warms the caches: in a fresh venv the first call also compiles every module, which
    # once inflated t3 by seconds and made the calibration give 319 epochs for a 480 s budget (~24 min of training)
    sh(base + ["--epochs", 3, "-o", d / "warmup"], out / "chemprop_warmup.log")  # chemprop needs > 2 epochs
    t3 = sh(base + ["--epochs", 3, "-o", d / "calib3"], out / "chemprop_calib3.log")
    t5 = sh(base + ["--epochs", 5, "-o", d / "calib5"], out / "chemprop_calib5.log")
    per_epoch = max((t5 - t3) / 2, 1e-3)
    overhead = max(t3 - 3 * per_epoch, 0.0)
    epochs = max(3, int(budget / per_epoch))
    wall = sh(base + ["--epochs", epochs, "-o", d / "run"], out / "chemprop.log", timeout=budget * 2 + 600)
    ckpt = sorted(glob.glob(str(d / "run" / "**" / "best*.pt"), recursive=True)) or \
        sorted(glob.glob(str(d / "run" / "**" / "*.ckpt"), recursive=True))
    preds = out / "chemprop_test_preds.csv"
    sh([peers / "chemprop", "predict", "-i", out / "test.csv", "-s", "smiles", "--model-paths", ckpt[0], "-o", preds,
        "--num-workers", 0, "--accelerator", "cpu"], out / "chemprop_predict.log")
    p = list(csv.DictReader(open(preds)))
    res = {LABEL[t]: mae(y_test[:, k], [float(r[t]) for r in p]) for k, t in enumerate(TARGETS)}
    return res, wall, {"epochs": epochs, "s_per_epoch": round(per_epoch, 2), "startup_s": round(overhead, 1),
                       "checkpoint": ckpt[0]}


def run_schnetpack(out: Path, budget, peers, n):
    d = out / "schnetpack"
    d.mkdir(exist_ok=True)
    py = peers / "python"
    sh([py, HERE / "peers" / "spk_db.py", out / "data.npz", d / "data.db", d / "split.npz"], out / "spk_db.log")
    hh, rem = divmod(int(budget), 3600)
    mm, ss = divmod(rem, 60)
    cmd = [peers / "spktrain", f"--config-dir={HERE / 'peers'}", "experiment=elprop_qm9_multi",
           f"data.datapath={d / 'data.db'}", f"+data.split_file={d / 'split.npz'}", f"data.num_train={n[0]}",
           f"data.num_val={n[1]}", f"data.num_test={n[2]}", f"run.path={d / 'runs'}", "run.id=run", "logger=csv",
           f"+trainer.max_time=00:{hh:02d}:{mm:02d}:{ss:02d}", "trainer.accelerator=cpu",
           "+trainer.enable_progress_bar=False"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    wall = sh(cmd, out / "schnetpack.log", timeout=budget * 2 + 900, env=env, cwd=d)
    files = glob.glob(str(d / "runs" / "run" / "**" / "metrics.csv"), recursive=True)
    res = {}
    for f in files:
        for r in csv.DictReader(open(f)):
            for t in TARGETS:
                v = r.get(f"test_{t}_mae") or r.get(f"test_{t}_MAE")
                if v not in (None, ""):
                    res[LABEL[t]] = float(v)
    return res, wall


def throughput(out: Path, peers, smiles, ckpt, model_dir):
    f = out / "throughput.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["smiles"])
        w.writerows([[s] for s in smiles])
    smi = out / "throughput.smi"
    smi.write_text("\n".join(smiles) + "\n")
    res = {}
    cmd = [sys.executable, "-m", "elprop.cli.main", "predict", smi, "-o", out / "tp_elprop.csv"]
    if model_dir:
        cmd += ["--model", model_dir]
    res["elprop"] = len(smiles) / sh(cmd, out / "tp_elprop.log")
    if ckpt:
        res["chemprop"] = len(smiles) / sh([peers / "chemprop", "predict", "-i", f, "-s", "smiles", "--model-paths",
                                            ckpt, "-o", out / "tp_chemprop.csv", "--num-workers", 0,
                                            "--accelerator", "cpu"], out / "tp_chemprop.log")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=600, help="training budget per tool, wall-clock seconds")
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--elprop-dim", type=int, default=256)
    ap.add_argument("--elprop-args", default="--dropout 0.1 --weight-decay 1e-2 --ema 0.999 --readout attention "
                    "--batch-size 64", help="extra `elprop train` options of both elprop runs (default: those of "
                    "the recorded results)")
    ap.add_argument("--elprop-smiles-args", default="--geometry mmff",
                    help="options added for the SMILES run (default: distances from MMFF conformers of the SMILES)")
    ap.add_argument("--elprop-3d-args", default="--geometry dataset",
                    help="options added for the elprop-3d run (default: the DFT geometries)")
    ap.add_argument("--throughput-n", type=int, default=5000)
    ap.add_argument("--peers-venv", default=os.path.expanduser("~/.cache/elprop/peers-venv"))
    ap.add_argument("--skip", default="", help="comma-separated: elprop,elprop-3d,chemprop,schnetpack,throughput")
    ap.add_argument("--out", default=str(HERE / "out" / "qm9_budget"))
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    peers = Path(args.peers_venv) / "bin"
    if not (peers / "chemprop").exists():
        skip |= {"chemprop"}
        print(f"no chemprop in {peers}: skipping the peers (see the docstring to install them)")
    if not (peers / "spktrain").exists():
        skip |= {"schnetpack"}
    sub, split, y, perm = prepare(out, args.n_train, args.n_val, args.n_test, args.seed)
    y_test = y[split["test"]]
    results, walls, extra = {}, {}, {}
    print(f"budget {args.budget:.0f} s per tool; {args.n_train} train / {args.n_val} val / {args.n_test} test")
    for variant in ("elprop", "elprop-3d"):
        if variant not in skip:
            results[variant], walls[variant] = run_elprop(out, args.budget, args, variant)
            print(variant, results[variant], f"{walls[variant]:.0f} s wall")
    ckpt = None
    if "chemprop" not in skip:
        results["chemprop"], walls["chemprop"], extra["chemprop"] = run_chemprop(out, args.budget, peers, y_test)
        ckpt = extra["chemprop"]["checkpoint"]
        print("chemprop", results["chemprop"], extra["chemprop"])
    if "schnetpack" not in skip:
        results["schnetpack"], walls["schnetpack"] = run_schnetpack(out, args.budget, peers,
                                                                    (args.n_train, args.n_val, args.n_test))
        print("schnetpack", results["schnetpack"])
    tp = {}
    if "throughput" not in skip:
        rng = np.random.default_rng(1)
        smiles = [str(s) for s in sub.smiles[rng.choice(split["test"], args.throughput_n, replace=False)]]
        tp = throughput(out, peers, smiles, ckpt, None)
        print("throughput (molecules/s, whole command):", tp)
    ours = [k for k in results if k.startswith("elprop")]
    peers_run = [p for p in results if p not in ours]
    lines = [f"QM9 budget benchmark: {args.n_train} train / {args.n_val} val / {args.n_test} test molecules "
             f"(seed {args.seed}), {args.budget:.0f} s training budget per tool, "
             f"{platform.machine()}, {os.cpu_count()} cores", "",
             "| target (MAE, eV) | " + " | ".join(results) + " | " + " | ".join(f"{k} / best peer" for k in ours)
             + " |", "|---|" + "---|" * (len(results) + len(ours))]
    ratios = {k: {} for k in ours}
    for t in LABEL.values():
        vals = [results[k].get(t, float("nan")) for k in results]
        best = min((results[p].get(t, float("inf")) for p in peers_run), default=float("nan"))
        for k in ours:
            ratios[k][t] = results[k][t] / best if peers_run else float("nan")
        lines.append(f"| {t} | " + " | ".join(f"{v:.4f}" for v in vals) + " | "
                     + " | ".join(f"{ratios[k][t]:.2f}" for k in ours) + " |")
    if tp:
        lines += ["", "| prediction throughput (SMILES -> properties, whole command) | molecules/s |", "|---|---|"]
        lines += [f"| {k} predict ({args.throughput_n} molecules) | {v:.0f} |" for k, v in tp.items()]
        if "chemprop" in tp:
            lines.append(f"| ratio elprop / chemprop | {tp['elprop'] / tp['chemprop']:.2f} |")
    table = "\n".join(lines)
    print(table)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"mae_eV": results, "ratio_vs_best_peer": ratios, "wall_s": walls,
                                                  "throughput_mol_per_s": tp, "extra": extra, "args": vars(args)},
                                                 indent=1))


if __name__ == "__main__":
    main()

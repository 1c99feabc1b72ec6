"""elprop vs Chemprop v2 vs SchNetPack on QM9, side by side: same molecules, same wall-clock budget, under a
protocol that holds up to review.

    python benchmarks/qm9_budget.py --budget 480 [--seeds 0,1,2] [--no-select]   (peers from ~/.cache/elprop/peers-venv)

The protocol:
1. **Selection on validation data only.** Each candidate elprop setting (--candidates, default: the settings of
   the earlier figures and three alternatives) trains once on a selection draw of QM9 (--n-train / --n-val, seed
   --select-seed) with no test molecules at all; the setting with the lowest validation MAE (mean over targets,
   each relative to the first candidate's) is kept for both elprop runs. --no-select keeps --elprop-args.
2. **A fresh test set.** The final draws come from QM9 molecules that the selection never saw (neither its training
   nor its validation molecules): per seed, --n-train training, --n-val validation and --n-test test molecules.
3. **Seeds.** Every tool runs once per seed of --seeds (3 or more); the table gives mean ± sd, and each ratio is
   computed within a seed against that seed's best peer.
4. **Equal wall-clock budgets that include featurisation**, each phase stated beside the figures:
     elprop     featurisation (graphs and MMFF conformers, timed in a cold cache) + `elprop train --time-budget`
                of what is left of B
     elprop-3d  the same with `--geometry dataset` on the QM9 DFT geometries (the input SchNetPack gets)
     Chemprop   `chemprop train` with as many epochs as fit B after its start-up and featurisation (two
                calibration runs of 3 and 5 epochs measure both)
     SchNetPack `spktrain` (its qm9 recipe, PaiNN) with `trainer.max_time` = B minus the time to write its database
5. **Throughput with the models of the accuracy figures:** SMILES -> properties, the whole `elprop predict` and
   `chemprop predict` commands (start-up included), with seed 0's trained models, on min(--throughput-n, --n-test)
   test SMILES.
Targets: gap, HOMO, LUMO and U0 (as the U0 atomization energy; for fixed composition the two differ by a
constant, so their MAEs are equal), all in eV. Each run is kept under --out/seedN/ and skipped when rerun.
Writes results.json and results.md to --out. This script asserts nothing.

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


def prepare(out: Path, n_train, n_val, n_test, seed, exclude=()):
    """Write the draw of ``seed`` (QM9 molecules not in ``exclude``) into ``out``: data.csv (split column),
    test.csv, split.json (rows of data.csv), split_qm9.json (QM9 indices) and data.npz (for SchNetPack)."""
    from elprop.data.qm9 import load_qm9
    ds = load_qm9()
    pool = np.setdiff1d(np.arange(len(ds)), np.asarray(list(exclude), dtype=np.int64))
    perm = pool[np.random.default_rng(seed).permutation(len(pool))[:n_train + n_val + n_test]]
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


def run_elprop(out: Path, budget, args, variant="elprop", elprop_args=None, val_only=False):
    """One elprop run under --total-budget (start-up, featurisation in a cold cache and training together).
    Returns ({target: MAE} of the test, or the validation with ``val_only``), whole wall s, phases."""
    d = out / variant
    data = ["--data", out / "data.csv", "--split-file", out / "split.json"]
    base_args = (elprop_args if elprop_args is not None else args.elprop_args).split()
    extra = base_args + args.elprop_smiles_args.split()
    if variant == "elprop-3d":  # the same molecules by QM9 index, with their DFT geometries
        data = ["--data", "qm9", "--split-file", out / "split_qm9.json"]
        extra = base_args + args.elprop_3d_args.split()
    if not (d / "run" / "metrics.csv").exists():
        shutil.rmtree(d, ignore_errors=True)
        cmd = [sys.executable, "-m", "elprop.cli.main", "train", *data, "--targets", ",".join(TARGETS),
               "--split", "file", "--total-budget", budget, "--epochs", 100000,
               "--dim", args.elprop_dim, "--layers", 4, "--out", d / "run", "--no-progress", *extra]
        # a cold featurisation cache of its own (QM9 itself stays in the shared cache): featurising is counted
        env = dict(os.environ, ELPROP_GRAPH_CACHE=str(d / "cache"))
        wall = sh(cmd, out / f"{variant}.log", env=env)
        (d / "wall.json").write_text(json.dumps({"wall_s": wall}))
    wall = json.loads((d / "wall.json").read_text())["wall_s"]
    split = "val" if val_only else "test"
    rows = list(csv.DictReader(open(d / "run" / "metrics.csv")))
    cfg = json.loads((d / "run" / "config.json").read_text())
    hist = list(csv.DictReader(open(d / "run" / "history.csv")))
    # before training: start-up, data loading and featurisation (the part of the budget training did not get)
    phases = {"featurise_s": round(float(budget) - float(cfg["time_budget_s"]), 1),
              "train_s": max(float(h["time_s"]) for h in hist),
              "wall_s": round(wall, 1)}
    return {LABEL[r["target"]]: float(r["mae"]) for r in rows if r["split"] == split}, wall, phases


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
    epochs = max(3, int((budget - overhead) / per_epoch))  # start-up and featurisation count in the budget
    wall = sh(base + ["--epochs", epochs, "-o", d / "run"], out / "chemprop.log", timeout=budget * 2 + 600)
    ckpt = sorted(glob.glob(str(d / "run" / "**" / "best*.pt"), recursive=True)) or \
        sorted(glob.glob(str(d / "run" / "**" / "*.ckpt"), recursive=True))
    preds = out / "chemprop_test_preds.csv"
    sh([peers / "chemprop", "predict", "-i", out / "test.csv", "-s", "smiles", "--model-paths", ckpt[0], "-o", preds,
        "--num-workers", 0, "--accelerator", "cpu"], out / "chemprop_predict.log")
    p = list(csv.DictReader(open(preds)))
    res = {LABEL[t]: mae(y_test[:, k], [float(r[t]) for r in p]) for k, t in enumerate(TARGETS)}
    return res, wall, {"epochs": epochs, "s_per_epoch": round(per_epoch, 2), "featurise_s": round(overhead, 1),
                       "train_s": round(epochs * per_epoch, 1), "wall_s": round(wall, 1), "checkpoint": ckpt[0]}


def run_schnetpack(out: Path, budget, peers, n):
    d = out / "schnetpack"
    d.mkdir(exist_ok=True)
    py = peers / "python"
    t_db = sh([py, HERE / "peers" / "spk_db.py", out / "data.npz", d / "data.db", d / "split.npz"],
              out / "spk_db.log")
    hh, rem = divmod(max(int(budget - t_db), 1), 3600)  # writing its database counts in the budget
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
    return res, wall, {"featurise_s": round(t_db, 1), "train_s": round(budget - t_db, 1), "wall_s": round(wall, 1)}


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


CANDIDATES = [  # elprop settings tried in the selection step (the first: those of the earlier, test-selected figures)
    "--dropout 0.1 --weight-decay 1e-2 --ema 0.999 --readout attention --batch-size 64",
    "--dropout 0.1 --weight-decay 1e-2 --ema 0.999 --readout pool --batch-size 64",
    "--dropout 0.0 --weight-decay 1e-5 --ema 0.999 --readout attention --batch-size 128",
    "--model multirep --reps element,ecfp,extended,bag,mmff --dropout 0.1 --weight-decay 1e-2 --ema 0.999 "
    "--readout attention --batch-size 64",
]


def select(args, out: Path) -> tuple[str, list[dict]]:
    """Step 1: each candidate on the selection draw (training and validation molecules only); the lowest mean
    relative validation MAE wins. Returns (chosen options, table rows)."""
    sel = out / "selection"
    sel.mkdir(parents=True, exist_ok=True)
    if not (sel / "data.csv").exists():
        prepare(sel, args.n_train, args.n_val, 0, args.select_seed)
    rows = []
    for k, cand in enumerate(args.candidates):
        res, wall, phases = run_elprop(sel, args.budget, args, f"candidate{k}", elprop_args=cand, val_only=True)
        rows.append({"options": cand, "val_mae": res, **phases})
        print(f"selection {k}: {cand}: validation MAE " + ", ".join(f"{t} {v:.4f}" for t, v in res.items()))
    ref = rows[0]["val_mae"]
    for r in rows:
        r["score"] = float(np.mean([r["val_mae"][t] / ref[t] for t in ref]))
    best = min(rows, key=lambda r: r["score"])
    return best["options"], rows


def selection_molecules(out: Path) -> set:
    f = out / "selection" / "split_qm9.json"
    if not f.exists():
        return set()
    sp = json.loads(f.read_text())
    return set(sp["train"]) | set(sp["val"])


def mean_sd(v):
    v = [x for x in v if x == x]
    return (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0) if v else (float("nan"), 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=600, help="wall-clock budget per tool and run, featurisation "
                                                               "included (seconds)")
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--seeds", default="0,1,2", help="final draws (3 or more for mean ± sd)")
    ap.add_argument("--select-seed", type=int, default=1000, help="the selection draw")
    ap.add_argument("--no-select", action="store_true", help="skip selection: use --elprop-args as given")
    ap.add_argument("--candidates", nargs="+", default=CANDIDATES, help="elprop options tried in the selection")
    ap.add_argument("--elprop-dim", type=int, default=256)
    ap.add_argument("--elprop-args", default=CANDIDATES[0],
                    help="with --no-select: the `elprop train` options of both elprop runs")
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
    out.mkdir(parents=True, exist_ok=True)
    peers = Path(args.peers_venv) / "bin"
    if not (peers / "chemprop").exists():
        skip |= {"chemprop"}
        print(f"no chemprop in {peers}: skipping the peers (see the docstring to install them)")
    if not (peers / "spktrain").exists():
        skip |= {"schnetpack"}
    seeds = [int(x) for x in args.seeds.split(",")]
    selection = []
    if not args.no_select:
        args.elprop_args, selection = select(args, out)
        print(f"selected on validation data: {args.elprop_args}")
    seen = selection_molecules(out)
    print(f"budget {args.budget:.0f} s per tool and run, featurisation included; {args.n_train} train / "
          f"{args.n_val} val / {args.n_test} test; seeds {seeds}")
    per_seed, phases, extra, tp = {}, {}, {}, {}
    for seed in seeds:
        d = out / f"seed{seed}"
        d.mkdir(exist_ok=True)
        if not (d / "data.csv").exists():
            prepare(d, args.n_train, args.n_val, args.n_test, seed, exclude=seen)
        test_idx = json.loads((d / "split.json").read_text())["test"]
        rows = list(csv.DictReader(open(d / "data.csv")))
        y = np.array([[float(r[t]) for t in TARGETS] for r in rows])
        y_test = y[test_idx]
        res, ph = {}, {}
        for variant in ("elprop", "elprop-3d"):
            if variant not in skip:
                res[variant], _, ph[variant] = run_elprop(d, args.budget, args, variant)
                print(f"seed {seed} {variant}", res[variant], ph[variant])
        ckpt = None
        if "chemprop" not in skip:
            res["chemprop"], _, ph["chemprop"] = run_chemprop(d, args.budget, peers, y_test)
            ckpt = ph["chemprop"].pop("checkpoint")
            print(f"seed {seed} chemprop", res["chemprop"], ph["chemprop"])
        if "schnetpack" not in skip:
            res["schnetpack"], _, ph["schnetpack"] = run_schnetpack(d, args.budget, peers,
                                                                    (args.n_train, args.n_val, args.n_test))
            print(f"seed {seed} schnetpack", res["schnetpack"])
        per_seed[seed], phases[seed] = res, ph
        if seed == seeds[0] and "throughput" not in skip and "elprop" in res:
            smiles = [r["smiles"] for r in rows]
            n_tp = min(args.throughput_n, len(test_idx))
            pick = np.random.default_rng(1).choice(test_idx, n_tp, replace=False)
            tp = throughput(d, peers, [smiles[i] for i in pick], ckpt, d / "elprop" / "run" / "model")
            print("throughput (molecules/s, whole command, the models above):", tp)
    tools = list(per_seed[seeds[0]])
    ours = [k for k in tools if k.startswith("elprop")]
    peers_run = [k for k in tools if k not in ours]
    summary = {k: {t: mean_sd([per_seed[s][k].get(t, float("nan")) for s in seeds]) for t in LABEL.values()}
               for k in tools}
    ratios = {k: {t: mean_sd([per_seed[s][k][t] / min(per_seed[s][p].get(t, float("inf")) for p in peers_run)
                              for s in seeds]) if peers_run else (float("nan"), 0.0)
                  for t in LABEL.values()} for k in ours}
    lines = [f"QM9 budget benchmark: {args.n_train} train / {args.n_val} val / {args.n_test} test molecules per seed "
             f"(seeds {args.seeds}, drawn from molecules the selection never saw), {args.budget:.0f} s per tool and "
             f"run with featurisation, {platform.machine()}, {os.cpu_count()} cores. elprop options "
             f"({'chosen on validation data' if selection else 'given'}): `{args.elprop_args}`.", "",
             "| target (test MAE, eV, mean ± sd) | " + " | ".join(tools) + " | "
             + " | ".join(f"{k} / best peer" for k in ours) + " |", "|---|" + "---|" * (len(tools) + len(ours))]
    for t in LABEL.values():
        lines.append(f"| {t} | " + " | ".join(f"{summary[k][t][0]:.4f} ± {summary[k][t][1]:.4f}" for k in tools)
                     + " | " + " | ".join(f"{ratios[k][t][0]:.2f} ± {ratios[k][t][1]:.2f}" for k in ours) + " |")
    lines += ["", "| tool | featurisation / start-up s | training s | whole wall s |", "|---|---|---|---|"]
    for k in tools:
        f, tr, w = (mean_sd([phases[s][k].get(c) or float("nan") for s in seeds])[0]
                    for c in ("featurise_s", "train_s", "wall_s"))
        lines.append(f"| {k} | {f:.0f} | {tr:.0f} | {w:.0f} |")
    if selection:
        lines += ["", "Selection (validation MAE on the selection draw; score: mean relative to the first row):", "",
                  "| elprop options | " + " | ".join(LABEL.values()) + " | score |", "|---|" + "---|" * 5]
        lines += [f"| `{r['options']}` | " + " | ".join(f"{r['val_mae'].get(t, float('nan')):.4f}"
                                                     for t in LABEL.values()) + f" | {r['score']:.3f} |"
                  for r in selection]
    if tp:
        lines += ["", "| prediction throughput (SMILES -> properties, whole command, seed "
                  f"{seeds[0]}'s models) | molecules/s |", "|---|---|"]
        lines += [f"| {k} predict | {v:.0f} |" for k, v in tp.items()]
        if "chemprop" in tp:
            lines.append(f"| ratio elprop / chemprop | {tp['elprop'] / tp['chemprop']:.2f} |")
    table = "\n".join(lines)
    print(table)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"mae_eV_per_seed": per_seed, "summary": summary, "ratios": ratios,
                                                  "phases": phases, "selection": selection,
                                                  "throughput_mol_per_s": tp, "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()

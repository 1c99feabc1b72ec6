"""Inverse design, side by side at the same DFT budget: random molecules, screening a library, the GA with a fixed
surrogate, and the full loop with fine-tuning.

    python benchmarks/design.py --task 1 [--methods random,screen,ga,loop] [--rounds 4] [--batch 12]
        [--seed 0] [--workers 2] [--oracle dft] [--out benchmarks/out/design]

A run's folder is the method's name (seed 0) or NAME.seedK (other seeds); every seed shares the labels folder,
so a molecule two runs propose is computed once, and each run pays for it in its budget.

Tasks:
  1  gap in 3.0-3.5 eV (B3LYP/6-31G(2df,p)), novel molecules only (not in QM9 by InChIKey)
  2  maximise μ with gap > 6 eV; a hit has μ ≥ 5 D (3.1 % of QM9 molecules have both), so `elprop design`
     scores P(μ ≥ 5 D) × P(gap > 6 eV) (`--acquisition auto`); hits that reach μ ≥ 7 D are counted beside
     (0.11 % of QM9 has μ ≥ 7 D and gap > 6 eV, as rare as task 1's window)

Methods (every one gets --rounds × --batch oracle calls, counted the same way: one per proposed molecule,
failures included):
  random  molecules from the generator's random walks around QM9, no surrogate (`--generator random`)
  screen  the surrogate ranks an enumerated library (--library-size random-walk molecules, generated once and
          seeded), no learning (`--generator library --no-finetune`)
  ga      the genetic algorithm steered by the surrogate, no learning (`--no-finetune`)
  loop    the genetic algorithm, with the surrogate fine-tuned on every verified label after each round
  loop+cal  the loop with σ calibrated on the proposals verified so far (`--calibrate`, elprop's default since
          rounds 1-2 of task 1 showed σ on proposals 3× too small; the loop above was started before it)
  loop+cal+nf  and the verified molecules repeated to a quarter of each fine-tuning epoch
          (`--finetune-new-fraction 0.25`, which cut the next round's error most in benchmarks/design_learners.py)
  loop+xtb  loop+cal with the multi-fidelity prescreen (`--prescreen xtb`): each round the surrogate's 100 best
          candidates get GFN2-xTB, lifted to the DFT level by a Δ-model trained on 10,000 QM9 molecules and
          with σ from the verified ones, and the batch is chosen on those estimates (xTB calls are not DFT
          calls; their count and time are reported beside the DFT budget)
  loop+xtb+dft  loop+xtb with a second prescreen stage (`--prescreen xtb,dft:6-31g --prescreen-top 100,36`): the
          36 best after xTB get a B3LYP/6-31G single point (the QM9 functional in a small basis, at the same
          geometry), lifted by a Δ-model trained on 500 QM9 molecules, and the batch is chosen on those
  ga+xtb+dft, screen+xtb+dft  the GA and screening, without fine-tuning, with loop+xtb+dft's prescreen and σ
          from the verified molecules: the baselines given the same cheap compute beside the DFT budget, so that
          what the fine-tuning adds is measured apart from what the prescreen adds
  ga+gp   the GA with a fixed network corrected by a GP on fingerprints over its residuals (BoTorch), refitted
          each round: does a GP help where fine-tuning is not used?
  loop+gp the full loop with the GP on top

All methods share one labels folder, so a molecule two methods propose is computed once (each still pays
for it in its own budget). Its labels.csv is copied to benchmarks/design/taskN-ORACLE-labels.csv (kept in git:
DFT labels of molecules outside QM9 are data worth keeping). Each method is an `elprop design` run and resumes after a kill; rerun this
command to continue. Writes design-taskN.json and .md into --out; asserts nothing.

The expensive state (every oracle result, a few kB each, and each method's chosen batches) is also kept in git, in
benchmarks/design/taskN-ORACLE-state/, so the benchmark resumes on a fresh clone without repeating a DFT call: it
is restored into --out before the runs and saved after each method; `--sync` only saves it (run it before
stopping a session that is still labelling). A restored run recomputes only its fine-tunings. The state also
keeps the QM9 reference sets of the small-basis DFT prescreen stages (`qm9-reference/`, chunk by chunk from the
machine's elprop cache), which cost about an hour of 2 cores for 500 molecules at 6-31G.
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
TASKS = {1: {"objective": ["gap=3.0:3.5"], "constraint": [], "novel_only": True, "target": "gap",
             "window": (3.0, 3.5)},
         2: {"objective": ["max:mu:5"], "constraint": ["gap>6"], "novel_only": False, "target": "mu",
             "strict": 7.0}}  # also counted: hits at μ ≥ 7 D (0.11 % of QM9 with gap > 6 eV, as rare as task 1)
METHODS = {"random": ["--generator", "random", "--no-finetune", "--no-calibrate"],
           "screen": ["--generator", "library", "--no-finetune", "--no-calibrate"],
           "ga": ["--generator", "ga", "--no-finetune", "--no-calibrate"],
           "loop": ["--generator", "ga", "--no-calibrate"],
           "loop+cal": ["--generator", "ga", "--calibrate"],
           "loop+cal+nf": ["--generator", "ga", "--calibrate", "--finetune-new-fraction", "0.25"],
           "loop+xtb": ["--generator", "ga", "--calibrate", "--prescreen", "xtb"],
           "loop+xtb+dft": ["--generator", "ga", "--calibrate", "--prescreen", "xtb,dft:6-31g", "--prescreen-top",
                            "100,36"],
           "ga+xtb+dft": ["--generator", "ga", "--no-finetune", "--calibrate", "--prescreen", "xtb,dft:6-31g",
                          "--prescreen-top", "100,36"],
           "screen+xtb+dft": ["--generator", "library", "--no-finetune", "--calibrate", "--prescreen",
                              "xtb,dft:6-31g", "--prescreen-top", "100,36"],
           "ga+gp": ["--generator", "ga", "--no-finetune", "--gp", "--no-calibrate"],
           "loop+gp": ["--generator", "ga", "--gp", "--no-calibrate"]}


def run_name(method: str, seed: int) -> str:
    """The run folder of a method at a seed: the method's name for seed 0 (the first runs), `NAME.seedK` else."""
    return method if seed == 0 else f"{method}.seed{seed}"


def library(path: Path, n: int, seed: int) -> Path:
    """An enumerated library: n distinct molecules from random walks of the generator around QM9 (seeded)."""
    if path.exists():
        return path
    from elprop.data.load import DataSpec, load_data
    from elprop.design.generate import Operators, random_molecules
    from elprop.design.space import SearchSpace
    space = SearchSpace()
    rng = np.random.default_rng(seed)
    qm9 = load_data(DataSpec("qm9"))
    seeds = [c for c in (space.canonical(str(qm9.smiles[i])) for i in rng.choice(len(qm9), 5000, replace=False))
             if c]
    mols = random_molecules(seeds, Operators(space, rng), n)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\n" for s in mols))
    return path


def sync_state(base: Path, keep: Path, methods: list[str], restore: bool) -> int:
    """Copy oracle results and chosen batches between the run folder ``base`` and the tracked ``keep`` (restore:
    keep -> base, only what base lacks; else base -> keep). Returns the number of files copied."""
    import shutil
    pairs = [(base / "labels" / "results", keep / "results", "*.json")]
    for m in methods:
        pairs += [(base / m, keep / m, "config.json")]
        pairs += [(d, keep / m / "rounds" / d.name, "batch.csv") for d in sorted((base / m / "rounds").glob("[0-9]*"))]
        pairs += [(base / m / "rounds" / d.name, d, "batch.csv")
                  for d in sorted((keep / m / "rounds").glob("[0-9]*"))]
        # each prescreen stage's results (xTB in prescreen/, small-basis DFT in prescreen-dft-*/): later rounds
        # take σ from the verified molecules' values, and the DFT stage's are worth keeping like labels
        stages = {d.name for side in (base / m, keep / m) if side.is_dir() for d in side.glob("prescreen*")
                  if d.is_dir()}
        pairs += [(base / m / st / "results", keep / m / st, "*.json") for st in sorted(stages)]
    # the small-basis DFT stages' QM9 reference sets (an hour of 2 cores for 500 molecules at 6-31G), chunk by
    # chunk as they finish; the machine's cache holds them, and a fresh machine would compute them again
    from elprop.core.cache import cache_dir
    refs = {d.name for side in (cache_dir(), keep / "qm9-reference") if side.is_dir() for d in side.glob("qm9dft-*")
            if d.is_dir()}
    pairs += [(cache_dir() / r, keep / "qm9-reference" / r, "*.csv") for r in sorted(refs)]
    n = 0
    for run_side, keep_side, pattern in pairs:
        src, dst = (keep_side, run_side) if restore else (run_side, keep_side)
        for f in sorted(src.glob(pattern)) if src.is_dir() else []:
            if f.name.startswith(".") or ".tmp" in f.name:
                continue
            t = dst / f.name
            if t.exists() and (restore or t.read_bytes() == f.read_bytes()):
                continue
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, t)
            n += 1
    return n


def diagnose(prop: pd.DataFrame, target: str, window: tuple[float, float] | None) -> dict:
    """Why hits were missed, over every verified proposal: the surrogate's error at proposal time (MAE, bias =
    mean of prediction - label, the fraction of labels within ±2σ), and, for a window goal, how many proposals the
    surrogate put inside it (the acquisition did its part) and how many of those DFT confirmed."""
    v = prop[prop["verified"].astype(bool)]
    pred, lab, sd = (v[f"{target}_{c}"].to_numpy(float) for c in ("pred", "label", "std"))
    ok = np.isfinite(pred) & np.isfinite(lab)
    out = {"n": int(ok.sum())}
    if not ok.any():
        return out
    err = pred[ok] - lab[ok]
    out.update(mae=float(np.abs(err).mean()), bias=float(err.mean()),
               within_2sigma=float((np.abs(err) <= 2 * sd[ok]).mean()), median_sigma=float(np.median(sd[ok])))
    # σ as the loop's --calibrate would have scaled it: round k's σ times the RMS z-score of rounds < k
    raw = v[f"{target}_std_raw"].fillna(v[f"{target}_std"]) if f"{target}_std_raw" in v else v[f"{target}_std"]
    z = ((v[f"{target}_pred"] - v[f"{target}_label"]) / raw).to_numpy(float)
    rnd = v["round"].to_numpy()
    out["rms_z_per_round"], out["rms_z_calibrated_per_round"] = {}, {}
    for k in sorted(set(rnd.tolist())):
        zk, prev = z[(rnd == k) & np.isfinite(z)], z[(rnd < k) & np.isfinite(z)]
        scale = max(1.0, float(np.sqrt(np.mean(prev ** 2)))) if len(prev) >= 5 else 1.0
        if len(zk):
            out["rms_z_per_round"][int(k)] = float(np.sqrt(np.mean(zk ** 2)))
            out["rms_z_calibrated_per_round"][int(k)] = float(np.sqrt(np.mean((zk / scale) ** 2)))
    if window:
        lo, hi = window
        inside = (pred[ok] >= lo) & (pred[ok] <= hi)
        out.update(predicted_in_window=int(inside.sum()),
                   confirmed=int((inside & (lab[ok] >= lo) & (lab[ok] <= hi)).sum()),
                   labels_below=int((lab[ok] < lo).sum()), labels_above=int((lab[ok] > hi).sum()))
    return out


def method_summary(run: Path, target: str, task: dict) -> dict:
    from elprop.design.loop import summarize
    prop = pd.read_csv(run / "proposals.csv")
    prop = prop[prop["verified"].astype(bool) | prop["ok"].notna()]  # proposals the oracle has answered
    s = summarize(prop)
    s["oracle_s"] = float(prop["label_s"].sum())
    # the prescreen's cheap calls (not oracle calls), per stage: GFN2-xTB in prescreen/, B3LYP/small basis in
    # prescreen-dft-*/
    s["prescreen"] = {}
    for d in sorted(run.glob("prescreen*/results")):
        files = sorted(d.glob("*.json"))
        s["prescreen"][d.parent.name] = {"calls": len(files), "s": float(sum(json.loads(f.read_text()).get("wall_s")
                                                                              or 0 for f in files))}
    x = s["prescreen"].get("prescreen", {})
    s["xtb_calls"], s["xtb_s"] = x.get("calls", 0), x.get("s", 0.0)
    s["surrogate_mae_per_round"] = round_mae(prop, target)
    s["novel_fraction"] = float(prop["novel"].mean()) if prop["novel"].notna().any() else None
    s["diagnosis"] = diagnose(prop, target, task.get("window"))
    if task.get("strict") is not None:  # hits (the constraints met) whose value reaches the stricter threshold
        s["strict_hits"] = int((prop["hit"].astype(bool) & (prop["value"] >= task["strict"])).sum())
        s["novel_strict_hits"] = int((prop["hit"].astype(bool) & (prop["value"] >= task["strict"])
                                      & prop["novel"].fillna(False).astype(bool)).sum())
    return s


def round_mae(prop: pd.DataFrame, target: str) -> dict:
    out = {}
    for k, g in prop.groupby("round"):
        e = np.abs(g[f"{target}_pred"] - g[f"{target}_label"]).dropna()
        out[int(k)] = float(e.mean()) if len(e) else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", type=int, default=1, choices=sorted(TASKS))
    ap.add_argument("--methods", default="random,screen,ga,loop")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--oracle", default="dft", choices=("dft", "xtb"))
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--library-size", type=int, default=20000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/design"))
    ap.add_argument("--sync", action="store_true", help="only save the oracle results and batches into git's copy")
    ap.add_argument("--report", action="store_true",
                    help="run nothing: tabulate the methods' runs as they stand (unfinished ones marked by their calls)")
    a = ap.parse_args()
    task = TASKS[a.task]
    base = Path(a.out) / f"task{a.task}"
    base.mkdir(parents=True, exist_ok=True)
    state = ROOT / "benchmarks" / "design" / f"task{a.task}-{a.oracle}-state"
    methods = a.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    runs = {m: run_name(m, a.seed) for m in methods}
    if a.sync:
        every = sorted({d.name for side in (base, state) if side.is_dir() for d in side.iterdir()
                        if d.is_dir() and d.name.split(".seed")[0] in METHODS})
        print(f"saved {sync_state(base, state, every, restore=False)} files into {state}")
        return 0
    n = sync_state(base, state, list(runs.values()), restore=True)
    if n:
        print(f"restored {n} files from {state}")
    lib = None  # the enumerated library, made (once, seeded) only for a screening method
    if not a.report and any(m.startswith("screen") for m in methods):
        lib = library(Path(a.out) / f"library-{a.library_size}-seed{a.seed}.smi", a.library_size, a.seed)
    results = {"task": a.task, "objective": task["objective"], "constraint": task["constraint"],
               "rounds": a.rounds, "batch": a.batch, "seed": a.seed, "oracle": a.oracle, "model": a.model,
               "methods": {}}
    target = task["target"]
    for m, name in runs.items():
        if a.report:
            if (base / name / "proposals.csv").exists():
                results["methods"][name] = method_summary(base / name, target, task)
            continue
        cmd = [sys.executable, "-m", "elprop.cli.main", "design", "--model", a.model, "--rounds", str(a.rounds),
               "--batch", str(a.batch), "--seed", str(a.seed), "--oracle", a.oracle, "--workers", str(a.workers),
               "--labels-dir", str(base / "labels"), "--out", str(base / name), "--no-progress", *METHODS[m]]
        for o in task["objective"]:
            cmd += ["--objective", o]
        for c in task["constraint"]:
            cmd += ["--constraint", c]
        if task["novel_only"]:
            cmd.append("--novel-only")
        if m.startswith("screen"):
            cmd += ["--library", str(lib)]
        t0 = time.time()
        log = base / f"{name}.log"
        with open(log, "a") as fh:
            r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
        sync_state(base, state, [name], restore=False)
        if r.returncode != 0:
            print(f"{name}: exit {r.returncode}, see {log}", file=sys.stderr)
            continue
        keep = ROOT / "benchmarks" / "design" / f"task{a.task}-{a.oracle}-labels.csv"  # tracked: valuable data
        keep.parent.mkdir(parents=True, exist_ok=True)
        if (base / "labels" / "results").is_dir():  # every batch's labels, not only the last batch's table
            from elprop.label.run import assemble_all
            assemble_all(base / "labels")
            keep.write_text((base / "labels" / "labels.csv").read_text())
        s = method_summary(base / name, target, task)
        s["wall_s_this_call"] = round(time.time() - t0, 1)
        results["methods"][name] = s
        (base.parent / f"design-task{a.task}.json").write_text(json.dumps(results, indent=1))
    lines = [f"Task {a.task}: {' '.join(task['objective'] + task['constraint'])}"
             f"{' (novel only)' if task['novel_only'] else ''}; {a.rounds} rounds × {a.batch} oracle calls "
             f"({a.oracle}), seed {a.seed}.", "",
             "| method | calls | hits | hits per call | hit rate per round | best value | novel | hit diversity | "
             f"surrogate MAE on proposals per round [{target}] | top-10 AUC | oracle s | prescreen calls (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, s in results["methods"].items():
        rates = " / ".join(f"{r['hit_rate']:.2f}" for r in s["rounds"])
        mae = " / ".join("—" if v is None else f"{v:.2f}" for v in s["surrogate_mae_per_round"].values())
        fmt = (lambda v, f: "—" if v is None else format(v, f))
        lines.append(f"| {m} | {s['calls']} | {s['hits']} | {s['hits_per_call']:.3f} | {rates} | "
                     f"{fmt(s['best_value'], '.3f')} | {fmt(s['novel_fraction'], '.2f')} | "
                     f"{fmt(s['hit_diversity'], '.2f')} | {mae} | {fmt(s['top10_auc'], '.3f')} | {s['oracle_s']:.0f} | "
                     + (" + ".join(f"{v['calls']} {k.replace('prescreen-', '').replace('prescreen', 'xtb')} "
                                   f"({v['s']:.0f})" for k, v in s["prescreen"].items()) or "—") + " |")
    if task.get("strict") is not None:
        lines += ["", f"Hits that also reach {target} ≥ {task['strict']:g} (the stricter threshold; novel ones in "
                  "brackets): " + ", ".join(f"{m} {s['strict_hits']} ({s['novel_strict_hits']})"
                                            for m, s in results["methods"].items())]
    lines += ["", f"Why proposals missed (every verified proposal, prediction at proposal time) [{target}]:", "",
              "| method | n | MAE | bias (pred − DFT) | within ±2σ | median σ | predicted in window | of those confirmed "
              "| labels below / above the window | RMS z per round | RMS z per round, σ calibrated on earlier rounds |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, s in results["methods"].items():
        d = s.get("diagnosis", {})
        if "mae" in d:
            lines.append(f"| {m} | {d['n']} | {d['mae']:.2f} | {d['bias']:+.2f} | {d['within_2sigma']:.2f} | "
                         f"{d['median_sigma']:.2f} | {d.get('predicted_in_window', '—')} | {d.get('confirmed', '—')} | "
                         f"{d.get('labels_below', '—')} / {d.get('labels_above', '—')} | "
                         + " / ".join(f"{x:.1f}" for x in d["rms_z_per_round"].values()) + " | "
                         + " / ".join(f"{x:.1f}" for x in d["rms_z_calibrated_per_round"].values()) + " |")
    (base.parent / f"design-task{a.task}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

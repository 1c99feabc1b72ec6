"""How well does each prescreen fidelity predict the DFT label of design proposals? Measured on every molecule the
task-1 design runs have labelled (B3LYP/6-31G(2df,p) at a GFN2-xTB geometry), before a design run relies on it.

    python benchmarks/prescreen_fidelity.py [--stages xtb,dft:6-31g] [--reference 10000,500] [--workers 2]
        [--labels benchmarks/design/task1-dft-state/results] [--out benchmarks/out/prescreen_fidelity]

For each labelled molecule and each stage: the stage's single point at the label's own geometry (so geometry
plays no part), timed; its raw gap; and its estimate after the stage's Δ-model (`elprop design --prescreen`'s,
trained on the stage's QM9 reference, computed once per machine and cached). Against the DFT gap: MAE, bias, the
fraction within 0.25 eV (half a 0.5 eV window) and Spearman ρ, for the raw values (after a linear fit, leave-one-
out) and for the Δ-model estimates; and the seconds per molecule on one core. Each single point is saved as it
finishes under --out (a rerun computes only what is missing). Writes results.json and results.md. Asserts nothing.

Caveat: these molecules were proposed by the design methods, some of them choosing on xTB estimates, so they are
not a random sample of chemistry; they are the kind of molecule a prescreen sees.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def single_point(job):
    """(key, stage name, {values}, seconds) of one stage at one geometry; values empty on failure."""
    from elprop.density.dft import DFTSettings, run_scf
    from elprop.design.multifidelity import level_values, parse_prescreen
    from elprop.label.compute import xtb_single_point
    key, stage_name, z, pos = job
    st = parse_prescreen(stage_name)[0]
    t0 = time.time()
    try:
        if st.method == "xtb":
            res = xtb_single_point(np.asarray(z), np.asarray(pos))
        else:
            res = run_scf(np.asarray(z), np.asarray(pos), DFTSettings(**st.settings()),
                          attempts=[{"name": "diis"}, {"name": "level_shift", "level_shift": 0.5}])
            if not res["ok"]:
                return key, stage_name, {}, time.time() - t0
        return key, stage_name, level_values(res), time.time() - t0
    except Exception:  # noqa: BLE001 - a failed single point is counted, not fatal
        return key, stage_name, {}, time.time() - t0


def loo_linear(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out predictions of y from a line in x."""
    out = np.empty_like(y)
    for i in range(len(y)):
        m = np.ones(len(y), bool)
        m[i] = False
        a, b = np.polyfit(x[m], y[m], 1)
        out[i] = a * x[i] + b
    return out


def scores(est: np.ndarray, y: np.ndarray) -> dict:
    from scipy.stats import spearmanr
    e = est - y
    return {"mae": float(np.abs(e).mean()), "bias": float(e.mean()), "within_0.25": float((np.abs(e) <= 0.25).mean()),
            "spearman": float(spearmanr(est, y).statistic)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="xtb,dft:6-31g")
    ap.add_argument("--reference", default="10000,500", help="QM9 molecules of each stage's Δ-model reference")
    ap.add_argument("--labels", default=str(ROOT / "benchmarks/design/task1-dft-state/results"))
    ap.add_argument("--limit", type=int, default=0, help="at most this many labelled molecules (0: all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/prescreen_fidelity"))
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from elprop.design.multifidelity import DeltaModel, parse_prescreen, qm9_reference
    stages = parse_prescreen(a.stages)
    refs = [int(x) for x in a.reference.split(",")]
    out = Path(a.out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    mols = []
    for f in sorted(Path(a.labels).glob("*.json")):
        r = json.loads(f.read_text())
        if r.get("ok") and r.get("gap") is not None and r.get("pos"):
            mols.append(r)
    if a.limit:
        mols = mols[:a.limit]
    print(f"{len(mols)} labelled molecules from {a.labels}; stages {[s.name for s in stages]}")
    jobs = [(m["key"], st.name, m["z"], m["pos"]) for m in mols for st in stages
            if not (out / "points" / f"{m['key']}-{st.prefix}.json").exists()]
    t0 = time.time()
    # spawned like qm9_reference's pool: a fork after tblite or torch started OpenMP threads here would hang
    with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        for n, (key, name, vals, sec) in enumerate(ex.map(single_point, jobs, chunksize=1), 1):
            st = parse_prescreen(name)[0]
            (out / "points" / f"{key}-{st.prefix}.json").write_text(json.dumps({"values": vals, "s": sec}))
            if n % 20 == 0 or n == len(jobs):
                print(f"  {n}/{len(jobs)} single points, {time.time() - t0:.0f} s")
    y = np.array([m["gap"] for m in mols])
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M"),
           "molecules": len(mols), "labels": a.labels, "stages": {}}
    lines = [f"Prescreen fidelities on {len(mols)} labelled task-1 design molecules (gap, eV; DFT label "
             "B3LYP/6-31G(2df,p) at the same GFN2-xTB geometry):", "",
             "| stage | s per molecule (1 core, median) | failed | raw + line (leave-one-out): MAE / bias / within 0.25 / ρ "
             "| Δ-model estimate: MAE / bias / within 0.25 / ρ | Δ-model's own QM9 held-out RMS |", "|---|---|---|---|---|---|"]
    for st, n_ref in zip(stages, refs):
        pts = [json.loads((out / "points" / f"{m['key']}-{st.prefix}.json").read_text()) for m in mols]
        ok = np.array([bool(p["values"]) for p in pts])
        vals = pd.DataFrame([{f"{st.prefix}_{t}": p["values"].get(t, np.nan) for t in ("homo", "lumo", "gap", "mu")}
                             for p in pts])
        smiles = [m["smiles"] for m in mols]
        dm = DeltaModel(["gap"], prefix=st.prefix).fit(qm9_reference(st, n_ref, workers=a.workers))
        est = dm.predict(smiles, vals)["gap"]
        raw = vals[f"{st.prefix}_gap"].to_numpy(float)
        line = loo_linear(raw[ok], y[ok])
        secs = np.array([p["s"] for p in pts])
        s = {"s_per_molecule_median": float(np.median(secs)), "failed": int((~ok).sum()),
             "raw_line_loo": scores(line, y[ok]), "delta": scores(est[ok], y[ok]), "delta_qm9_rms": dm.rms["gap"],
             "reference": n_ref}
        res["stages"][st.name] = s
        fmt = (lambda d: f"{d['mae']:.3f} / {d['bias']:+.3f} / {d['within_0.25']:.2f} / {d['spearman']:.2f}")
        lines.append(f"| {st.label} | {s['s_per_molecule_median']:.1f} | {s['failed']} | {fmt(s['raw_line_loo'])} | "
                     f"{fmt(s['delta'])} | {s['delta_qm9_rms']:.3f} |")
    (out / "results.json").write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

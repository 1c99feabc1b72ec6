"""Cold-start and batch prediction time of two saved models, measured alternately in the same run.

    python benchmarks/predict_speed.py --old REV_OR_DIR --new DIR [--n 2000] [--repeats 3]

--old may be a git revision: the shipped model of that revision is extracted (git show) to a temporary folder.
Times `elprop predict "CCO" --model M` (a cold start: a new process, imports, model load, one molecule) and
`elprop predict mols.smi --model M -o out.csv` on N QM9 SMILES (seeded sample), each REPEATS times, alternating
old and new so that machine load affects both alike. Prints medians; writes benchmarks/out/predict_speed.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "src/elprop/pretrained/qm9_bondgraph"


def extract(rev: str, dest: Path) -> Path:
    files = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:{SHIPPED}"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        data = subprocess.run(["git", "show", f"{rev}:{SHIPPED}/{f}"], cwd=ROOT, check=True, capture_output=True).stdout
        (dest / f).write_bytes(data)
    return dest


def timed(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from elprop.data.load import DataSpec, load_data
    tmp = Path(tempfile.mkdtemp())
    old = Path(a.old) if Path(a.old).is_dir() else extract(a.old, tmp / "old")
    ds = load_data(DataSpec("qm9"))
    pick = np.random.default_rng(0).choice(len(ds), a.n, replace=False)
    smi = tmp / "mols.smi"
    smi.write_text("".join(f"{ds.smiles[i]}\n" for i in pick))
    elprop = str(Path(sys.executable).with_name("elprop"))
    res = {"old": {"cold_s": [], "batch_s": []}, "new": {"cold_s": [], "batch_s": []}}
    for _ in range(a.repeats):
        for name, m in (("old", old), ("new", Path(a.new))):
            res[name]["cold_s"].append(timed([elprop, "predict", "CCO", "--model", str(m)]))
            res[name]["batch_s"].append(timed([elprop, "predict", str(smi), "--model", str(m), "-o",
                                               str(tmp / f"{name}.csv")]))
    out = {k: {m: float(np.median(v)) for m, v in r.items()} for k, r in res.items()}
    out.update(raw=res, n=a.n, old_model=str(a.old), new_model=str(a.new))
    out["batch_ratio"] = out["new"]["batch_s"] / out["old"]["batch_s"]
    (ROOT / "benchmarks/out").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks/out/predict_speed.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("old", "new", "batch_ratio")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

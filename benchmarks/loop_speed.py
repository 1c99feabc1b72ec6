"""Seconds per epoch of elprop's training loop on the same data: run it once per implementation and compare.

    .venv/bin/python benchmarks/loop_speed.py --out benchmarks/out/loop_speed/lightning.json
    PYTHONPATH=OLD_TREE/src .venv/bin/python benchmarks/loop_speed.py --out .../hand.json     (an older checkout)

The network is the bond-graph model at its defaults (extended features, width 128, 4 layers) on the first
--n QM9 molecules, batch 128, 80/10 train/validation split, --epochs epochs; the per-epoch time is read from
the wall clock between the loop's end-of-epoch log lines (everything: batches, steps, hooks, validation,
checkpoints), and the whole call's wall time is reported too. The first epoch is dropped from the median
(warm-up). Run the implementations alternately, on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import elprop
    try:
        from elprop.represent.graph import dataset_graphs
    except ImportError:  # an elprop from before the represent/ package
        from elprop.chem.graphs import dataset_graphs
    from elprop.data.qm9 import load_qm9
    from elprop.models import build_model
    from elprop.train.loop import train_network
    torch.set_num_threads(torch.get_num_threads())
    ds = load_qm9().subset(np.arange(args.n))
    rep = dataset_graphs(ds, "extended")
    y = np.column_stack([ds.target("gap")])
    y = (y - np.nanmean(y, 0)) / np.nanstd(y, 0)
    n_tr, n_va = int(0.8 * args.n), int(0.1 * args.n)
    tr, va = np.arange(n_tr), np.arange(n_tr, n_tr + n_va)
    torch.manual_seed(0)
    net = build_model("bondgraph", [False], in_dim=rep.x.shape[-1], dim=128, layers=4)
    out = Path(args.out)
    ck = out.parent / (out.stem + "-ckpt")
    import shutil
    shutil.rmtree(ck, ignore_errors=True)
    stamps = []

    def log(msg):
        if str(msg).startswith("epoch "):
            stamps.append(time.time())
    t0 = time.time()
    _, hist = train_network(net, rep, y, tr, va, ck, epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
                            progress=False, log=log)
    wall = time.time() - t0
    per_epoch = np.diff(stamps)  # epoch k's wall time, k >= 2 (the first has no start stamp)
    res = {"elprop": str(Path(elprop.__file__).parent), "n": args.n, "epochs": args.epochs,
           "batch_size": args.batch_size, "steps_per_epoch": n_tr // args.batch_size,
           "seconds_per_epoch": [round(float(v), 2) for v in per_epoch],
           "median_after_first": round(float(np.median(per_epoch)), 3), "wall_s": round(wall, 1),
           "val_l1_scaled": [float(h["val_l1_scaled"]) for h in hist], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
           "date": time.strftime("%Y-%m-%d %H:%M")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()

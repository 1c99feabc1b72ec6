"""``elprop train`` and ``elprop evaluate``."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TRAIN_EPILOG = """examples:
  elprop train --data qm9 --targets homo,lumo,gap --limit 5000 --epochs 5 --name quick
  elprop train --data qm9 --model schnet --targets U0_atom --limit 20000 --time-budget 1800
  elprop train --data mols.csv --targets logS --split scaffold --name solubility
  elprop train --data qm9 --targets gap --features element --name gap-element   (compare feature sets)

Run again with the same --name to resume after a kill: the split, checkpoints and time used are kept.
"""


def _load(args):
    from elprop.data.qm9 import load_qm9
    from elprop.data.readers import read_any

    if args.data == "qm9" or getattr(args, "exclude", None):
        return load_qm9(None if args.data == "qm9" else args.data, exclude=getattr(args, "exclude", None))
    kw = {}
    if str(args.data).lower().endswith(".csv"):
        kw = dict(smiles_column=args.smiles_column, targets=args.targets_list,
                  allow_missing=getattr(args, "allow_missing", False))
    return read_any(args.data, **kw)


def _targets(s):
    return [t.strip() for t in s.split(",") if t.strip()]


def add_train_parser(sub):
    from elprop.chem.features import FEATURE_SETS
    from elprop.models import MODELS

    p = sub.add_parser("train", help="train a model and write runs/<name>/",
                       description="Train a property model. Writes runs/<name>/: config.json, split.json, "
                                   "metrics.csv (MAE/RMSE/R² per target, with units), history.csv, checkpoints/, "
                                   "plots/ (parity per target) and model/ (the saved model).",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="qm9", help="'qm9' (default, embedded), a QM9 tarball/folder, or an "
                                                  "xyz/extxyz/sdf/csv file with targets")
    p.add_argument("--targets", default="homo,lumo,gap", help="comma-separated targets (default: homo,lumo,gap); "
                                                              "see `elprop data info qm9`")
    p.add_argument("--model", default="bondgraph", choices=sorted(MODELS),
                   help="bondgraph: 2D graph from SMILES; schnet: 3D distances (needs coordinates)")
    p.add_argument("--features", default="extended", choices=sorted(FEATURE_SETS),
                   help="atom feature set of the bondgraph model (default: extended)")
    p.add_argument("--dim", type=int, default=128, help="hidden width (default: 128)")
    p.add_argument("--layers", type=int, default=4, help="message-passing layers (default: 4)")
    p.add_argument("--ensemble", type=int, default=1, help="deep-ensemble size (default: 1, mean-variance only)")
    p.add_argument("--split", default="random", choices=["random", "scaffold", "file"],
                   help="random (seeded), scaffold (Bemis-Murcko), or file (--split-file)")
    p.add_argument("--split-file", help="JSON/NPZ with train/val/test index arrays (with --split file)")
    p.add_argument("--n-train", type=float, default=0.8, help="training size: a fraction <= 1 or a count")
    p.add_argument("--n-val", type=float, default=0.1, help="validation size: a fraction <= 1 or a count")
    p.add_argument("--seed", type=int, default=0, help="seed for split, initialisation and batch order")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (default: 100)")
    p.add_argument("--time-budget", type=float, help="training time budget in seconds (summed over resumes)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, cosine-decayed (default: 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay (default: 1e-5)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout after each message-passing update and before the readout MLP (default: 0)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="exponential moving average of the weights, decay per step (e.g. 0.999; default: 0, off)")
    p.add_argument("--limit", type=int, help="use only the first N molecules of a seeded shuffle (quick runs)")
    p.add_argument("--exclude", help="file of QM9 indices to drop (e.g. uncharacterized.txt)")
    p.add_argument("--smiles-column", help="SMILES column of a CSV (default: a column named smiles)")
    p.add_argument("--allow-missing", action="store_true", help="keep CSV rows with missing targets (masked)")
    p.add_argument("--name", help="run name (default: <model>-<targets>)")
    p.add_argument("--runs-dir", default="runs", help="parent folder of runs (default: runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    from elprop.data.dataset import InputError
    from elprop.train.run import train_run

    args.targets_list = _targets(args.targets)
    if not args.targets_list:
        raise InputError("--targets is empty")
    if args.split == "file" and not args.split_file:
        raise InputError("--split file needs --split-file PATH")
    for name in ("epochs", "batch_size", "dim", "layers", "ensemble"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    ds = _load(args)
    parent_index = None
    if args.limit:
        parent_index = np.sort(np.random.default_rng(args.seed).permutation(len(ds))[:args.limit])
        ds = ds.subset(parent_index)
    n_train = int(args.n_train) if args.n_train > 1 else args.n_train
    n_val = int(args.n_val) if args.n_val > 1 else args.n_val
    name = args.name or f"{args.model}-{'-'.join(args.targets_list)}"
    run_dir = Path(args.runs_dir) / name
    print(f"run {run_dir}: {args.model} on {ds.source} ({len(ds):,} molecules), targets {', '.join(args.targets_list)}")
    _, rows = train_run(ds, run_dir, model=args.model, targets=args.targets_list, features=args.features,
                        dim=args.dim, layers=args.layers, ensemble=args.ensemble, split=args.split,
                        split_file=args.split_file, n_train=n_train, n_val=n_val, seed=args.seed,
                        epochs=args.epochs, time_budget=args.time_budget, batch_size=args.batch_size, lr=args.lr,
                        weight_decay=args.weight_decay, dropout=args.dropout, ema=args.ema,
                        progress=not args.no_progress, parent_index=parent_index)
    print_metrics(rows)
    print(f"saved model: {run_dir / 'model'}")
    return 0


def print_metrics(rows):
    print(f"{'split':<6} {'target':<9} {'unit':<8} {'n':>7} {'MAE':>10} {'RMSE':>10} {'R²':>7}")
    for r in rows:
        print(f"{r['split']:<6} {r['target']:<9} {r['unit']:<8} {r['n']:>7} {r['mae']:>10.4f} {r['rmse']:>10.4f} "
              f"{r['r2']:>7.4f}")


def add_evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="report a saved model on a split",
                       description="Evaluate a saved model on (a split of) a data set: MAE, RMSE, R² per target.",
                       epilog="examples:\n  elprop evaluate --model runs/quick/model --data qm9 "
                              "--split-file runs/quick/split.json --split test\n"
                              "  elprop evaluate --data qm9 --split-file shipped   (the shipped model on its "
                              "own test set)", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="saved model directory (default: the shipped model)")
    p.add_argument("--data", default="qm9", help="'qm9' (default), a QM9 tarball/folder, or a file with targets")
    p.add_argument("--split-file", help="split JSON/NPZ ('shipped': the shipped model's test indices); "
                                        "without it, all molecules are evaluated")
    p.add_argument("--split", default="test", help="which part of the split file (default: test)")
    p.add_argument("--smiles-column", help="SMILES column of a CSV")
    p.add_argument("--plots", help="folder for parity plots")
    p.add_argument("-o", "--output", help="write the metrics as CSV")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args) -> int:
    from elprop.data.dataset import InputError
    from elprop.data.splits import load_split
    from elprop.pretrained import model_path
    from elprop.train.estimator import PropertyModel
    from elprop.data.cache import write_csv
    from elprop.train.run import evaluate

    model = PropertyModel.load(args.model or model_path())
    args.targets_list = model.config["targets"]
    ds = _load(args)
    if args.split_file:
        sf = (model_path() / "test_indices.json") if args.split_file == "shipped" else args.split_file
        sp = load_split(sf, len(ds))
        if args.split not in sp:
            raise InputError(f"{sf}: no '{args.split}' part; it has {', '.join(sp)}")
        idx = sp[args.split]
    else:
        idx = np.arange(len(ds))
    rows, _, _ = evaluate(model, ds, idx, args.split if args.split_file else "all", args.plots)
    print_metrics(rows)
    if args.output:
        write_csv(args.output, rows)
    return 0

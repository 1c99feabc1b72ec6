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

    if getattr(args, "density_store", None):
        from elprop.density.volumes import store_dataset
        return store_dataset(args.density_store)

    if args.data == "qm9" or getattr(args, "exclude", None):
        return load_qm9(None if args.data == "qm9" else args.data, exclude=getattr(args, "exclude", None))
    kw = {}
    if str(args.data).lower().endswith(".csv"):
        kw = dict(smiles_column=args.smiles_column, targets=args.targets_list,
                  allow_missing=getattr(args, "allow_missing", False))
    return read_any(args.data, **kw)


def _size(x: float):
    """--n-train/--n-val: a count above 1, otherwise a fraction."""
    return int(x) if x > 1 else x


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
    p.add_argument("--density-store", help="a density store (elprop density generate); the data of volumetric "
                                           "models such as cnn3d, whose records and targets it holds")
    p.add_argument("--channels",
                   help="density kinds stacked as input channels (cnn3d default: dft; hk-unet default: "
                        "promolecular; e.g. promolecular,potential)")
    p.add_argument("--device-memory", help="with cnn3d: report the largest batch that fits this memory (e.g. 80GiB)")
    p.add_argument("--device", default="auto",
                   help="where to train: auto (a CUDA GPU if PyTorch sees one, else the CPU), cpu, cuda, cuda:1")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="bfloat16 mixed precision (auto: on for volumetric models on a GPU, off otherwise)")
    p.add_argument("--grad-checkpoint", choices=["auto", "on", "off"], default="auto",
                   help="volumetric models: gradient checkpointing per stage, trading compute for activation "
                        "memory (auto: on on a GPU when the batch would not fit its memory otherwise)")
    p.add_argument("--pool", type=int, default=1,
                   help="cnn3d: average-pool the input grids by this factor after augmentation (2: 48³ -> 24³, "
                        "8x less work; default 1)")
    p.add_argument("--augment", choices=["so3", "octahedral", "none"],
                   help="cnn3d/hk-unet: real-time augmentation in training. so3: a uniform random rotation and a "
                        "sub-voxel shift per sample, resampled (cnn3d default); octahedral: one of the 48 exact "
                        "symmetries of the cubic grid, axis permutations and flips, no resampling (hk-unet "
                        "default); none")
    p.add_argument("--no-augment", action="store_true", help="the same as --augment none")
    p.add_argument("--tta", type=int, default=0,
                   help="cnn3d: test-time augmentation, averaging predictions over this many random rotations")
    p.add_argument("--crop", type=int, default=0,
                   help="hk-unet: train on random sub-cubes of this many voxels per side around the molecule "
                        "(a multiple of 2^(layers-1); predictions are on whole grids; default 0: whole grids)")
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
    p.add_argument("--heads", type=int, default=0,
                   help="bondgraph: attention heads per layer, with logits biased by bond and distance codes "
                        "(default: 0, filter messages only)")
    p.add_argument("--readout", choices=["pool", "attention"], default="pool",
                   help="bondgraph: intensive targets from mean/max pooling (pool, default) or pooling plus an "
                        "attention-weighted sum of per-atom values (attention)")
    p.add_argument("--geometry", choices=["mmff", "dataset"],
                   help="bondgraph: also read heavy-atom 3D distances, from one seeded ETKDG + MMFF94 conformer per "
                        "SMILES (mmff: embedded once and cached; predictions from SMILES embed the same way) or from "
                        "the data's own structures (dataset: e.g. the QM9 DFT geometries; predictions then need "
                        "xyz/sdf input). Default: 2D only")
    p.add_argument("--target-weights", metavar="T=W,...",
                   help="loss weights per target, e.g. U0_atom=0.3 (others 1; a target with slack can give "
                        "capacity to the others)")
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
    _target_weights(args.target_weights, args.targets_list)  # a bad spec fails before any data is read
    for name in ("epochs", "batch_size", "dim", "layers", "ensemble", "pool"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if args.tta < 0 or args.crop < 0:
        raise InputError("--tta and --crop must be 0 or more")
    from elprop.train.device import resolve_device
    args.device_obj = resolve_device(args.device)
    from elprop.models import MODELS
    rep = MODELS[args.model]["representation"]
    if rep in ("volume", "density-map"):
        if not args.density_store:
            raise InputError(f"--model {args.model} trains on density grids: give --density-store STORE")
        args.channels = args.channels or ("dft" if rep == "volume" else "promolecular")
        est = _report_memory(args)
    else:
        est = None
        for flag, bad in (("--pool", args.pool != 1), ("--no-augment", args.no_augment), ("--tta", args.tta),
                          ("--crop", args.crop), ("--augment", args.augment)):
            if bad:
                raise InputError(f"{flag} is an option of the volumetric models (cnn3d, hk-unet), not {args.model}")
    on_gpu = args.device_obj.type == "cuda"
    args.amp_on = args.amp == "on" or (args.amp == "auto" and on_gpu and est is not None)
    args.ckpt_on = args.grad_checkpoint == "on" or (args.grad_checkpoint == "auto" and on_gpu and est is not None
                                                    and _needs_checkpointing(args, est))
    if args.amp_on or args.ckpt_on or args.device_obj.type != "cpu":
        print(f"device {args.device_obj}; mixed precision {'on' if args.amp_on else 'off'}; gradient checkpointing "
              f"{'on' if args.ckpt_on else 'off'}")
    if rep == "density-map":
        return _run_hk(args)
    ds = _load(args)
    parent_index = None
    if args.limit:
        parent_index = np.sort(np.random.default_rng(args.seed).permutation(len(ds))[:args.limit])
        ds = ds.subset(parent_index)
    n_train, n_val = _size(args.n_train), _size(args.n_val)
    name = args.name or f"{args.model}-{'-'.join(args.targets_list)}"
    run_dir = Path(args.runs_dir) / name
    print(f"run {run_dir}: {args.model} on {ds.source} ({len(ds):,} molecules), targets {', '.join(args.targets_list)}")
    _, rows = train_run(ds, run_dir, model=args.model, targets=args.targets_list, features=args.features,
                        dim=args.dim, layers=args.layers, ensemble=args.ensemble, split=args.split,
                        split_file=args.split_file, n_train=n_train, n_val=n_val, seed=args.seed,
                        epochs=args.epochs, time_budget=args.time_budget, batch_size=args.batch_size, lr=args.lr,
                        weight_decay=args.weight_decay, dropout=args.dropout, ema=args.ema,
                        channels=_targets(args.channels) if args.channels else None,
                        arch=_arch(args), tta=args.tta, device=args.device_obj, amp=args.amp_on,
                        checkpointing=args.ckpt_on, progress=not args.no_progress, parent_index=parent_index,
                        target_weights=_target_weights(args.target_weights, args.targets_list))
    print_metrics(rows)
    print(f"saved model: {run_dir / 'model'}")
    return 0


def print_metrics(rows):
    print(f"{'split':<6} {'target':<9} {'unit':<8} {'n':>7} {'MAE':>10} {'RMSE':>10} {'R²':>7}")
    for r in rows:
        print(f"{r['split']:<6} {r['target']:<9} {r['unit']:<8} {r['n']:>7} {r['mae']:>10.4f} {r['rmse']:>10.4f} "
              f"{r['r2']:>7.4f}")


def _run_hk(args) -> int:
    from elprop.train.density_run import hk_train_run
    name = args.name or f"{args.model}-{args.channels.replace(',', '-')}"
    run_dir = Path(args.runs_dir) / name
    print(f"run {run_dir}: {args.model} on {args.density_store}, inputs {args.channels} -> DFT density")
    n_train, n_val = _size(args.n_train), _size(args.n_val)
    from elprop.models.cnn3d import stage_widths
    widths = stage_widths(args.dim, args.layers)
    _, rows = hk_train_run(args.density_store, run_dir, channels=_targets(args.channels), widths=widths,
                           split=args.split, split_file=args.split_file, n_train=n_train, n_val=n_val,
                           seed=args.seed, epochs=args.epochs, time_budget=args.time_budget,
                           batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, ema=args.ema,
                           crop=args.crop, augment=_arch(args).get("augment"),
                           device=args.device_obj, amp=args.amp_on, checkpointing=args.ckpt_on,
                           progress=not args.no_progress)
    print(f"{'split':<6} {'metric':<24} {'unit':<4} {'model':>10} {'promolecular':>13} {'ratio':>7}")
    for r in rows:
        print(f"{r['split']:<6} {r['metric']:<24} {r['unit']:<4} {r['model']:>10.4f} {r['promolecular']:>13.4f} "
              f"{r['ratio']:>7.3f}")
    print(f"saved model: {run_dir / 'model'}; density slice: {run_dir / 'plots'}")
    return 0


def _target_weights(spec, targets):
    """``"U0_atom=0.3,gap=2"`` -> one weight per target (1 where not named), or None without a spec."""
    from elprop.data.dataset import InputError
    if not spec:
        return None
    w = dict.fromkeys(targets, 1.0)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, val = part.partition("=")
        name = name.strip()
        if not eq or name not in w:
            raise InputError(f"--target-weights {spec!r}: expected T=W with T one of the targets "
                             f"({', '.join(targets)}), got {part!r}")
        try:
            w[name] = float(val)
        except ValueError:
            raise InputError(f"--target-weights {spec!r}: {val!r} is not a number") from None
        if not (np.isfinite(w[name]) and w[name] >= 0):
            raise InputError(f"--target-weights {spec!r}: weights must be finite and >= 0")
    if not any(w.values()):
        raise InputError(f"--target-weights {spec!r}: at least one weight must be positive")
    return [w[t] for t in targets]


def _arch(args) -> dict:
    """The architecture options that differ from their defaults (bondgraph, cnn3d, hk-unet)."""
    from elprop.data.dataset import InputError
    arch = {}
    if args.model == "bondgraph" and args.heads:
        arch["heads"] = args.heads
    if args.model == "bondgraph" and args.geometry:
        arch["geometry"] = args.geometry
    if args.model == "bondgraph" and args.readout != "pool":
        arch["readout"] = args.readout
    if args.model == "cnn3d" and args.pool != 1:
        arch["pool"] = args.pool
    if args.model in ("cnn3d", "hk-unet") and (args.no_augment or args.augment):
        if args.no_augment and args.augment not in (None, "none"):
            raise InputError(f"--no-augment contradicts --augment {args.augment}")
        arch["augment"] = "none" if args.no_augment else args.augment
    return arch


def _needs_checkpointing(args, est) -> bool:
    """On a GPU: does the batch need more than 90 % of the device's memory without checkpointing?"""
    import torch
    total = torch.cuda.get_device_properties(args.device_obj).total_memory
    scale = 0.5 if args.amp_on else 1.0  # bfloat16 activations
    need = est["parameter_bytes"] + args.batch_size * est["activation_bytes_per_sample"] * scale
    return need > 0.9 * total


def _report_memory(args):
    """Print the volumetric model's parameter and activation memory per sample, and the largest batch for
    --device-memory."""
    from elprop.data.dataset import InputError
    from elprop.data.units import TARGETS
    from elprop.density.store import DensityStore
    from elprop.models import build_model
    from elprop.models.cnn3d import memory_estimate, parse_bytes
    n = int(DensityStore(args.density_store).grid_params["shape"])
    ch = _targets(args.channels)
    if not ch:
        raise InputError("--channels is empty")
    net = build_model(args.model, [TARGETS[t].extensive if t in TARGETS else False for t in args.targets_list],
                      in_dim=len(ch), dim=args.dim, layers=args.layers, dropout=args.dropout, **_arch(args))
    if args.model == "hk-unet" and args.crop:
        if args.crop % net.step or args.crop > n:
            raise InputError(f"--crop {args.crop}: give a multiple of {net.step} (the U-Net's downsampling) "
                             f"up to the grid's {n}")
    try:
        mem = parse_bytes(args.device_memory) if args.device_memory else None
    except ValueError as e:
        raise InputError(str(e)) from None
    if args.model == "cnn3d" and n // args.pool < 2 ** args.layers:
        raise InputError(f"--pool {args.pool} with {args.layers} stages leaves too small a grid from the store's {n}³ "
                         f"(need {n} / pool >= 2^layers = {2 ** args.layers})")
    side = args.crop if args.model == "hk-unet" and args.crop else n
    est = memory_estimate(net, (len(ch), side, side, side), mem)  # cnn3d pools its input itself
    line = (f"memory: {est['parameters']:,} parameters ({est['parameter_bytes'] / 2 ** 20:.1f} MiB with gradients "
            f"and Adam state); activations {est['activation_bytes_per_sample'] / 2 ** 20:.1f} MiB per sample "
            f"at {len(ch)}x{side}³{f' (pooled to {side // args.pool}³)' if args.model == 'cnn3d' and args.pool > 1 else ''}"
            f"{' (training crops)' if args.model == 'hk-unet' and args.crop else ''}; batch {args.batch_size} needs "
            f"{(est['parameter_bytes'] + args.batch_size * est['activation_bytes_per_sample']) / 2 ** 30:.2f} GiB")
    if mem:
        line += f"; largest batch in {args.device_memory}: {est['max_batch']}"
    print(line)
    return est


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

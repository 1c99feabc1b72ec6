"""``elprop train`` and ``elprop evaluate``."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from elprop.core.cache import write_csv
from elprop.core.dataset import InputError

TRAIN_EPILOG = """examples:
  elprop train --data qm9 --targets homo,lumo,gap --limit 5000 --epochs 5 --out runs/quick
  elprop train --data qm9 --model schnet --targets U0_atom --limit 20000 --time-budget 1800 --out runs/u0
  elprop train --data mols.csv --targets logS --units "logS=log(mol/L)" --split scaffold --out runs/solubility
  elprop train --data qm9 --targets gap --features element --out runs/gap-element   (compare feature sets)
  elprop train --model cnn3d --density-store qm9.zarr --targets gap --out runs/cnn

Run again with the same --out to resume after a kill: the split, checkpoints and time used are kept.
(--runs-dir DIR --name NAME is the older spelling of --out DIR/NAME.)
"""

# options every property family takes, with their parser defaults (the families' own options: models.OPTIONS)
PROPERTY_FLAGS = {"ensemble": None, "ensemble_mode": "deep", "init_model": None, "dropout": 0.0, "targets": None,
                  "target_weights": None, "units": None, "extensive": None}


def _size(x: float):
    """--n-train/--n-val: a count above 1, otherwise a fraction."""
    return int(x) if x > 1 else x


def _targets(s):
    return [t.strip() for t in s.split(",") if t.strip()]


def add_train_parser(sub):
    from elprop.cli.options import add_data_options, add_out_option
    from elprop.models.registry import MODELS, OPTIONS, _load_plugins
    _load_plugins()
    p = sub.add_parser("train", help="train a model and write its run folder (--out)",
                       description="Train a property model. Writes --out DIR: config.json, split.json, "
                                   "metrics.csv (MAE/RMSE/R² per target, with units), history.csv, checkpoints/, "
                                   "plots/ (parity per target) and model/ (the saved model).",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(p)
    add_out_option(p, runs_aliases=True)
    p.add_argument("--model", default="bondgraph", choices=sorted(MODELS),
                   help="the model family (default: bondgraph): " + "; ".join(
                       f"{n}: {f.description}" for n, f in MODELS.items()))
    fam = p.add_argument_group("options of some model families (the others refuse them)")
    for o in OPTIONS.values():
        o.add_to(fam, [n for n, f in MODELS.items() if o.dest in f.option_names()])
    fam.add_argument("--no-augment", action="store_true", help="the same as --augment none")
    p.add_argument("--device", default="auto",
                   help="where to train: auto (a CUDA GPU if PyTorch sees one, else the CPU), cpu, cuda, cuda:1")
    p.add_argument("--devices", default="auto",
                   help="Lightning: how many devices (processes) to train on, e.g. 2, or a list such as 0,1; with "
                        "--strategy ddp on the CPU each device is one process (gloo). Default auto: the --device")
    p.add_argument("--num-nodes", type=int, default=1, help="Lightning: machines to train on (default 1; see "
                                                            "docs/training.md for SLURM)")
    p.add_argument("--strategy", default="auto",
                   help="Lightning strategy: auto (default), ddp, ddp_spawn, fsdp, ... (--batch-size is per process)")
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="also write the resumable checkpoint every STEPS optimiser steps (default: every 2 minutes "
                        "and at each epoch's end)")
    p.add_argument("--precision",
                   help="Lightning precision: 32-true, bf16-mixed, 16-mixed, 64-true (default: from --amp)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="bfloat16 mixed precision (auto: on for volumetric models on a GPU, off otherwise)")
    p.add_argument("--grad-checkpoint", choices=["auto", "on", "off"], default="auto",
                   help="volumetric models: gradient checkpointing per stage, trading compute for activation "
                        "memory (auto: on on a GPU when the batch would not fit its memory otherwise)")
    p.add_argument("--dim", type=int, default=128, help="hidden width (default: 128)")
    p.add_argument("--layers", type=int, default=4, help="message-passing layers (default: 4)")
    p.add_argument("--ensemble", type=int, default=None,
                   help="ensemble size: its spread is the epistemic σ (default: 1, mean-variance only; with "
                        "--init-model, the saved model's)")
    p.add_argument("--ensemble-mode", choices=["deep", "snapshot"], default="deep",
                   help="deep: K independent trainings (K times the cost); snapshot: one training whose learning rate "
                        "restarts K times, a member at the end of each cycle (the cost of one; --epochs divisible "
                        "by K)")
    ft = p.add_argument_group("fine-tuning")
    ft.add_argument("--init-model", metavar="DIR",
                    help="continue a saved model ('shipped' for the shipped one) on --data: same targets and units "
                         "(targets the data lack are masked), its weights, target scaler and applicability domain")
    ft.add_argument("--replay", type=int, default=2000,
                    help="with --init-model: training molecules of the saved model's own data replayed beside the "
                         "new ones, so its old accuracy does not collapse (default: 2000; 0: none)")
    ft.add_argument("--new-fraction", type=float, default=0.0, metavar="F",
                    help="with --init-model and --replay: repeat each new training molecule so that the new ones make "
                         "up about F of every epoch (0 < F < 1), so a few dozen new labels are not drowned by the "
                         "replayed ones (default: 0, each counted once)")
    ft.add_argument("--replay-data", help="with --init-model: the saved model's training data (default: from its "
                                          "config, e.g. qm9)")
    p.add_argument("--split", default="random", choices=["random", "scaffold", "file"],
                   help="random (seeded), scaffold (Bemis-Murcko), or file (--split-file)")
    p.add_argument("--split-file", help="JSON/NPZ with train/val/test index arrays (with --split file)")
    p.add_argument("--n-train", type=float, default=0.8, help="training size: a fraction <= 1 or a count")
    p.add_argument("--n-val", type=float, default=0.1, help="validation size: a fraction <= 1 or a count")
    p.add_argument("--seed", type=int, default=0, help="seed for split, initialisation and batch order")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (default: 100)")
    p.add_argument("--time-budget", type=float,
                   help="training time budget in wall-clock seconds: steps, batch reading and validation, summed "
                        "over resumes (start-up and featurisation are not counted; --total-budget counts them)")
    p.add_argument("--total-budget", type=float, metavar="S",
                   help="wall-clock seconds for this command's start-up, data loading, featurisation and training "
                        "together: training gets what is left (for comparisons at equal budget; evaluation after "
                        "training is not counted)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, cosine-decayed (default: 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay (default: 1e-5)")
    p.add_argument("--target-weights", metavar="T=W,...",
                   help="loss weights per target, e.g. U0_atom=0.3 (others 1; a target with slack can give "
                        "capacity to the others)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout after each message-passing update and before the readout MLP (default: 0)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="exponential moving average of the weights, decay per step (e.g. 0.999; default: 0, off)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def _check_family_options(args):
    """Refuse, with exit 2, the options another family takes but this one would ignore."""
    from elprop.models import MODELS, OPTIONS
    allowed = MODELS[args.model].option_names()
    flags = dict(PROPERTY_FLAGS, no_augment=False, **{d: o.default for d, o in OPTIONS.items()})
    for dest, default in flags.items():
        name = "augment" if dest == "no_augment" else dest
        if getattr(args, dest) != default and name not in allowed:
            takers = sorted(m for m, f in MODELS.items() if name in f.option_names())
            raise InputError(f"--{dest.replace('_', '-')} is an option of {', '.join(takers)}, not {args.model}")


def run_train(args) -> int:
    from elprop.cli.options import data_spec, out_dir, target_names
    from elprop.core.units import resolve_targets
    from elprop.data.load import load_data
    from elprop.models import MODELS
    from elprop.train.device import resolve_device
    from elprop.train.run import train_run

    _check_family_options(args)
    if args.split == "file" and not args.split_file:
        raise InputError("--split file needs --split-file PATH")
    if args.init_model:
        return _run_finetune(args)
    args.ensemble = 1 if args.ensemble is None else args.ensemble
    for name in ("epochs", "batch_size", "dim", "layers", "ensemble", "pool"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if args.tta < 0 or args.crop < 0 or args.dipole_weight < 0:
        raise InputError("--tta, --crop and --dipole-weight must be 0 or more")
    rep = MODELS[args.model].representation
    names = target_names(args) if rep != "density-map" else []
    # the target contract, resolved once (a bad --units/--extensive/--target-weights fails before data is read)
    specs = resolve_targets(names, units=args.units, extensive=args.extensive, weights=args.target_weights)
    args.device_obj = resolve_device(args.device)
    est = None
    if rep in ("volume", "density-map"):
        if not args.density_store:
            raise InputError(f"--model {args.model} trains on density grids: give --density-store STORE")
        from elprop.density.store import open_store
        args.density_store = open_store(args.density_store)  # opened once, passed along
        args.channels = args.channels or ("dft" if rep == "volume" else "promolecular")
        est = _report_memory(args, specs)
    on_gpu = args.device_obj.type == "cuda"
    args.amp_on = args.amp == "on" or (args.amp == "auto" and on_gpu and est is not None)
    args.ckpt_on = args.grad_checkpoint == "on" or (args.grad_checkpoint == "auto" and on_gpu and est is not None
                                                    and _needs_checkpointing(args, est))
    if args.amp_on or args.ckpt_on or args.device_obj.type != "cpu":
        print(f"device {args.device_obj}; mixed precision {'on' if args.amp_on else 'off'}; gradient checkpointing "
              f"{'on' if args.ckpt_on else 'off'}")
    if rep == "density-map":
        return _run_hk(args)
    if args.total_budget is not None and args.total_budget <= 0:
        raise InputError("--total-budget must be positive")
    if args.model == "multirep":  # a bad --reps/--combine/--geometry mix fails before the data are read
        from elprop.models.multirep import check_arch
        check_arch(_arch(args))
    ds = load_data(data_spec(args, names))
    specs = resolve_targets(names, units=args.units, extensive=args.extensive, weights=args.target_weights,
                            data_units=ds.target_units)
    n_train, n_val = _size(args.n_train), _size(args.n_val)
    run_dir = out_dir(args, f"{args.model}-{'-'.join(names)}")
    if _is_first_process():
        print(f"run {run_dir}: {args.model} on {ds.source} ({len(ds):,} molecules), targets "
              f"{', '.join(t.label for t in specs)}")
    weights = [t.weight for t in specs] if any(t.weight != 1.0 for t in specs) else None
    deadline = None
    if args.total_budget is not None:
        from elprop.cli.main import STARTED
        deadline = STARTED + args.total_budget
    est, rows = train_run(ds, run_dir, model=args.model, targets=specs, features=args.features, deadline=deadline,
                        dim=args.dim, layers=args.layers, ensemble=args.ensemble, split=args.split,
                        split_file=args.split_file, n_train=n_train, n_val=n_val, seed=args.seed,
                        epochs=args.epochs, time_budget=args.time_budget, batch_size=args.batch_size, lr=args.lr,
                        weight_decay=args.weight_decay, dropout=args.dropout, ema=args.ema,
                        channels=_targets(args.channels) if args.channels else None,
                        arch=_arch(args), tta=args.tta, device=args.device_obj, amp=args.amp_on,
                        checkpointing=args.ckpt_on, progress=not args.no_progress, target_weights=weights,
                        trainer=_trainer_options(args), ensemble_mode=args.ensemble_mode)
    if _rank(est) != 0:  # DDP: process 0 reports
        return 0
    print_metrics(rows)
    print(f"saved model: {run_dir / 'model'}")
    return 0


def _run_finetune(args) -> int:
    """``elprop train --init-model DIR --data NEW``: continue a saved model on new labels, with replay."""
    from elprop.cli.options import out_dir, target_names
    from elprop.data.load import DataSpec, load_data
    from elprop.data.splits import load_split, make_split, rows_of
    from elprop.pretrained import model_path
    from elprop.train.device import resolve_device
    from elprop.train.estimator import PropertyModel
    from elprop.train.finetune import base_data, concat, oversample_new, replay_data, replay_info, with_targets
    from elprop.train.run import train_run
    from elprop.train.saved import load_model

    base_dir = model_path() if args.init_model == "shipped" else Path(args.init_model)
    base = load_model(base_dir)
    if not isinstance(base, PropertyModel):
        raise InputError(f"--init-model {base_dir}: fine-tuning continues property models (graph, 3D and volumetric "
                         f"families), not a {base.config.get('model', 'materials')} model")
    targets, units = base.config["targets"], {t.name: t.unit for t in base.specs}
    if args.targets is not None and target_names(args) != targets:
        raise InputError(f"--targets: a fine-tuned model keeps the saved model's targets ({', '.join(targets)})")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if args.replay < 0:
        raise InputError("--replay must be 0 or more")
    if not 0 <= args.new_fraction < 1:
        raise InputError(f"--new-fraction {args.new_fraction:g}: give a fraction in [0, 1)")
    args.device_obj = resolve_device(args.device)
    new = with_targets(load_data(DataSpec(args.data, limit=args.limit, exclude=args.exclude,
                                          smiles_column=args.smiles_column, allow_missing=True, seed=args.seed)),
                       targets, units)
    if args.split == "file":
        if not args.split_file:
            raise InputError("--split file needs --split-file PATH")
        sp = {k: rows_of(v, new, args.split_file) for k, v in load_split(args.split_file).items()}
    else:
        sp = make_split(args.split, len(new), new.smiles, _size(args.n_train), _size(args.n_val), args.seed)
    same_data = str(args.data) == "qm9" and base_data(base.saved_config) == "qm9"
    parts, note = [new], ""
    if args.replay and not same_data:
        rep_tr, rep_va = replay_data(base, base_dir, args.replay, args.replay_data, args.seed)
        n0 = len(new)
        sp = dict(sp, train=np.concatenate([sp["train"], n0 + np.arange(len(rep_tr))]),
                  val=np.concatenate([sp.get("val", np.zeros(0, np.int64)),
                                      n0 + len(rep_tr) + np.arange(len(rep_va))]))
        parts += [rep_tr, rep_va]
        note = f" + {len(rep_tr)} replayed training and {len(rep_va)} validation molecules of the base data"
        if args.new_fraction > 0:
            sp["train"], k = oversample_new(sp["train"], n0, len(rep_tr), args.new_fraction)
            note += f", new molecules repeated {k}× (--new-fraction {args.new_fraction:g})" if k > 1 else ""
    ds = concat(parts, new.source + note) if len(parts) > 1 else new
    replay = replay_info(base_dir, base.saved_config)
    run_dir = out_dir(args, f"finetune-{base.config['model']}")
    ensemble = base.config["ensemble"] if args.ensemble is None else args.ensemble
    c = base.config
    print(f"run {run_dir}: fine-tuning {base_dir} ({c['model']}, {len(base.nets)} member(s)) on {new.source} "
          f"({len(new):,} molecules){note}")
    est, rows = train_run(ds, run_dir, model=c["model"], targets=base.specs, features=c["features"], dim=c["dim"],
                          layers=c["layers"], ensemble=ensemble, split=sp, seed=args.seed, epochs=args.epochs,
                          time_budget=args.time_budget, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, dropout=c.get("dropout", 0.0), ema=args.ema,
                          channels=c.get("channels"), arch=c.get("arch"), tta=base.tta, device=args.device_obj,
                          progress=not args.no_progress, trainer=_trainer_options(args),
                          ensemble_mode=args.ensemble_mode, init_model=base, new_rows=np.arange(len(new)),
                          init_note=f"{base_dir} on {new.source}{note}", fit_ood=not same_data,
                          model_extra={"replay": replay} if replay else None)
    print_metrics(rows)
    print(f"saved model: {run_dir / 'model'}")
    return 0


def _trainer_options(args) -> dict:
    """--devices/--num-nodes/--strategy/--precision for the Lightning Trainer (defaults left out)."""
    opts = {}
    if args.checkpoint_every is not None:
        if args.checkpoint_every < 1:
            raise InputError("--checkpoint-every must be at least 1 step")
        opts["ckpt_every_steps"] = args.checkpoint_every
    if args.devices != "auto":
        d = str(args.devices)
        try:
            opts["devices"] = [int(v) for v in d.split(",")] if "," in d else int(d)
        except ValueError:
            raise InputError(f"--devices {d!r}: give a number (2) or a list of device indices (0,1)") from None
    if args.num_nodes != 1:
        if args.num_nodes < 1:
            raise InputError("--num-nodes must be at least 1")
        opts["num_nodes"] = args.num_nodes
    if args.strategy != "auto":
        opts["strategy"] = args.strategy
    if args.precision:
        valid = ("32-true", "32", "bf16-mixed", "16-mixed", "64-true", "64", "bf16-true", "16-true")
        if args.precision not in valid:
            raise InputError(f"--precision {args.precision!r}: one of {', '.join(valid)}")
        opts["precision"] = args.precision
    return opts


def _rank(model) -> int:
    return int(getattr(model, "rank", 0))


def _is_first_process() -> bool:
    """False in the processes Lightning launches for DDP beside the first (they set NODE_RANK/LOCAL_RANK)."""
    import os
    return os.environ.get("NODE_RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def print_metrics(rows):
    wt = max([9] + [len(r["target"]) for r in rows])
    wu = max([8] + [len(r["unit"]) for r in rows])
    print(f"{'split':<6} {'target':<{wt}} {'unit':<{wu}} {'n':>7} {'MAE':>10} {'RMSE':>10} {'R²':>7}")
    for r in rows:
        print(f"{r['split']:<6} {r['target']:<{wt}} {r['unit']:<{wu}} {r['n']:>7} {r['mae']:>10.4f} "
              f"{r['rmse']:>10.4f} {r['r2']:>7.4f}")


def _run_hk(args) -> int:
    from elprop.train.density_run import hk_train_run
    from elprop.cli.options import out_dir
    run_dir = out_dir(args, f"{args.model}-{args.channels.replace(',', '-')}")
    print(f"run {run_dir}: {args.model} on {args.density_store.path}, inputs {args.channels} -> DFT density")
    n_train, n_val = _size(args.n_train), _size(args.n_val)
    from elprop.models.cnn3d import stage_widths
    widths = stage_widths(args.dim, args.layers)
    est, rows = hk_train_run(args.density_store, run_dir, channels=_targets(args.channels), widths=widths,
                           split=args.split, split_file=args.split_file, n_train=n_train, n_val=n_val,
                           seed=args.seed, epochs=args.epochs, time_budget=args.time_budget,
                           batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, ema=args.ema,
                           crop=args.crop, augment=_arch(args).get("augment"), dipole_weight=args.dipole_weight,
                           device=args.device_obj, amp=args.amp_on, checkpointing=args.ckpt_on,
                           progress=not args.no_progress, trainer=_trainer_options(args))
    if _rank(est) != 0:
        return 0
    print_density_metrics(rows)
    print(f"saved model: {run_dir / 'model'}; density slice: {run_dir / 'plots'}")
    return 0


def print_density_metrics(rows):
    print(f"{'split':<6} {'metric':<24} {'unit':<4} {'model':>10} {'promolecular':>13} {'ratio':>7}")
    for r in rows:
        print(f"{r['split']:<6} {r['metric']:<24} {r['unit']:<4} {r['model']:>10.4f} {r['promolecular']:>13.4f} "
              f"{r['ratio']:>7.3f}")


def _arch(args) -> dict:
    """The family's architecture options (``models.OPTIONS`` with ``arch``) that differ from their defaults."""
    from elprop.models import MODELS, OPTIONS
    if args.no_augment and args.augment not in (None, "none"):
        raise InputError(f"--no-augment contradicts --augment {args.augment}")
    arch = {}
    for name in MODELS[args.model].option_names():
        o = OPTIONS.get(name)
        value = "none" if name == "augment" and args.no_augment else getattr(args, name, None) if o else None
        if o is not None and o.arch and value != o.default:
            arch[name] = value
    return arch


def _needs_checkpointing(args, est) -> bool:
    """On a GPU: does the batch need more than 90 % of the device's memory without checkpointing?"""
    import torch
    total = torch.cuda.get_device_properties(args.device_obj).total_memory
    scale = 0.5 if args.amp_on else 1.0  # bfloat16 activations
    need = est["parameter_bytes"] + args.batch_size * est["activation_bytes_per_sample"] * scale
    return need > 0.9 * total


def _report_memory(args, specs):
    """Print the volumetric model's memory per sample and the largest batch for --device-memory."""
    from elprop.train.memory import volumetric_memory
    est, line = volumetric_memory(args.model, args.density_store, _targets(args.channels),
                                  [t.extensive for t in specs], dim=args.dim, layers=args.layers,
                                  dropout=args.dropout, arch=_arch(args), batch_size=args.batch_size,
                                  crop=args.crop, pool=args.pool, device_memory=args.device_memory)
    print(line)
    return est


def add_evaluate_parser(sub):
    from elprop.cli.options import add_data_options
    p = sub.add_parser("evaluate", help="report a saved model on a split",
                       description="Evaluate a saved model on (a split of) a data set: MAE, RMSE, R² per target "
                                   "with units; for an hk-unet model the density NMAE, electron count and dipole "
                                   "errors beside the promolecular baseline.",
                       epilog="examples:\n  elprop evaluate --model runs/quick/model --data qm9 "
                              "--split-file runs/quick/split.json --split test\n"
                              "  elprop evaluate --data qm9 --split-file shipped   (the shipped model on its "
                              "own test set)\n"
                              "  elprop evaluate --model runs/cnn/model --density-store qm9.zarr "
                              "--split-file runs/cnn/split.json\n"
                              "  elprop evaluate --model runs/sol/model --data mols.csv --out runs/sol-eval",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="saved model directory (default: the shipped model)")
    add_data_options(p, targets=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit shuffle (default: 0)")
    p.add_argument("--split-file", help="split JSON/NPZ ('shipped': the shipped model's test indices); "
                                        "without it, all molecules are evaluated")
    p.add_argument("--split", default="test", help="which part of the split file (default: test)")
    p.add_argument("--out", help="folder for metrics.csv and parity plots")
    p.add_argument("--plots", help="folder for parity plots (default: OUT/plots with --out)")
    p.add_argument("-o", "--output", help="write the metrics as CSV")
    p.set_defaults(func=run_evaluate)


def _split_indices(args, shipped_dir=None):
    """(indices of the full data (records of a store, rows of a table), file name) from --split-file/--split;
    None: all. ``shipped_dir``: the shipped model's folder, where --split-file shipped applies (property models)."""
    from elprop.data.splits import load_split
    if not args.split_file:
        return None
    if args.split_file == "shipped" and shipped_dir is None:
        raise InputError("--split-file shipped is the shipped property model's test set; give a split file of "
                         "this data")
    sf = (shipped_dir / "test_indices.json") if args.split_file == "shipped" else args.split_file
    sp = load_split(sf)
    if args.split not in sp:
        raise InputError(f"{sf}: no '{args.split}' part; it has {', '.join(sp)}")
    return sp[args.split], str(sf)


def run_evaluate(args) -> int:
    from elprop.cli.options import data_spec
    from elprop.data.load import load_data
    from elprop.data.splits import rows_of
    from elprop.pretrained import model_path
    from elprop.train.run import evaluate
    from elprop.train.saved import load_model

    model = load_model(args.model or model_path())
    out = Path(args.out) if args.out else None
    plots = args.plots or (out / "plots" if out else None)
    part = args.split if args.split_file else "all"
    if model.config["model"] == "hk-unet":
        rows = _evaluate_hk(args, model, part, plots)
    elif model.representation == "table":  # a materials model on a materials table
        rows = _evaluate_table(args, model, part, plots)
    else:
        ds = load_data(data_spec(args, model.config["targets"]))
        sel = _split_indices(args, model_path())
        idx = np.arange(len(ds)) if sel is None else rows_of(sel[0], ds, sel[1])
        if sel is not None and ds.density_store is None:  # featurise only the part evaluated, not all the data
            ds, idx = ds.subset(idx), np.arange(len(idx))  # (a store's records keep their own indices)
        rows, _, _ = evaluate(model, ds, idx, part, plots)
        print_metrics(rows)
    if out:
        write_csv(out / "metrics.csv", rows)
    if args.output:
        write_csv(args.output, rows)
    return 0


def _evaluate_hk(args, model, part, plots):
    """The HK map on store records: NMAE, electron count and dipole errors beside the promolecular baseline."""
    from elprop.density.store import open_store
    from elprop.represent.hk import HKSet
    from elprop.train.density_run import density_metric_rows, density_metrics, slice_figure
    if not args.density_store:
        raise InputError("an hk-unet model is evaluated on the records of a density store: give --density-store")
    st = open_store(args.density_store)
    sel = _split_indices(args)
    valid = np.nonzero(HKSet(st, model.config["channels"]).valid)[0]
    idx = valid if sel is None else np.asarray(sel[0], dtype=np.int64)
    if sel is not None:
        bad = np.setdiff1d(idx, valid)
        if len(bad):
            raise InputError(f"{sel[1]}: record {int(bad[0])} has no finished input/promolecular/DFT grids in "
                             f"{st.path}")
    if args.limit:
        from elprop.data.load import seeded_subset
        idx = seeded_subset(idx, args.limit, args.seed)
    if not len(idx):
        raise InputError(f"{st.path}: no records with the grids the model needs")
    pred = model.predict_store(st, idx)
    rows = density_metric_rows(density_metrics(st, idx, pred), part)
    if plots:
        slice_figure(Path(plots) / f"slice_record{int(idx[0])}.png", st, int(idx[0]), pred[0])
    print_density_metrics(rows)
    return rows


def _evaluate_table(args, model, part, plots):
    """A materials model on the rows of a table (--data: a CSV or an embedded name); a split file holds row
    indices of the table."""
    from elprop.train.metrics import metrics_table
    t = model.read(args.data, require_target=True)
    sel = _split_indices(args)
    idx = np.arange(len(t.y)) if sel is None else np.asarray(sel[0], dtype=np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(t.y)):
        raise InputError(f"{sel[1]}: row indices outside the table's {len(t.y)} rows")
    pred = model.predict(t)
    rows = metrics_table(model.specs, t.y[idx, None], pred.mean[idx], pred.std[idx], split=part)
    if plots:
        from elprop.report.plots import parity_plot
        s = model.specs[0]
        parity_plot(t.y[idx], pred.mean[idx, 0], s.name, Path(plots) / f"parity_{part}_{s.name}.png", unit=s.unit)
    print_metrics(rows)
    return rows

"""``elprop train`` and ``elprop evaluate`` as functions: a run directory with config, split, metrics, plots."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from elprop.core.cache import atomic_write, write_csv
from elprop.train.device import machine_description
from elprop.core.dataset import Dataset, InputError
from elprop.data.splits import load_split, make_split, rows_of, save_split
from elprop.core.units import resolve_targets
from elprop.train.estimator import PropertyModel
from elprop.train.metrics import metrics_table


def evaluate(model: PropertyModel, ds: Dataset, idx, split_name: str, plot_dir=None, rep=None):
    rep = model.represent(ds) if rep is None else rep
    idx = np.asarray(idx, dtype=np.int64)
    mean, std = model.predict_rep(rep, idx)
    y = np.column_stack([ds.target(t) for t in model.config["targets"]])[idx]
    rows = metrics_table(model.specs, y, mean, std, split=split_name)
    if plot_dir is not None:
        from elprop.report.plots import parity_plot
        for k, t in enumerate(model.specs):
            parity_plot(y[:, k], mean[:, k], t.name, Path(plot_dir) / f"parity_{split_name}_{t.name}.png",
                        unit=t.unit)
    return rows, mean, std


def train_run(ds: Dataset, run_dir, *, model="bondgraph", targets=("homo", "lumo", "gap"), features="extended",
              dim=128, layers=4, ensemble=1, split="random", split_file=None, n_train=0.8, n_val=0.1, seed=0,
              epochs=100, time_budget=None, batch_size=128, lr=1e-3, weight_decay=1e-5, dropout=0.0, ema=0.0,
              progress=True, log=print, card_extra="", channels=None, arch=None, tta=0, device="cpu", amp=False,
              checkpointing=False, target_weights=None, trainer=None, ensemble_mode="deep", init_model=None,
              new_rows=None, init_note="", fit_ood=True, model_extra=None, deadline=None):
    """Train and evaluate, writing ``run_dir``. ``split``: random, scaffold, file, or a dict of row indices of
    ``ds`` (fine-tuning builds its own). ``init_model``: a loaded PropertyModel to continue (its weights, target
    scaler and applicability domain; ``new_rows`` are the rows of ``ds`` that are new to it). ``deadline``: a
    time.time() by which training must end (``--total-budget``): the time budget becomes what featurisation left. When ``ds`` was cut
    from larger data (``--limit``: its ``parent_index``), split.json holds indices of the larger data, so ``elprop evaluate`` on the full data
    scores the same molecules. ``targets``: names or TargetSpecs."""
    run_dir = Path(run_dir)
    specs = resolve_targets(targets, data_units=ds.target_units)
    targets = [t.name for t in specs]
    run_dir.mkdir(parents=True, exist_ok=True)
    for t in targets:
        if t not in ds.target_names:
            raise InputError(f"target {t!r} is not in the data; it has: {', '.join(ds.target_names) or 'none'}")
        if init_model is None and not np.isfinite(ds.target(t)).any():  # fine-tuning masks a target it lacks
            raise InputError(f"target {t!r}: no finite values in the data")
    if not any(np.isfinite(ds.target(t)).any() for t in targets):
        raise InputError(f"none of the targets ({', '.join(targets)}) has a finite value in the data")
    split_path = run_dir / "split.json"
    # split files hold indices of the full data (records of a store), whatever cut of it ds is
    if split_path.exists():  # a resumed run keeps its split
        sp = {k: rows_of(v, ds, str(split_path)) for k, v in load_split(split_path).items()}
    else:
        if isinstance(split, dict):
            sp = {k: np.asarray(v, dtype=np.int64) for k, v in split.items()}
        elif split == "file":
            sp = {k: rows_of(v, ds, str(split_file)) for k, v in load_split(split_file).items()}
        else:
            sp = make_split(split, len(ds), ds.smiles, n_train, n_val, seed)
        save_split({k: ds.record_index[v] for k, v in sp.items()}, split_path)
    split_name = "given" if isinstance(split, dict) else split
    used = np.unique(np.concatenate([np.asarray(v, dtype=np.int64) for v in sp.values()]))
    if init_model is None and len(used) < len(ds):  # a split file over larger data: represent only its molecules
        ds = ds.subset(used)  # (record indices, and so split.json, still refer to the full data)
        sp = {k: np.searchsorted(used, np.asarray(v, dtype=np.int64)) for k, v in sp.items()}
    config = dict(model=model, targets=list(targets), units={t.name: t.unit for t in specs},
                  target_specs=[t.to_dict() for t in specs], features=features, dim=dim,
                  layers=layers, ensemble=ensemble, ensemble_mode=ensemble_mode, split=split_name,
                  split_file=str(split_file) if split_file else None,
                  n_train=len(sp["train"]), n_val=len(sp.get("val", [])), n_test=len(sp.get("test", [])), seed=seed,
                  epochs=epochs, time_budget_s=time_budget, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                  dropout=dropout, ema=ema, channels=channels, arch=arch or {}, tta=tta, device=str(device), amp=amp,
                  gradient_checkpointing=checkpointing, target_weights=target_weights, trainer=trainer or {},
                  data=ds.source, n_molecules=len(ds), init_model=init_note or None,
                  machine=machine_description(device))
    atomic_write(run_dir / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(config, indent=1)))
    est = PropertyModel(model, specs, features, dim, layers, ensemble, seed, dropout, channels, arch, ensemble_mode)
    if init_model is not None:  # fine-tuning: start from its weights, keep its scaler and domain
        est.ood_sigma = init_model.ood_sigma
        if fit_ood:  # the base model's errors on the flagged new molecules: σ outside the domain
            new_tr = np.intersect1d(sp["train"], np.arange(len(ds)) if new_rows is None else new_rows)
            y_new = np.column_stack([ds.target(t) for t in targets])[new_tr]
            est.ood_sigma = init_model.fit_ood_sigma(np.asarray(ds.smiles, dtype=object)[new_tr], y_new, log=log)
        est.init_states = [net.state_dict() for net in init_model.nets]
        est.scaler = init_model.scaler
        est.base_applicability = init_model.applicability
        est.new_rows = np.arange(len(ds)) if new_rows is None else np.asarray(new_rows)
    est.tta = tta  # used by the validation-set calibration and the metrics below, and saved with the model
    t0 = time.time()
    rep = est.represent(ds)  # once, for training and for the evaluation below
    represent_s = time.time() - t0
    if deadline is not None:  # --total-budget: training gets what start-up and featurisation left
        left = deadline - time.time()
        if left <= 1:
            raise InputError(f"--total-budget: start-up and featurisation took the whole budget "
                             f"({represent_s:.0f} s featurising); give more")
        time_budget = left if time_budget is None else min(time_budget, left)
        log(f"total budget: {represent_s:.0f} s featurising, {left:.0f} s left for training")
        config["time_budget_s"] = round(time_budget, 1)
        config["total_budget_deadline"] = deadline
    config["represent_s"] = round(represent_s, 1)
    atomic_write(run_dir / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(config, indent=1)))
    est.fit(ds, sp, run_dir / "checkpoints", epochs=epochs, time_budget=time_budget, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, ema=ema, rep=rep, progress=progress, log=log, device=device, amp=amp,
            checkpointing=checkpointing, target_weights=target_weights, trainer=trainer)
    if est.rank != 0:  # DDP: process 0 evaluates and saves
        return est, []
    wall = time.time() - t0
    rows = []
    for name in ("val", "test"):
        if len(sp.get(name, [])):
            r, _, _ = evaluate(est, ds, sp[name], name, run_dir / "plots", rep=rep)
            rows += r
    write_csv(run_dir / "metrics.csv", [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
                                       for r in rows])
    card_extra += _attention_report(est, ds, sp, rep, run_dir)
    hist = []
    runs = [("snapshots", "checkpoints/snapshots")] if ensemble_mode == "snapshot" and ensemble > 1 else \
        [(k, f"checkpoints/member_{k}") for k in range(ensemble)]
    for k, sub in runs:
        hp = run_dir / sub / "history.csv"
        if hp.exists():
            with open(hp) as fh:
                hist += [dict(member=k, **row) for row in csv.DictReader(fh)]
    write_csv(run_dir / "history.csv", hist)
    # training time from the members' histories, so a resumed run reports all of it, not just the last call
    train_s = sum(float(h[-1]["time_s"]) for h in _by_member(hist)) if hist else wall
    card = model_card(est, config, rows, train_s, card_extra)
    extra = {"split_seed": seed, "data": ds.source}
    if split_name in ("random", "scaffold"):  # the recipe of the split, so fine-tuning can replay its training part
        extra["split_spec"] = {"kind": split_name, "n_train": len(sp["train"]), "n_val": len(sp.get("val", [])),
                               "seed": seed}
    extra.update(model_extra or {})  # e.g. a fine-tuned model's ``replay`` (its base data and split recipe)
    if ds.density_store is not None:  # volumetric models rebuild their inputs for new molecules from these
        from elprop.represent.volume import store_grid_facts
        extra.update(store_grid_facts(ds.density_store))
    est.save(run_dir / "model", card=card, extra=extra)
    return est, rows



def _attention_report(est, ds, sp, rep, run_dir) -> str:
    """multirep: attention.csv (each test molecule's weight on each representation) and attention_summary.csv
    (mean weights by chemical class); a line for the model card. Empty for other families."""
    name = "test" if len(sp.get("test", [])) else "val"
    idx = np.asarray(sp.get(name, []), dtype=np.int64)
    if not len(idx):
        return ""
    got = est.representation_weights(rep.subset(idx))
    if got is None:
        return ""
    from elprop.report.attention import attention_tables
    names, w = got
    per, summary = attention_tables(np.asarray(ds.smiles, dtype=object)[idx], names, w)
    for fname, df in (("attention.csv", per), ("attention_summary.csv", summary)):
        atomic_write(run_dir / fname, lambda tmp, df=df: df.to_csv(tmp, index=False, float_format="%.4g"))
    mean = summary.iloc[0]
    return ("\n\nAttention over representations (mean weight on the " + name + " molecules; by chemical class in "
            "attention_summary.csv): " + ", ".join(f"{n} {mean[f'attention_{n}']:.2f}" for n in names) + ".")


def _by_member(hist):
    members = {}
    for row in hist:
        members.setdefault(row["member"], []).append(row)
    return list(members.values())


def model_card(est: PropertyModel, config: dict, rows, train_s: float, extra: str = "") -> str:
    import torch

    from elprop import __version__
    lines = [f"# elprop model card: {config['model']} ({', '.join(config['targets'])})", "",
             "## Data and split",
             f"- data: {config['data']} ({config['n_molecules']} molecules)",
             f"- split: {config['split']}, seed {config['seed']}: {config['n_train']} train, {config['n_val']} "
             f"validation, {config['n_test']} test (indices in `split.json` of the run)",
             "", "## Model",
             f"- family: {config['model']}, feature set: {config['features']}, width {config['dim']}, "
             f"{config['layers']} layers, ensemble of {config['ensemble']}"
             + (" (snapshot ensemble: one run, one member per learning-rate cycle)"
                if config.get("ensemble_mode") == "snapshot" and config["ensemble"] > 1 else ""),
             *([f"- fine-tuned from: {config['init_model']}"] if config.get("init_model") else []),
             f"- training: batch {config['batch_size']}, lr {config['lr']}, weight decay "
             f"{config.get('weight_decay', 1e-5)}, dropout {config.get('dropout', 0.0)}, epochs <= {config['epochs']}, "
             f"time budget {config['time_budget_s']} s; training time {train_s:.0f} s on {config['machine']}",
             "- uncertainty: mean-variance head (aleatoric)" + (" + ensemble spread (epistemic)"
                                                                 if config["ensemble"] > 1 else "")
             + (", σ rescaled per target on the validation set (scale "
                + ", ".join(f"{t} {v:.2f}" for t, v in zip(config["targets"], est.sigma_scale)) + "); "
                if est.sigma_calibrated else ", σ NOT calibrated (no validation split); ")
             + "'1σ coverage' is the fraction of molecules whose error is within ±1σ (0.68 for a calibrated Gaussian)",
             "", "## Metrics", "", "| split | target | unit | n | MAE | RMSE | R² | 1σ coverage |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['split']} | {r['target']} | {r['unit']} | {r['n']} | {r['mae']:.4f} | {r['rmse']:.4f} "
                     f"| {r['r2']:.4f} | {r.get('coverage_1sigma', float('nan')):.2f} |")
    dom = est.applicability
    if dom is not None:
        lines += ["", "## Applicability domain",
                  f"- rare substructures: an atom environment (Morgan radius 0-1) found in fewer than {dom.min_count} "
                  f"of the {dom.n_train} training molecules; nearest training neighbour: Tanimoto (Morgan radius 2) "
                  f"below {dom.nn_threshold:.3f} against {len(dom.ref)} training molecules",
                  f"- thresholds chosen on the validation molecules to flag at most {dom.false_alarm:.0%} of them "
                  f"(flagged there: {dom.fit_report.get('val_flagged_fraction', float('nan')):.1%})"]
        if est.ood_sigma is not None:
            lines.append("- outside the domain (a non-empty warning), σ grows in quadrature by the base model's RMS "
                         "error on the flagged molecules of the fine-tuning data: " +
                         ", ".join(f"{t.name} {v:.3f} {t.unit}" for t, v in zip(est.specs, est.ood_sigma)))
    lines += ["", "## Versions", f"- elprop {__version__}, torch {torch.__version__}"]
    if extra:
        lines += ["", extra]
    return "\n".join(lines) + "\n"

"""Volumetric models on the dev density set, side by side in one run (held-out molecules throughout).

    .venv/bin/python benchmarks/volumetric.py --store benchmarks/out/dev.zarr      (~80 min on 2 CPU cores)

One seeded split of the store's records (train / validation / test) is used by every model below.
1. The Hohenberg-Kohn map: `elprop train --model hk-unet` from the promolecular density (and, unless skipped,
   from the potential) to the DFT density. Test-set NMAE (%), |electron-count error| and dipole error against
   the promolecular baseline, with the ratio model / baseline (target: NMAE <= 0.25x the baseline).
2. The chain: the HK map's predictions of every record go into a copy of the store as kind 'hk'
   (`elprop predict-density --write-kind hk`). Property CNNs (`elprop train --model cnn3d`) are trained with the
   same budget from the DFT, HK-predicted, promolecular and potential grids, beside the graph models (bondgraph
   from SMILES, schnet from the 3D geometry) on the same molecules and budget. Test MAE for gap, HOMO, LUMO,
   mu and alpha.
3. Rotation spread: the DFT-input CNN trained with and without real-time augmentation, each predicting every
   test molecule under R random rotations of its grid. Mean over molecules of the standard deviation over
   rotations, MAE on the stored orientation, MAE over rotated copies, and MAE with test-time augmentation.
4. Training throughput (samples/s, forward + backward + optimizer step) of the models as configured, on this
   CPU and on a CUDA GPU when PyTorch sees one.
--chain-inputs picks the grids of step 2 (default dft,hk,promolecular,potential) and --channels-last trains the
volumetric models in that layout. A rerun after a kill keeps the parts already finished (the HK map and its written
grids, and each finished chain run) and does the rest; it must have the same options (--skip aside), else it exits
2 without touching --out. `benchmarks/volumetric_paired.py` then gives paired bootstrap intervals between the chain's
inputs. Writes results.json and results.md to --out. Asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROPS = ["gap", "homo", "lumo", "mu", "alpha"]


def sh(cmd, log):
    t0 = time.time()
    with open(log, "w") as fh:
        p = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} failed ({p.returncode}); see {log}\n"
                           + Path(log).read_text()[-2000:])
    return time.time() - t0


def elprop(*args):
    return [sys.executable, "-m", "elprop.cli.main", *args]


def make_split(store, out: Path, n_val: int, n_test: int, seed: int):
    from elprop.density.store import DensityStore
    st = DensityStore(store)
    ok = st.done(["promolecular", "potential", "dft"])
    perm = np.random.default_rng(seed).permutation(ok)
    sp = {"test": np.sort(perm[:n_test]), "val": np.sort(perm[n_test:n_test + n_val]),
          "train": np.sort(perm[n_test + n_val:])}
    (out / "split.json").write_text(json.dumps({k: v.tolist() for k, v in sp.items()}))
    return sp


def layout(args) -> list:
    """`--channels-last` for the volumetric runs when asked (this script's and hk_curve.py's options both carry it)."""
    return ["--channels-last"] if args.channels_last else []


def hk_run(args, out, store, channels, name, split_file=None, extra=()):
    """An hk-unet training (the U-Net of args.hk_*) on ``split_file`` (default OUT/split.json), ``extra`` options
    appended; returns ``hk_result``."""
    run = out / "runs" / name
    sh(elprop("train", "--model", "hk-unet", "--density-store", store, "--channels", channels, "--split", "file",
              "--split-file", split_file or out / "split.json", "--dim", args.hk_dim, "--layers", args.hk_layers,
              "--crop", args.hk_crop, "--batch-size", args.hk_batch, "--lr", args.hk_lr, "--epochs", 100000,
              "--time-budget", args.hk_budget, "--ema", 0.99, "--augment", args.hk_augment, "--runs-dir",
              out / "runs", "--name", name, "--no-progress", *layout(args), *extra), out / f"{name}.log")
    return hk_result(run)


def hk_result(run: Path) -> dict:
    """A finished hk-unet run's test metric rows, all metric rows, epochs, training seconds and model folder."""
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    hist = list(csv.DictReader(open(run / "checkpoints" / "member_0" / "history.csv")))
    return {"metrics": [r for r in rows if r["split"] == "test"], "rows": rows, "epochs": len(hist),
            "train_s": float(hist[-1]["time_s"]) if hist else 0.0, "model": str(run / "model")}


def property_run(args, out, store, name, model, extra=()):
    run = out / "runs" / name
    cmd = ["train", "--model", model, "--targets", ",".join(PROPS), "--split", "file", "--split-file",
           out / "split.json", "--epochs", 100000, "--time-budget", args.prop_budget, "--runs-dir", out / "runs",
           "--name", name, "--no-progress", "--density-store", store, *extra]
    if model == "cnn3d":
        cmd += ["--dim", args.cnn_dim, "--layers", args.cnn_layers, "--pool", args.pool, "--batch-size",
                args.cnn_batch, "--lr", args.cnn_lr, *layout(args)]
    else:
        cmd += ["--dim", 128, "--layers", 4, "--batch-size", 16, "--lr", 1e-3]
    sh(elprop(*cmd), out / f"{name}.log")
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    hist = list(csv.DictReader(open(run / "checkpoints" / "member_0" / "history.csv")))
    return {"mae": {r["target"]: float(r["mae"]) for r in rows if r["split"] == "test"},
            "units": {r["target"]: r["unit"] for r in rows if r["split"] == "test"},
            "epochs": len(hist), "train_s": float(hist[-1]["time_s"]), "model": str(run / "model")}


def rotation_spread(model_dir, store, test_idx, n_rot: int):
    """Per target: mean over molecules of the std over rotations; MAE stored / rotated / TTA."""
    from elprop.core.units import TARGETS
    from elprop.represent.volume import VolumeSet, store_dataset
    from elprop.train.estimator import PropertyModel, _Rotated
    from elprop.train.loop import predict_scaled
    m = PropertyModel.load(model_dir)
    rep = VolumeSet(store, m.config["channels"])
    ds = store_dataset(store)
    y = np.column_stack([ds.target(t) for t in m.config["targets"]])[test_idx]
    net = m.nets[0]
    counts = rep.counts[test_idx]

    def to_units(mu_s):
        return m.scaler.inverse(mu_s, counts, np.ones_like(mu_s))[0]
    stored = to_units(predict_scaled(net, rep, test_idx)[0])
    rot = np.stack([to_units(predict_scaled(_Rotated(net, seed=100 + r), rep, test_idx)[0]) for r in range(n_rot)])
    tta = rot.mean(0)
    out = {}
    for k, t in enumerate(m.config["targets"]):
        out[t] = {"unit": TARGETS[t].unit, "spread": float(rot[:, :, k].std(0).mean()),
                  "mae_stored": float(np.mean(np.abs(stored[:, k] - y[:, k]))),
                  "mae_rotated": float(np.mean(np.abs(rot[:, :, k] - y[None, :, k]))),
                  "mae_tta": float(np.mean(np.abs(tta[:, k] - y[:, k])))}
    return out


def throughput(store, kind: str, channels, dim, layers, batch, pool=1, crop=0, steps=4, device="cpu"):
    """Training samples/s of a volumetric model as configured (data read from the store included)."""
    import torch

    from elprop.models import build_model
    from elprop.represent.hk import HKSet
    from elprop.represent.volume import VolumeSet
    from elprop.train.device import autocast, to_device
    arch = {"pool": pool} if kind == "cnn3d" and pool > 1 else ({"crop": crop} if crop else {})
    net = build_model(kind, [False] * len(PROPS), in_dim=len(channels), dim=dim, layers=layers, **arch).to(device)
    rep = HKSet(store, channels) if kind == "hk-unet" else VolumeSet(store, channels)
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    net.train()
    amp = device != "cpu"
    idx = np.nonzero(rep.valid)[0]
    times = []
    for s in range(steps + 1):
        t0 = time.time()
        b = to_device(rep.batch(idx[s * batch:(s + 1) * batch]), device)
        with autocast(device, amp):
            if kind == "hk-unet":
                loss = net.loss(b)[0]
            else:
                mu, var = net(b)
                loss = mu.float().abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.time() - t0)
    return batch / float(np.median(times[1:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=str(HERE / "out" / "dev.zarr"))
    ap.add_argument("--out", default=str(HERE / "out" / "volumetric"))
    ap.add_argument("--n-val", type=int, default=20)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hk-budget", type=float, default=1500)
    ap.add_argument("--hk-potential-budget", type=float, default=600,
                    help="budget of the HK map from the potential (0: skip it)")
    ap.add_argument("--hk-dim", type=int, default=64)
    ap.add_argument("--hk-layers", type=int, default=3)
    ap.add_argument("--hk-crop", type=int, default=32)
    ap.add_argument("--hk-batch", type=int, default=4)
    ap.add_argument("--hk-lr", type=float, default=2e-3)
    ap.add_argument("--hk-augment", default="octahedral", choices=["octahedral", "so3", "none"],
                    help="the HK map's training augmentation (default: octahedral, the CLI's default)")
    ap.add_argument("--prop-budget", type=float, default=300)
    ap.add_argument("--cnn-dim", type=int, default=64)
    ap.add_argument("--cnn-layers", type=int, default=3)
    ap.add_argument("--cnn-batch", type=int, default=8)
    ap.add_argument("--cnn-lr", type=float, default=1e-3)
    ap.add_argument("--pool", type=int, default=2)
    ap.add_argument("--rotations", type=int, default=16)
    ap.add_argument("--chain-inputs", default="dft,hk,promolecular,potential",
                    help="the grids the chain's cnn3d runs read, comma-separated (the graph models run beside them)")
    ap.add_argument("--channels-last", action="store_true",
                    help="train the volumetric models with `--channels-last` (faster on an AVX2 CPU)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: hk,chain,rotation,throughput")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    opts = {k: v for k, v in vars(args).items() if k not in ("skip", "out")}  # what the kept parts depend on
    if res.get("options", opts) != opts:  # a rerun keeps finished parts, so they must come from the same options
        diff = ", ".join(f"--{k.replace('_', '-')} {res['options'].get(k)} -> {v}" for k, v in opts.items()
                         if res["options"].get(k) != v)
        print(f"error: {out} holds a run with other options ({diff}); use a new --out", file=sys.stderr)
        return 2
    res["options"] = opts
    res["machine"] = f"{platform.machine()}, {platform.processor() or ''} {__import__('os').cpu_count()} cores"
    res["command"] = " ".join(sys.argv)
    sp = make_split(args.store, out, args.n_val, args.n_test, args.seed)
    res["split"] = {k: len(v) for k, v in sp.items()}
    print(f"split: {res['split']}", flush=True)

    def save():
        res_path.write_text(json.dumps(res, indent=1))

    chain_store = out / "chain.zarr"
    hk_done = out / "write_hk.done"  # the HK part finished in an earlier run that was then killed: keep it
    if "hk" not in skip and not (hk_done.exists() and "hk" in res):
        res["hk"] = {"promolecular": hk_run(args, out, args.store, "promolecular", "hk-promolecular")}
        print("HK from promolecular:", res["hk"]["promolecular"]["metrics"], flush=True)
        save()
        if args.hk_potential_budget:
            b, args.hk_budget = args.hk_budget, args.hk_potential_budget
            res["hk"]["potential"] = hk_run(args, out, args.store, "potential", "hk-potential")
            args.hk_budget = b
            print("HK from potential:", res["hk"]["potential"]["metrics"], flush=True)
            save()
        if chain_store.exists():
            shutil.rmtree(chain_store)
        shutil.copytree(args.store, chain_store)
        sh(elprop("predict-density", "--model", res["hk"]["promolecular"]["model"], "--density-store", chain_store,
                  "--write-kind", "hk"), out / "write_hk.log")
        hk_done.write_text("")
    if "chain" not in skip:
        runs = {}
        todo = [(f"cnn3d-{k}", "cnn3d", ["--channels", k]) for k in args.chain_inputs.split(",") if k]
        for name, model, extra in todo + [("bondgraph", "bondgraph", []), ("schnet", "schnet", [])]:
            done = res.get("chain", {}).get(name)
            if done and (out / "runs" / name / "metrics.csv").exists():  # finished in an earlier, killed run
                runs[name] = done
                continue
            runs[name] = property_run(args, out, chain_store, name, model, extra)
            print(name, runs[name]["mae"], flush=True)
            res["chain"] = runs
            save()
    if "rotation" not in skip:
        runs = dict(res.get("chain", {}))
        runs["cnn3d-dft-noaug"] = property_run(args, out, chain_store, "cnn3d-dft-noaug", "cnn3d",
                                               ["--channels", "dft", "--no-augment"])
        res["chain"] = runs
        res["rotation"] = {name: rotation_spread(runs[name]["model"], chain_store, sp["test"], args.rotations)
                           for name in ("cnn3d-dft", "cnn3d-dft-noaug")}
        print("rotation:", res["rotation"], flush=True)
        save()
    if "throughput" not in skip:
        import torch
        tp = {}
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for dev in devices:
            tp[dev] = {
                f"cnn3d dft 48³ pooled to {48 // args.pool}³, width {args.cnn_dim}": throughput(
                    args.store, "cnn3d", ["dft"], args.cnn_dim, args.cnn_layers, args.cnn_batch, pool=args.pool,
                    device=dev),
                f"cnn3d dft 48³ unpooled, width {args.cnn_dim}": throughput(
                    args.store, "cnn3d", ["dft"], args.cnn_dim, args.cnn_layers, 4, device=dev),
                f"hk-unet crops {args.hk_crop}³, width {args.hk_dim}": throughput(
                    args.store, "hk-unet", ["promolecular"], args.hk_dim, args.hk_layers, args.hk_batch,
                    crop=args.hk_crop, device=dev),
                f"hk-unet whole 48³ grids, width {args.hk_dim}": throughput(
                    args.store, "hk-unet", ["promolecular"], args.hk_dim, args.hk_layers, args.hk_batch, device=dev)}
            if dev == "cuda":
                tp[dev]["device"] = torch.cuda.get_device_name(0)
        res["throughput_samples_per_s"] = tp
        print("throughput:", tp, flush=True)
        save()
    (out / "results.md").write_text(report(res))
    print(report(res))


def report(res) -> str:
    lines = [f"- machine: {res['machine']}", f"- command: `{res['command']}`", f"- split: {res['split']}", ""]
    if "hk" in res:
        lines += ["| HK map input | test metric | model | promolecular baseline | model / baseline |",
                  "|---|---|---|---|---|"]
        for inp, r in res["hk"].items():
            for m in r["metrics"]:
                lines.append(f"| {inp} ({r['epochs']} epochs, {r['train_s']:.0f} s) | {m['metric']} ({m['unit']}) | "
                             f"{float(m['model']):.4g} | {float(m['promolecular']):.4g} | {float(m['ratio']):.3f} |")
        lines.append("")
    if "chain" in res:
        names = list(res["chain"])
        units = next(iter(res["chain"].values()))["units"]
        lines += ["| test MAE | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for t in PROPS:
            lines.append(f"| {t} ({units.get(t, '')}) | " + " | ".join(
                f"{res['chain'][n]['mae'].get(t, float('nan')):.4g}" for n in names) + " |")
        lines.append("| epochs in budget | " + " | ".join(str(res["chain"][n]["epochs"]) for n in names) + " |")
        lines.append("")
    if "rotation" in res:
        lines += ["| target | model | spread over rotations | MAE stored orientation | MAE rotated | MAE with TTA |",
                  "|---|---|---|---|---|---|"]
        for t in PROPS:
            for name, r in res["rotation"].items():
                v = r[t]
                lines.append(f"| {t} ({v['unit']}) | {name} | {v['spread']:.4g} | {v['mae_stored']:.4g} | "
                             f"{v['mae_rotated']:.4g} | {v['mae_tta']:.4g} |")
        lines.append("")
    if "throughput_samples_per_s" in res:
        lines += ["| training throughput | device | samples/s |", "|---|---|---|"]
        for dev, d in res["throughput_samples_per_s"].items():
            for k, v in d.items():
                if k != "device":
                    lines.append(f"| {k} | {d.get('device', dev)} | {v:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

"""Training throughput of the volumetric models (samples/s), one line per speed option, on CPU and/or CUDA.

    python benchmarks/cnn3d_speed.py [--device cpu,cuda] [--grids 24,32,48] [--batch 16] [--steps 6]
        [--variants fp32,channels_last,bf16,bf16+ckpt,compile] [--models cnn3d,hk-unet] [--out DIR]

Each line times full training steps (real-time rotation/translation augmentation of the batch, forward, backward,
AdamW step) of `cnn3d` (and the HK `hk-unet`) as `elprop train` builds them, on random density-like grids of the
given edge: the cost of a step does not depend on the values, so no density store is needed, and the figure is
the model's side of the pipeline (the store read is measured by benchmarks/density_store.py). The median of
--steps steps after two warm-up steps. Variants:
  fp32            plain float32
  channels_last   the channels-last-3d memory format for input and weights (`elprop train --channels-last`)
  bf16            bfloat16 autocast (on a CPU only where it supports bf16)
  bf16+ckpt       bf16 and gradient checkpointing per stage (the memory-saving path for large grids on a GPU)
  compile         torch.compile of the network (fp32)
A variant that fails (not supported here) is reported with its error, not fatal. Writes speed.json and speed.md to
--out (default benchmarks/out/cnn3d_speed). Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def one(kind: str, grid: int, batch: int, variant: str, device: str, steps: int, dim: int, layers: int) -> dict:
    import torch

    from elprop.models import build_model
    from elprop.train.device import autocast
    torch.manual_seed(0)
    targets = [False] * 5
    cl = variant == "channels_last"  # the model's own option (`elprop train --channels-last`)
    net = build_model(kind, targets, in_dim=1, dim=dim, layers=layers, channels_last=cl).to(device)
    net.train()
    if "ckpt" in variant:
        net.checkpointing = True
    step_net = net
    if variant == "compile":
        if kind == "hk-unet":  # loss() calls the module itself, so compile the U-Net inside it
            net.unet = torch.compile(net.unet)
        else:
            step_net = torch.compile(net)
    aug = net.train_transform()  # the augmentation `elprop train` applies (cnn3d: SO(3); hk-unet: octahedral)
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    amp = variant.startswith("bf16")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, grid, grid, grid, generator=g) ** 4  # density-like: mostly small, a few large values
    if kind == "cnn3d":
        b = {"x": x, "y": torch.randn(batch, 5, generator=g), "mask": torch.ones(batch, 5)}
    else:
        b = {"x": x, "pro": x.clone(), "y": x * 1.01}
    b = {k: v.to(device) for k, v in b.items()}
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for s in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        bb = aug(b)
        with autocast(device, amp):
            if kind == "hk-unet":
                loss = net.loss(bb)[0]
            else:
                mu, var = step_net(bb)
                loss = (mu.float() - bb["y"]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = float(np.median(times[2:]))
    row = {"model": kind, "grid": grid, "batch": batch, "variant": variant, "device": device,
           "samples_per_s": batch / t, "step_s": t, "first_step_s": times[0]}
    if device == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="comma-separated: cpu, cuda (default: cpu)")
    ap.add_argument("--grids", default="24,32,48")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--dim", type=int, default=16, help="first stage width (default 16: 16/32/64/128)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--variants", default="fp32,channels_last,bf16,bf16+ckpt,compile")
    ap.add_argument("--models", default="cnn3d,hk-unet")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/cnn3d_speed"))
    a = ap.parse_args()
    import torch
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for dev in a.device.split(","):
        if dev == "cuda" and not torch.cuda.is_available():
            print("cuda: PyTorch sees no GPU here; skipped", file=sys.stderr)
            continue
        for kind in a.models.split(","):
            for grid in map(int, a.grids.split(",")):
                for v in a.variants.split(","):
                    try:
                        r = one(kind, grid, a.batch, v, dev, a.steps, a.dim, a.layers)
                    except Exception as e:  # noqa: BLE001 - a variant this machine cannot run is a result too
                        r = {"model": kind, "grid": grid, "batch": a.batch, "variant": v, "device": dev,
                             "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    mach = {"cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    (out / "speed.json").write_text(json.dumps({"machine": mach, "args": vars(a), "rows": rows}, indent=1))
    lines = [f"Machine: {mach['cpu']}; GPU: {mach['gpu'] or 'none'}. Batch {a.batch}, median of {a.steps} steps.", "",
             "| model | device | grid | variant | samples/s | step s | peak GPU GiB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['device']} | {r['grid']}³ | {r['variant']} | failed: {r['error']} | | |")
        else:
            lines.append(f"| {r['model']} | {r['device']} | {r['grid']}³ | {r['variant']} | {r['samples_per_s']:.1f} | "
                         f"{r['step_s']:.3f} | {r.get('peak_mem_gib', float('nan')):.2f} |")
    (out / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a volumetric training step spends its time on real grids: store read, real-time augmentation, and the
network's forward + backward + AdamW step, each timed on its own, with and without `--channels-last`.

    python benchmarks/cnn3d_pipeline.py --store benchmarks/out/dev1k.zarr [--steps 8] [--out DIR]

Models as the chain of `benchmarks/volumetric.py` trains them: cnn3d (`--dim 64 --layers 3 --pool 2`, batch 8,
SO(3) augmentation at the stored 48³, then pooled to 24³ inside the network) on DFT grids, and hk-unet
(`--dim 64 --layers 3 --crop 32`, batch 4, octahedral augmentation) on promolecular grids. Each figure is the
median over --steps batches after one warm-up batch, in samples/s; "step" is read + augment + network, as
`elprop train` runs them one after the other in one process. Writes pipeline.json and pipeline.md to --out
(default benchmarks/out/cnn3d_pipeline). Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def one(store: str, kind: str, channels_last: bool, steps: int) -> dict:
    import torch

    from elprop.models import build_model
    from elprop.represent.hk import HKSet
    from elprop.represent.volume import VolumeSet
    torch.manual_seed(0)
    if kind == "cnn3d":
        rep, batch = VolumeSet(store, ["dft"]), 8
        net = build_model("cnn3d", [False] * 5, in_dim=1, dim=64, layers=3, pool=2, channels_last=channels_last)
    else:
        rep, batch = HKSet(store, ["promolecular"]), 4
        net = build_model("hk-unet", [False] * 5, in_dim=1, dim=64, layers=3, crop=32, channels_last=channels_last)
    net.train()
    aug = net.train_transform()
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    idx = np.nonzero(rep.valid)[0]
    t = {"read": [], "augment": [], "network": []}
    for s in range(steps + 1):
        b, t_read = timed(lambda: rep.batch(idx[s * batch:(s + 1) * batch]))
        bb, t_aug = timed(lambda: aug(b))

        def step():
            if kind == "cnn3d":
                mu, _ = net(bb)
                loss = mu.float().abs().mean()
            else:
                loss = net.loss(bb)[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _, t_net = timed(step)
        if s:  # the first batch warms up
            t["read"].append(t_read)
            t["augment"].append(t_aug)
            t["network"].append(t_net)
    med = {k: float(np.median(v)) for k, v in t.items()}
    whole = sum(med.values())
    return {"model": kind, "channels_last": channels_last, "batch": batch,
            **{f"{k}_samples_per_s": batch / v for k, v in med.items()},
            "step_samples_per_s": batch / whole, **{f"{k}_share": v / whole for k, v in med.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=str(ROOT / "benchmarks/out/dev1k.zarr"))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/cnn3d_pipeline"))
    a = ap.parse_args()
    import torch
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in ("cnn3d", "hk-unet"):
        for cl in (False, True):
            rows.append(one(a.store, kind, cl, a.steps))
            print(json.dumps(rows[-1]), flush=True)
    meta = {"command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads", "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M")}
    (out / "pipeline.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"- {k}: {v}" for k, v in meta.items()] + [
        "", "| model | channels-last | read | augment | network | whole step | shares read / augment / network |",
        "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {'yes' if r['channels_last'] else 'no'} | {r['read_samples_per_s']:.0f} | "
                     f"{r['augment_samples_per_s']:.0f} | {r['network_samples_per_s']:.1f} | "
                     f"{r['step_samples_per_s']:.1f} | {r['read_share']:.2f} / {r['augment_share']:.2f} / "
                     f"{r['network_share']:.2f} |")
    (out / "pipeline.md").write_text("\n".join(lines) + "\n(samples/s)\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

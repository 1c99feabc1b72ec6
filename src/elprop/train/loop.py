"""The training loop of one network: time/epoch budget, cosine schedule, mid-epoch checkpoints, resume.

A checkpoint (``last.pt``) holds weights, optimizer state, the epoch, the step inside the epoch and the training
time used, so a killed run restarted with the same command continues where it stopped. The epoch's batch
order is a function of (seed, epoch), so a resumed epoch skips exactly the batches already done.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from elprop.core.cache import atomic_write, write_csv


def predict_scaled(net, rep, idx, batch_size: int | None = None, amp: bool = False):
    """(mean, variance) in scaled units for rows ``idx``, on the network's device."""
    from elprop.train.device import autocast, net_device, to_device
    net.eval()
    dev = net_device(net)
    batch_size = batch_size or getattr(rep, "predict_batch", 512)
    mus, vars_ = [], []
    with torch.no_grad(), autocast(dev, amp):
        for s in range(0, len(idx), batch_size):
            mu, var = net(to_device(rep.batch(idx[s:s + batch_size]), dev))
            mus.append(mu.float().cpu().numpy())
            vars_.append(var.float().cpu().numpy())
    if not mus:
        t = net.n_targets if hasattr(net, "n_targets") else net.readout.ext.shape[0]
        return np.zeros((0, t)), np.zeros((0, t))
    return np.concatenate(mus).astype(np.float64), np.concatenate(vars_).astype(np.float64)


def validation_loss(net, rep, idx, batch_size: int, amp: bool = False) -> float:
    """The mean of ``net.loss``'s metric over molecules ``idx``, in eval mode (no augmentation)."""
    from elprop.train.device import autocast, net_device, to_device
    dev = net_device(net)
    net.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            b = idx[s:s + batch_size]
            with autocast(dev, amp):
                _, metric = net.loss(to_device(rep.batch(b), dev))
            tot += float(metric) * len(b)
            n += len(b)
    return tot / max(n, 1)


def loss_fn(mu, var, y, weights=None):
    """L1 on the means plus the Gaussian NLL of the variances around the (detached) means, NaN-masked.
    ``weights`` [T] weighs the targets' L1 terms (default: equal); the second value returned, the L1 that is
    logged, is unweighted."""
    ok = torch.isfinite(y)
    y0 = torch.where(ok, y, torch.zeros_like(y))
    okf = ok.float()
    err = (mu - y0).abs() * okf
    l1 = err.sum() / okf.sum().clamp(min=1)
    fit = l1 if weights is None else (err * weights).sum() / (okf * weights).sum().clamp(min=1e-12)
    r2 = (mu.detach() - y0) ** 2
    nll = ((0.5 * (torch.log(var) + r2 / var)) * okf).sum() / okf.sum().clamp(min=1)
    return fit + 0.1 * nll, l1


def _save_ckpt(path: Path, state: dict):
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def train_network(net, rep, y_scaled, train_idx, val_idx, out_dir: Path, *, epochs: int = 100,
                  time_budget: float | None = None, batch_size: int = 128, lr: float = 1e-3,
                  weight_decay: float = 1e-5, ema: float = 0.0, seed: int = 0,
                  ckpt_every_s: float = 120.0, progress: bool = True, log=print, device="cpu",
                  amp: bool = False, target_weights=None):
    """Train ``net`` in place; returns (best state_dict, history rows). Resumes from ``out_dir/last.pt``.

    ``ema`` > 0 keeps an exponential moving average of the weights (decay ``ema`` per step, with the usual
    warm-up min(ema, (1 + t) / (10 + t))); validation, the best checkpoint and the returned weights use it.
    ``device`` is where the network trains (it stays there); ``amp`` turns on bfloat16 autocasting (on GPU).
    Checkpoints are portable: a run started on a GPU can resume on the CPU and the other way round."""
    from elprop.train.device import autocast, to_device
    device = torch.device(device)
    net.to(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    state = {"epoch": 0, "step": 0, "elapsed": 0.0, "best": math.inf, "history": [], "t": 0}
    avg = {k: v.detach().clone() for k, v in net.state_dict().items()} if ema > 0 else None
    # parameters are on the device before the optimizer's state is created or loaded (it follows them)
    last = out_dir / "last.pt"
    if last.exists():
        ck = torch.load(last, weights_only=False, map_location="cpu")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        state.setdefault("t", 0)
        if avg is not None and ck.get("ema") is not None:
            avg = {k: v.to(device) for k, v in ck["ema"].items()}
        log(f"resuming from {last}: epoch {state['epoch'] + 1}, step {state['step']}, "
            f"{state['elapsed']:.0f} s of training done")
    best_path = out_dir / "best.pt"
    # y_scaled None: the batches carry their own targets and the network scores them (net.loss, e.g. the HK map)
    y_t = None if y_scaled is None else torch.from_numpy(y_scaled.astype(np.float32)).to(device)
    w_t = None if target_weights is None else torch.as_tensor(target_weights, dtype=torch.float32, device=device)
    n_batches = max(1, len(train_idx) // batch_size)
    t_last_ckpt = time.time()

    def checkpoint():
        _save_ckpt(last, {"model": net.state_dict(), "opt": opt.state_dict(), "state": state, "ema": avg})

    def ema_update():
        d = min(ema, (1 + state["t"]) / (10 + state["t"]))
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.dtype.is_floating_point:
                    avg[k].mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    avg[k].copy_(v)

    class _Swapped:  # evaluate with the averaged weights, then put the raw ones back
        def __enter__(self):
            self.raw = {k: v.detach().clone() for k, v in net.state_dict().items()} if avg is not None else None
            if avg is not None:
                net.load_state_dict(avg)

        def __exit__(self, *exc):
            if self.raw is not None:
                net.load_state_dict(self.raw)

    def fraction_done():
        f = state["epoch"] / epochs if epochs else 0.0
        if time_budget:
            f = max(f, state["elapsed"] / time_budget)
        return min(f, 1.0)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n_batches, desc="training", unit="batch", mininterval=1.0, leave=False)
    while state["epoch"] < epochs and fraction_done() < 1.0:
        net.train()
        perm = np.random.default_rng([seed, state["epoch"]]).permutation(train_idx)
        if bar is not None:
            bar.reset()
            bar.update(state["step"])
            bar.set_description(f"epoch {state['epoch'] + 1}")
        losses = []
        stopped = False
        while state["step"] < n_batches:
            t0 = time.time()
            for g in opt.param_groups:  # cosine decay to 1% over the budget
                g["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * fraction_done())))
            bidx = perm[state["step"] * batch_size:(state["step"] + 1) * batch_size]
            batch = to_device(rep.batch(bidx), device)
            with autocast(device, amp):
                if y_t is None:
                    loss, l1 = net.loss(batch)
                else:
                    mu, var = net(batch)
                    loss, l1 = loss_fn(mu.float(), var.float(), y_t[torch.as_tensor(bidx, device=device)], w_t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            state["t"] += 1
            if avg is not None:
                ema_update()
            losses.append(l1.item())
            state["step"] += 1
            state["elapsed"] += time.time() - t0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(l1=f"{np.mean(losses[-50:]):.3f}")
            if time.time() - t_last_ckpt > ckpt_every_s:
                checkpoint()
                t_last_ckpt = time.time()
            if time_budget and state["elapsed"] >= time_budget:
                stopped = True
                break
        t_val = time.time()
        with _Swapped():
            if y_t is None:
                val = validation_loss(net, rep, val_idx, batch_size, amp) if len(val_idx) \
                    else float(np.mean(losses))
            else:
                mu_v, _ = predict_scaled(net, rep, val_idx, amp=amp)
                err = np.abs(mu_v - y_scaled[val_idx])
                val = float(np.nanmean(err)) if len(val_idx) else float(np.mean(losses))
        val_state = {k: v.clone() for k, v in avg.items()} if avg is not None else None
        state["elapsed"] += time.time() - t_val  # the budget covers validation too, as a wall-clock budget
        row = {"epoch": state["epoch"] + 1, "time_s": round(state["elapsed"], 1),
               "train_l1_scaled": round(float(np.mean(losses)) if losses else float("nan"), 5),
               "val_l1_scaled": round(val, 5), "lr": opt.param_groups[0]["lr"]}
        state["history"].append(row)
        if val < state["best"]:
            state["best"] = val
            _save_ckpt(best_path, val_state if val_state is not None else net.state_dict())
        log(f"epoch {row['epoch']}: train {row['train_l1_scaled']:.4f}  val {val:.4f} (scaled L1)  "
            f"{state['elapsed']:.0f} s")
        state["epoch"] += 1 if not stopped else 0
        state["step"] = 0 if not stopped else state["step"]
        checkpoint()
        t_last_ckpt = time.time()
        if stopped:
            break
    if bar is not None:
        bar.close()
    best = torch.load(best_path, weights_only=True, map_location=device) if best_path.exists() \
        else net.state_dict()
    net.load_state_dict(best)
    write_csv(out_dir / "history.csv", state["history"])
    return best, state["history"]


"""Pieces of training shared by every family: the loss of mean-variance networks, prediction and validation in
scaled units, and ``train_network`` (which trains on Lightning, ``elprop.train.lightning``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch



def predict_scaled(net, rep, idx, batch_size: int | None = None, amp: bool = False):
    """(mean, variance) in scaled units for rows ``idx``, on the network's device."""
    from elprop.train.device import autocast, net_device, to_device
    net.eval()
    dev = net_device(net)
    batch_size = batch_size or getattr(rep, "predict_batch", 256)
    idx = np.asarray(idx)
    # molecules of similar size batched together: padded (dense) batches waste less (about 1.7x faster on QM9)
    counts = getattr(rep, "counts", None)
    order = np.argsort(counts[idx].sum(1), kind="stable") if counts is not None and len(idx) else np.arange(len(idx))
    mus, vars_ = [], []
    with torch.no_grad(), autocast(dev, amp):
        for s in range(0, len(idx), batch_size):
            mu, var = net(to_device(rep.batch(idx[order[s:s + batch_size]]), dev))
            mus.append(mu.float().cpu().numpy())
            vars_.append(var.float().cpu().numpy())
    if not mus:
        t = net.n_targets if hasattr(net, "n_targets") else net.readout.ext.shape[0]
        return np.zeros((0, t)), np.zeros((0, t))
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return (np.concatenate(mus).astype(np.float64)[back], np.concatenate(vars_).astype(np.float64)[back])


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


def train_network(net, rep, y_scaled, train_idx, val_idx, out_dir: Path, **options):
    """Train ``net`` in place on Lightning (:func:`elprop.train.lightning.train_lightning`); returns (best
    state_dict, history rows). Resumes from ``out_dir/last.ckpt``."""
    from elprop.train.lightning import train_lightning
    return train_lightning(net, rep, y_scaled, train_idx, val_idx, out_dir, **options)

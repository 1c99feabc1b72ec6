"""Training on Lightning: one generic ``LightningModule`` for every torch family, a resumable batch loader, and the
callbacks that carry the time budget, the moving average of the weights (EMA), checkpoints and the epoch log.

- ``FamilyTask`` trains any network that either returns ``(mean, variance)`` for scaled targets (its loss is
  :func:`elprop.train.loop.loss_fn`, weighted per target) or scores its own batches (``net.loss``, the HK map).
  A network's ``train_transform()`` (real-time augmentation) is applied to training batches before they reach
  it; a network never changes its own input.
- ``EpochBatches`` yields the batches of an epoch's seeded permutation, split across DDP processes by rank.
  It is stateful (Lightning saves its position in the checkpoint), so a run killed mid-epoch resumes at the next
  batch of the same permutation.
- Checkpoints (``last.ckpt``) hold the weights, the optimiser, Lightning's loop position (epoch and step), the
  batch loader's position, the EMA weights, the torch/NumPy/Python random states and the elprop state (time
  used, best validation score, history). They load with ``torch.load(weights_only=True)``: tensors, numbers,
  strings, lists and dicts only. Writes are atomic.

The learning rate follows the cosine of the fraction done, max(epoch / epochs, time used / budget), decayed to
1 % (as elprop's earlier hand-written loop did, so figures carry over).
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from elprop.core.cache import write_csv
from elprop.train.loop import loss_fn, predict_scaled, validation_loss


class EpochBatches:
    """The training batches of one epoch: ``permutation([seed, epoch])`` of ``train_idx`` in slices of
    ``batch_size`` (the last partial slice dropped), batch k going to process k mod world_size. Each batch is
    ``rep.batch(idx)`` plus ``"_idx"``, the rows (for the scaled targets). Lightning tells it the epoch
    (``set_epoch``, through ``sampler``) and saves its position (``state_dict``), which the trainer's
    ``StepCount`` advances after every optimiser step."""

    def __init__(self, rep, train_idx, batch_size: int, seed: int):
        self.rep, self.train_idx, self.batch_size, self.seed = rep, np.asarray(train_idx), int(batch_size), seed
        self.rank, self.world = 0, 1
        self.epoch, self.start = 0, 0
        self.done_in_epoch = 0
        self.sampler = self  # Lightning calls dataloader.sampler.set_epoch(epoch) at every epoch's start

    def set_rank(self, rank: int, world: int):
        self.rank, self.world = int(rank), int(world)

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        return max(1, max(1, len(self.train_idx) // self.batch_size) // self.world)

    def __iter__(self):
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.train_idx)
        n = max(1, len(self.train_idx) // self.batch_size)
        mine = list(range(self.rank, n, self.world))[:len(self)]
        start, self.start = self.start, 0
        self.done_in_epoch = start
        for k in mine[start:]:
            bidx = perm[k * self.batch_size:(k + 1) * self.batch_size]
            batch = dict(self.rep.batch(bidx))
            batch["_idx"] = torch.as_tensor(bidx, dtype=torch.long)
            yield batch

    # Lightning saves and restores these with the checkpoint (a stateful loader)
    def state_dict(self):
        return {"epoch": int(self.epoch), "done": int(self.done_in_epoch)}

    def load_state_dict(self, state):
        self.epoch, self.start = int(state["epoch"]), int(state["done"])
        self.done_in_epoch = self.start


class FamilyTask(L.LightningModule):
    def __init__(self, net, y_scaled, *, lr: float, weight_decay: float, epochs: int, time_budget=None,
                 target_weights=None, cycles: int = 1):
        super().__init__()
        self.net = net
        self.lr, self.weight_decay, self.epochs, self.time_budget = lr, weight_decay, epochs, time_budget
        self.cycles = max(1, int(cycles))
        self.y = None if y_scaled is None else torch.from_numpy(np.asarray(y_scaled, np.float32))
        self.w = None if target_weights is None else torch.as_tensor(target_weights, dtype=torch.float32)
        make = getattr(net, "train_transform", None)
        self.transform = make() if make is not None else None
        self.elprop = {"elapsed": 0.0, "best": math.inf, "history": [], "t": 0, "epochs_done": 0}
        self.losses: list[float] = []
        self.loader: EpochBatches | None = None
        self._t_end = None  # when the last counted step (or validation) ended

    def fraction_done(self) -> float:
        """The part of training done, step by step: epochs (with the steps of the current one) over --epochs, or
        the time spent over the budget, whichever is further."""
        within = self.loader.done_in_epoch / len(self.loader) if self.loader is not None else 0.0
        f = (self.current_epoch + within) / self.epochs if self.epochs else 0.0
        if self.time_budget:
            f = max(f, self.elprop["elapsed"] / self.time_budget)
        return min(f, 1.0)

    def on_fit_start(self):
        # the scaled targets and loss weights move to the training device once, not at every step
        self.y = None if self.y is None else self.y.to(self.device)
        self.w = None if self.w is None else self.w.to(self.device)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def on_train_batch_start(self, batch, batch_idx):
        # the budget is wall-clock: a step's time runs from the end of the step before it (or of the validation
        # before it), so reading and collating the batch counts too, not only the forward and backward passes
        self._t0 = self._t_end if self._t_end is not None else time.time()
        if self.time_budget and self.elprop["elapsed"] >= self.time_budget:
            self.trainer.should_stop = True
            return -1  # skip the rest of the epoch: the budget is spent
        # cosine decay to 1 % over the budget; with cycles > 1, restarted at the start of every cycle (snapshot
        # ensembles, Huang et al. 2017: each cycle ends in a different minimum, and its weights are one member)
        f = self.fraction_done() * self.cycles
        local = f - math.floor(f) if f < self.cycles else 1.0
        for g in self.optimizers().optimizer.param_groups:
            g["lr"] = self.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * local)))

    def training_step(self, batch, batch_idx):
        idx = batch.pop("_idx")
        if self.transform is not None:
            batch = self.transform(batch)
        if self.y is None:
            loss, l1 = self.net.loss(batch)
        else:
            mu, var = self.net(batch)
            loss, l1 = loss_fn(mu.float(), var.float(), self.y[idx], self.w)
        self.losses.append(float(l1.detach()))
        return loss

    def on_save_checkpoint(self, checkpoint):
        checkpoint["elprop"] = {"elapsed": float(self.elprop["elapsed"]), "best": float(self.elprop["best"]),
                                "t": int(self.elprop["t"]), "history": list(self.elprop["history"]),
                                "epochs_done": int(self.elprop.get("epochs_done", 0)),
                                "done_in_epoch": int(self.loader.done_in_epoch if self.loader else 0),
                                "losses": [float(v) for v in self.losses], "rng": _rng_state()}

    def on_load_checkpoint(self, checkpoint):
        st = checkpoint.get("elprop", {})
        self.elprop.update({k: st[k] for k in ("elapsed", "best", "t", "history", "epochs_done") if k in st})
        self.losses = list(st.get("losses", []))
        if "rng" in st:
            self._rng_to_restore = st["rng"]

    def on_train_start(self):
        # random states are restored here, after Lightning has set everything else up, so the next draw is the
        # one the interrupted run would have made
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            _set_rng_state(rng)
            self._rng_to_restore = None


class StepCount(L.Callback):
    """First of the callbacks after every step: counts it (steps, the loader's position, the time used, the same
    on every process), so that the EMA and a checkpoint saved right after see this step as done."""

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
        task.elprop["t"] += 1
        task.loader.done_in_epoch += 1
        now = time.time()
        elapsed = task.elprop["elapsed"] + now - task._t0
        task.elprop["elapsed"] = float(trainer.strategy.broadcast(elapsed, src=0))
        task._t_end = now


class EMA(L.Callback):
    """An exponential moving average of the weights (decay ``decay`` per step, warm-up min(decay, (1+t)/(10+t)));
    validation, the best checkpoint and the returned weights use it."""

    def __init__(self, decay: float):
        self.decay, self.avg = decay, None

    def on_fit_start(self, trainer, task):
        if self.avg is None:
            self.avg = {k: v.detach().clone() for k, v in task.net.state_dict().items()}

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
        t = task.elprop["t"]  # steps taken, this one included (StepCount runs first)
        d = min(self.decay, (1 + t) / (10 + t))
        with torch.no_grad():
            for k, v in task.net.state_dict().items():
                if v.dtype.is_floating_point:
                    self.avg[k].mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    self.avg[k].copy_(v)

    def state_dict(self):
        return {"avg": {k: v.detach().cpu() for k, v in (self.avg or {}).items()}}

    def load_state_dict(self, state):
        self.avg = {k: v.clone() for k, v in state.get("avg", {}).items()} or None

    def swapped(self, task):
        return _Swapped(task.net, self.avg)


class _Swapped:
    """Evaluate with the averaged weights, then put the raw ones back."""

    def __init__(self, net, avg):
        self.net, self.avg = net, avg

    def __enter__(self):
        self.raw = {k: v.detach().clone() for k, v in self.net.state_dict().items()} if self.avg else None
        if self.avg:
            self.net.load_state_dict({k: v.to(self.raw[k].device) for k, v in self.avg.items()})

    def __exit__(self, *exc):
        if self.raw is not None:
            self.net.load_state_dict(self.raw)


class Checkpoints(L.Callback):
    """``last.ckpt`` every ``every_s`` seconds (and/or ``every_steps`` steps) and at every epoch's end, written
    atomically; the time budget: stop once ``elapsed`` reaches it. At each epoch's end: the validation score
    (scaled L1 of the means, or the network's own loss metric), ``best.pt`` (weights) when it improves, one
    history row, and one log line."""

    def __init__(self, out_dir: Path, rep, y_scaled, val_idx, batch_size: int, ema: EMA | None, log, amp: bool,
                 every_s: float = 120.0, every_steps: int | None = None):
        self.out, self.rep, self.y, self.val_idx = Path(out_dir), rep, y_scaled, np.asarray(val_idx)
        self.batch_size, self.ema, self.say, self.amp = batch_size, ema, log, amp
        self.every_s, self.every_steps = every_s, every_steps
        self._t_last = time.time()

    def save(self, trainer):
        last = self.out / "last.ckpt"
        tmp = self.out / ".last.ckpt.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # (Lightning's name for 'weights only, no state')
        if trainer.is_global_zero:
            os.replace(tmp, last)
        trainer.strategy.barrier("elprop checkpoint")
        self._t_last = time.time()

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
        due = (self.every_steps and task.elprop["t"] % self.every_steps == 0) or \
              (time.time() - self._t_last > self.every_s)
        if trainer.strategy.broadcast(bool(due), src=0):  # every process decides alike
            self.save(trainer)
            _fault_injection(task.elprop["t"])

    def on_train_epoch_end(self, trainer, task):
        t_val = time.time()
        net = task.net
        with (self.ema.swapped(task) if self.ema is not None else _Swapped(net, None)):
            if len(self.val_idx) == 0:
                val = float(np.mean(task.losses)) if task.losses else float("nan")
            elif self.y is None:
                val = validation_loss(net, self.rep, self.val_idx, self.batch_size, self.amp)
            else:
                mu_v, _ = predict_scaled(net, self.rep, self.val_idx, amp=self.amp)
                val = float(np.nanmean(np.abs(mu_v - self.y[self.val_idx])))
            state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        net.train()
        st = task.elprop
        st["elapsed"] += time.time() - t_val  # the budget covers validation too, as a wall-clock budget
        task._t_end = time.time()  # and the next epoch's first batch read counts from here
        complete = task.loader.done_in_epoch >= len(task.loader)
        row = {"epoch": task.current_epoch + 1, "steps": int(task.loader.done_in_epoch),
               "time_s": round(st["elapsed"], 1),
               "train_l1_scaled": round(float(np.mean(task.losses)) if task.losses else float("nan"), 5),
               "val_l1_scaled": round(val, 5), "lr": task.optimizers().optimizer.param_groups[0]["lr"]}
        task.losses = []
        st["history"].append(row)
        if complete:
            st["epochs_done"] += 1
        from elprop.core.cache import atomic_write
        if val < st["best"]:
            st["best"] = val
            if trainer.is_global_zero:
                atomic_write(self.out / "best.pt", lambda tmp: torch.save(state, tmp))
        if task.cycles > 1 and trainer.is_global_zero:  # a snapshot at the end of each learning-rate cycle
            frac = st["epochs_done"] / task.epochs if task.epochs else 0.0
            if task.time_budget:
                frac = max(frac, st["elapsed"] / task.time_budget)
            ended = task.cycles if frac >= 1.0 or trainer.should_stop else math.floor(frac * task.cycles + 1e-9)
            for c in range(ended):
                if not (self.out / f"snapshot_{c}.pt").exists():
                    atomic_write(self.out / f"snapshot_{c}.pt", lambda tmp: torch.save(state, tmp))
        if trainer.is_global_zero:
            self.say(f"epoch {row['epoch']}: train {row['train_l1_scaled']:.4f}  val {val:.4f} (scaled L1)  "
                     f"{st['elapsed']:.0f} s")
        self.save(trainer)


def train_lightning(net, rep, y_scaled, train_idx, val_idx, out_dir: Path, *, epochs: int = 100,
                    time_budget: float | None = None, batch_size: int = 128, lr: float = 1e-3,
                    weight_decay: float = 1e-5, ema: float = 0.0, seed: int = 0, ckpt_every_s: float = 120.0,
                    ckpt_every_steps: int | None = None, progress: bool = True, log=print, device="cpu",
                    amp: bool = False, target_weights=None, devices="auto", num_nodes: int = 1,
                    strategy: str = "auto", precision: str | None = None, callbacks=(), cycles: int = 1):
    """Train ``net`` in place with a Lightning ``Trainer``; returns (best state_dict, history rows), like
    :func:`elprop.train.loop.train_network`. Resumes from ``out_dir/last.ckpt``. ``devices``, ``num_nodes``,
    ``strategy`` and ``precision`` go to the Trainer (``strategy="ddp"`` with 2 CPU devices trains in two
    processes over gloo; ``--batch-size`` is per process). ``cycles`` > 1: the learning rate restarts that many
    times and the weights at the end of each cycle are kept as ``snapshot_<c>.pt`` (a snapshot ensemble)."""
    import logging
    for name in ("lightning.pytorch", "lightning.fabric"):  # device banners and tips: not for our users' screens
        logging.getLogger(name).setLevel(logging.WARNING)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    if devices == "auto":
        devices = [device.index] if device.type == "cuda" and device.index is not None else 1
    precision = precision or ("bf16-mixed" if amp else "32-true")
    task = FamilyTask(net, y_scaled, lr=lr, weight_decay=weight_decay, epochs=epochs, time_budget=time_budget,
                      target_weights=target_weights, cycles=cycles)
    loader = EpochBatches(rep, train_idx, batch_size, seed)
    task.loader = loader
    ema_cb = EMA(ema) if ema > 0 else None
    ckpt = Checkpoints(out_dir, rep, y_scaled, val_idx, batch_size, ema_cb, log, amp, ckpt_every_s,
                       ckpt_every_steps)
    cbs = [c for c in (StepCount(), ema_cb, ckpt) if c is not None] + list(callbacks)  # in this order
    if progress:
        from lightning.pytorch.callbacks import TQDMProgressBar
        cbs.append(TQDMProgressBar(refresh_rate=max(1, len(loader) // 100)))
    trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                        precision=precision, max_epochs=epochs, gradient_clip_val=10.0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=cbs,
                        use_distributed_sampler=False, deterministic=False)
    last = out_dir / "last.ckpt"
    done = False
    if last.exists():
        st = torch.load(last, weights_only=True, map_location="cpu").get("elprop", {})
        done = st.get("epochs_done", 0) >= epochs or bool(time_budget and st.get("elapsed", 0.0) >= time_budget)
        log(f"resuming from {last}: epoch {st.get('epochs_done', 0) + 1}, step {st.get('done_in_epoch', 0)}, "
            f"{st.get('elapsed', 0.0):.0f} s of training done")
        task.elprop["history"] = list(st.get("history", []))
    if (out_dir / "last.pt").exists() and not last.exists():
        log(f"note: {out_dir / 'last.pt'} is a checkpoint of elprop's earlier training loop; training starts over")
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*`training_step` returned.*")
        warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
        if not done:
            _fit(trainer, task, loader, last if last.exists() else None)
    best_path = out_dir / "best.pt"
    best = torch.load(best_path, weights_only=True, map_location=device) if best_path.exists() \
        else net.state_dict()
    net.load_state_dict(best)
    net.to(device)
    if trainer.is_global_zero:
        write_csv(out_dir / "history.csv", task.elprop["history"])
    net.trainer_rank = trainer.global_rank
    return best, task.elprop["history"]


def _fit(trainer, task, loader, ckpt_path):
    class _Rank(L.Callback):  # the loader learns its process's rank once the processes exist
        def setup(self, trainer, task, stage):
            loader.set_rank(trainer.global_rank, trainer.world_size)
    trainer.callbacks.append(_Rank())
    trainer.fit(task, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)


def _fault_injection(step: int):
    """Tests set ELPROP_KILL_AFTER_STEP=k to SIGKILL training right after the checkpoint of step k (mid-epoch)."""
    at = os.environ.get("ELPROP_KILL_AFTER_STEP")
    if at is not None and int(at) == int(step):
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


# --- random states, as plain tensors and numbers (torch.load(weights_only=True) reads them) -------------------
def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    out = {"torch": torch.get_rng_state(),
           "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "gauss": float(gauss)},
           "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                      "gauss": py_gauss if py_gauss is None else float(py_gauss)}}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(st: dict):
    torch.set_rng_state(st["torch"].cpu())
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = st["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])

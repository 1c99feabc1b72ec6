"""Volumetric networks: a 3D CNN from density grids to properties, and a 3D U-Net for the Hohenberg-Kohn map.

Building blocks:
- ``SE3d``: Squeeze-and-Excitation (global average pool -> bottleneck MLP -> sigmoid channel gates);
- ``Inception3d``: parallel convolutions with different receptive fields (1³, 3³, 3³ dilated by 2, and a 3³
  average pool followed by 1³), concatenated;
- ``ResBlock3d``: an Inception unit, a 3³ convolution and an SE gate on a residual (skip) path.

``PropertyCNN`` optionally average-pools its input grids (``pool``, after augmentation, so rotations are resampled
at the stored resolution), then stacks a stem, stages of residual blocks with stride-2 downsampling between them, global
average + max pooling and an MLP giving per-target mean and variance (the same contract as the graph models).
``memory_estimate`` traces a model on PyTorch's meta device (no memory, no compute) to give activation and
parameter memory per sample and the largest batch that fits a given device.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def stage_widths(dim: int, layers: int) -> tuple[int, ...]:
    """Channel widths of ``layers`` stages doubling up to ``dim`` (at least 8): 128, 4 -> (16, 32, 64, 128)."""
    return tuple(max(8, dim >> (layers - 1 - k)) for k in range(layers))


class ChannelNorm(nn.Module):
    """Normalisation across the channels of each voxel (a per-voxel LayerNorm). It uses no spatial statistics, so
    a fully convolutional network behaves the same on a training crop and on a whole grid."""

    def __init__(self, c: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - mu) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)


def _norm(c: int, kind: str = "group") -> nn.Module:
    if kind == "channel":
        return ChannelNorm(c)
    return nn.GroupNorm(min(8, c), c)  # batch-size independent, so small CPU batches train like large GPU ones


class SE3d(nn.Module):
    def __init__(self, c: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, max(c // reduction, 4)), nn.SiLU(), nn.Linear(max(c // reduction, 4), c))

    def forward(self, x):
        w = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * w[:, :, None, None, None]


class Inception3d(nn.Module):
    """Four parallel branches (c_out // 4 channels each): 1³, 3³, 3³ with dilation 2, and pool -> 1³."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        b = c_out // 4
        self.b1 = nn.Conv3d(c_in, b, 1)
        self.b3 = nn.Conv3d(c_in, b, 3, padding=1)
        self.b3d = nn.Conv3d(c_in, b, 3, padding=2, dilation=2)
        self.bp = nn.Conv3d(c_in, c_out - 3 * b, 1)

    def forward(self, x):
        pooled = F.avg_pool3d(x, 3, stride=1, padding=1)
        return torch.cat([self.b1(x), self.b3(x), self.b3d(x), self.bp(pooled)], 1)


class ResBlock3d(nn.Module):
    def __init__(self, c: int, inception: bool = True, se: bool = True, norm: str = "group"):
        super().__init__()
        self.n1 = _norm(c, norm)
        self.c1 = Inception3d(c, c) if inception else nn.Conv3d(c, c, 3, padding=1)
        self.n2 = _norm(c, norm)
        self.c2 = nn.Conv3d(c, c, 3, padding=1)
        self.se = SE3d(c) if se else nn.Identity()

    def forward(self, x):
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return x + self.se(h)


def _memory_format(net: nn.Module, channels_last: bool) -> bool:
    """Put ``net``'s 5-D weights in the channels-last-3d memory format when ``channels_last`` (its forward then
    converts the input grids too). Values, state dicts and saved models are the same either way; on an AVX2 CPU
    the wide unpooled cnn3d trains 1.3-1.6x faster at 24-32³ (benchmarks/cnn3d_speed.py), the
    narrower pooled one of the chain about the same (benchmarks/cnn3d_pipeline.py)."""
    if channels_last:
        net.to(memory_format=torch.channels_last_3d)
    return bool(channels_last)


def _run(blocks, x, checkpointing: bool):
    for b in blocks:
        if checkpointing and x.requires_grad:
            x = torch.utils.checkpoint.checkpoint(b, x, use_reentrant=False)
        else:
            x = b(x)
    return x


class PropertyCNN(nn.Module):
    """Density grids [B, C, n, n, n] -> (mean, variance) [B, T]."""

    def __init__(self, in_channels: int, n_targets: int, widths=(16, 32, 64, 128), blocks: int = 1,
                 inception: bool = True, se: bool = True, dropout: float = 0.0, augment="so3",
                 max_shift: float = 0.5, input_scale: float = 0.05, pool: int = 1, channels_last: bool = False):
        super().__init__()
        from elprop.represent.transforms import augment_mode
        self.augment, self.max_shift, self.input_scale = augment_mode(augment), max_shift, input_scale
        self.pool = int(pool)  # average-pool the input grids by this factor (after augmentation): 8x less work at 2
        self.stem = nn.Conv3d(in_channels, widths[0], 3, padding=1)
        stages = []
        for k, w in enumerate(widths):
            layers = [] if k == 0 else [nn.Conv3d(widths[k - 1], w, 3, stride=2, padding=1)]
            layers += [ResBlock3d(w, inception, se) for _ in range(blocks)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.norm = _norm(widths[-1])
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * widths[-1], 2 * widths[-1]), nn.SiLU(),
                                  nn.Linear(2 * widths[-1], 2 * n_targets))
        self.n_targets = n_targets
        self.checkpointing = False  # gradient checkpointing per stage (set on GPU for large grids)
        self.channels_last = _memory_format(self, channels_last)

    def train_transform(self):
        """Real-time augmentation in training, a fresh draw per sample (applied by the trainer, not here)."""
        from elprop.represent.transforms import GridAugment
        return GridAugment(self.augment, self.max_shift, keys=("x",))

    def forward(self, batch):
        x = batch["x"] if isinstance(batch, dict) else batch
        if self.pool > 1:  # block averages keep the charge: coarser voxels, same integral
            x = F.avg_pool3d(x, self.pool)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        h = self.stem(torch.asinh(x / self.input_scale))  # compresses the density's dynamic range
        h = _run(self.stages, h, self.checkpointing)
        h = F.silu(self.norm(h))
        g = torch.cat([h.mean(dim=(2, 3, 4)), h.amax(dim=(2, 3, 4))], 1)
        out = self.head(g)
        t = self.n_targets
        return out[:, :t], F.softplus(out[:, t:]) + 1e-6


class UNet3d(nn.Module):
    """The Hohenberg-Kohn map: input grids [B, C, n, n, n] (promolecular density and/or potential) -> the
    deformation density Δρ [B, 1, n, n, n]; the caller adds it to the promolecular density. With
    ``conserve=True`` the mean of Δρ over each grid is removed, so ∫ρ_pred = ∫ρ_pro, the electron count, by
    construction. Encoder: residual blocks and stride-2 convolutions; decoder: transposed convolutions, the
    encoder's features concatenated at each scale (skip connections). Its normalisation is per voxel across
    channels (``ChannelNorm``), not over the grid, so it can train on crops and predict whole grids.
    (Squeeze-and-Excitation gates do pool over the grid; ``se=False`` removes them.)"""

    def __init__(self, in_channels: int, widths=(16, 32, 64), conserve: bool = True, se: bool = True,
                 channels_last: bool = False):
        super().__init__()
        self.stem = nn.Conv3d(in_channels, widths[0], 3, padding=1)
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        for k, w in enumerate(widths):
            self.enc.append(ResBlock3d(w, inception=True, se=se, norm="channel"))
            if k + 1 < len(widths):
                self.down.append(nn.Conv3d(w, widths[k + 1], 3, stride=2, padding=1))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for k in range(len(widths) - 1, 0, -1):
            self.up.append(nn.ConvTranspose3d(widths[k], widths[k - 1], 2, stride=2))
            self.dec.append(nn.Sequential(nn.Conv3d(2 * widths[k - 1], widths[k - 1], 1),
                                          ResBlock3d(widths[k - 1], inception=False, se=se, norm="channel")))
        self.out = nn.Conv3d(widths[0], 1, 1)
        self.conserve = conserve
        self.checkpointing = False
        self.channels_last = _memory_format(self, channels_last)

    def forward(self, batch):
        x = batch["x"] if isinstance(batch, dict) else batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        h = self.stem(x)
        skips = []
        for k, block in enumerate(self.enc):
            h = _run([block], h, self.checkpointing)
            if k < len(self.down):
                skips.append(h)
                h = self.down[k](h)
        for up, dec in zip(self.up, self.dec):
            h = up(h)
            s = skips.pop()
            h = _run([dec], torch.cat([h, s], 1), self.checkpointing)
        d = self.out(h)
        if self.conserve:
            d = d - d.mean(dim=(2, 3, 4), keepdim=True)
        return d


def memory_estimate(model: nn.Module, in_shape, device_memory: float | None = None, amp: bool = False) -> dict:
    """Activation bytes per sample (outputs of every leaf module, kept for the backward pass), parameter bytes
    (weights, gradients and two Adam moments), and with ``device_memory`` (bytes) the largest batch that fits
    after a 10 % reserve. Traced on the meta device: nothing is allocated or computed."""
    import copy
    meta = copy.deepcopy(model).to("meta")
    act = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            act[0] += out.numel()
    hooks = [m.register_forward_hook(hook) for m in meta.modules() if not list(m.children())]
    with torch.no_grad():
        x = torch.empty((1, *in_shape), device="meta")
        meta({"x": x, "pro": x[:, :1]})
    for h in hooks:
        h.remove()
    n_params = sum(p.numel() for p in model.parameters())
    bytes_act = act[0] * (2 if amp else 4) * 1.5  # ~1.5x for the inputs that non-leaf ops save as well
    bytes_params = n_params * 4 * 4
    out = {"parameters": n_params, "activation_bytes_per_sample": int(bytes_act), "parameter_bytes": int(bytes_params)}
    if device_memory:
        out["max_batch"] = max(0, int((0.9 * device_memory - bytes_params) // bytes_act))
    return out


def parse_bytes(s: str) -> float:
    """'80GiB', '24 GB', '512MiB', '1e9' -> bytes."""
    import re
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([KMGT]?i?B)?\s*", str(s))
    if not m:
        raise ValueError(f"cannot read a memory size from {s!r} (e.g. 80GiB, 24GB)")
    v = float(m.group(1))
    unit = (m.group(2) or "B").upper()
    scale = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30,
             "TIB": 2 ** 40}
    return v * scale[unit]

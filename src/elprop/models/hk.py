"""The Hohenberg-Kohn map as a network: input grids (promolecular density and/or potential) -> DFT density.

``HKMap`` predicts the deformation density with a 3D U-Net and adds it to the promolecular density, so the
network learns only the residual ρ_DFT − ρ_pro. By default (``residual="relative"``) the U-Net's output u is a
relative change, Δ = ρ_pro · u: the deformation is a modest fraction of ρ_pro wherever there is charge, while ρ_pro
itself spans five orders of magnitude, so a relative output is an easier function to learn (on the dev set it
halved the training NMAE after the same 100 steps against ``residual="additive"``, Δ = 0.1 u). The electron count holds by construction: the U-Net's raw
output Δ is corrected to Δ' = Δ − ρ_pro · ΣΔ / Σρ_pro, so ∫ρ_pred = ∫ρ_pro + ∫Δ' = ∫ρ_pro, the electron count.
The correction is spread where the electrons are (in proportion to ρ_pro), not over the vacuum of the box, and
it is the same on a crop that holds the molecule as on the whole grid. Its loss is the normalised mean absolute
error NMAE = ∫|ρ_pred − ρ_DFT| / ∫ρ_DFT per molecule, the metric the field reports. With ``dipole_weight`` w > 0
the loss adds w times the first-moment error |∫(ρ_pred − ρ_DFT) r dr| / ∫ρ_DFT, in voxel lengths: the shift of the
electronic charge centroid, which is the dipole error divided by the electron count (the nuclei cancel). NMAE alone
can be small while the residual errors all lean one way; this term weighs that lean directly.

Training:
- real-time augmentation (``train_transform()``, applied by the trainer to each batch before ``loss``): the
  input, promolecular and target grids of each sample are moved together, by
  ``augment="octahedral"`` (default: one of the 48 exact symmetries of the cubic grid, axis permutations and
  flips, so input and target stay exact) or ``"so3"`` (a uniform random rotation and sub-voxel shift,
  resampled trilinearly; the resampling blurs the target as much as the input, which limits the map);
- ``crop`` (in ``loss``, in training mode): the network is fully convolutional, so it can train on random sub-cubes of ``crop`` voxels per side
  around the molecule (about (n / crop)³ times less work per step) and still predict whole grids.
"""
from __future__ import annotations

import torch
from torch import nn

from elprop.models.cnn3d import UNet3d


DEFAULT_AUGMENT = "octahedral"  # exact grid symmetries: input and DFT target stay exact (see the docstring)


class HKMap(nn.Module):
    def __init__(self, in_channels: int, widths=(16, 32, 64), input_scale: float = 0.05, out_scale: float = 0.1,
                 augment=DEFAULT_AUGMENT, max_shift: float = 0.5, conserve: bool = True, crop: int = 0,
                 residual: str = "relative", dipole_weight: float = 0.0, channels_last: bool = False):
        super().__init__()
        # no Squeeze-and-Excitation gates: they pool over the whole grid, so a crop and a whole grid would gate
        # differently; with per-voxel normalisation the map is then the same function of a voxel's surroundings
        # on a training crop and on the whole grid
        self.unet = UNet3d(in_channels, widths, conserve=False, se=False, channels_last=channels_last)
        nn.init.zeros_(self.unet.out.weight)  # start at the promolecular baseline (Δρ = 0) and learn from there
        nn.init.zeros_(self.unet.out.bias)
        self.input_scale, self.out_scale = input_scale, out_scale
        from elprop.represent.transforms import augment_mode
        self.augment, self.max_shift, self.conserve = augment_mode(augment), max_shift, conserve
        self.crop = int(crop)
        if dipole_weight < 0:
            raise ValueError(f"dipole_weight must be 0 or more, not {dipole_weight}")
        self.dipole_weight = float(dipole_weight)
        if residual not in ("relative", "additive"):
            raise ValueError(f"residual must be 'relative' or 'additive', not {residual!r}")
        self.residual = residual
        self.in_channels = in_channels
        self.step = 2 ** (len(widths) - 1)  # grid sides must be multiples of this (the U-Net's downsampling)

    @property
    def stem(self):  # the estimator reads the input channel count from here
        return self.unet.stem

    @property
    def checkpointing(self):
        return self.unet.checkpointing

    @checkpointing.setter
    def checkpointing(self, on: bool):
        self.unet.checkpointing = bool(on)

    def forward(self, batch):
        """ρ_pred [B, 1, n, n, n] in e/Å³ from batch["x"] (inputs) and batch["pro"] (promolecular density)."""
        pro = batch["pro"]
        u = self.unet(torch.asinh(batch["x"] / self.input_scale)).float()
        delta = pro * u if self.residual == "relative" else self.out_scale * u
        if self.conserve:
            dims = (2, 3, 4)
            delta = delta - pro * (delta.sum(dims, keepdim=True) / pro.sum(dims, keepdim=True).clamp(min=1e-12))
        return pro + delta

    def train_transform(self):
        """Real-time augmentation in training: input, promolecular and DFT grids moved together (applied by the
        trainer before ``loss``)."""
        from elprop.represent.transforms import GridAugment
        return GridAugment(self.augment, self.max_shift, keys=("x", "pro", "y"))

    def loss(self, batch):
        if self.training and self.crop and self.crop < batch["x"].shape[-1]:
            batch = random_crop(batch, self.crop)
        pred = self(batch)
        nmae = nmae_per_sample(pred, batch["y"])
        loss = nmae.mean()
        if self.dipole_weight:
            loss = loss + self.dipole_weight * moment_error_per_sample(pred, batch["y"]).mean()
        return loss, nmae.mean().detach()


def random_crop(batch: dict, size: int, generator: torch.Generator | None = None) -> dict:
    """The same random sub-cube of ``size`` voxels per side from every grid of the batch. Its corner is drawn
    uniformly among the positions that keep the charge-weighted centre of the first sample's promolecular
    density inside the middle half of the crop, so crops hold the molecule rather than vacuum."""
    n = batch["x"].shape[-1]
    pro = batch["pro"][0, 0].float()
    tot = pro.sum().clamp(min=1e-12)
    idx = torch.arange(n, dtype=pro.dtype, device=pro.device)
    centre = [float((pro.sum(dims) * idx).sum() / tot) for dims in ((1, 2), (0, 2), (0, 1))]
    corner = []
    for c in centre:
        lo = int(max(0, min(n - size, round(c - 0.75 * size))))
        hi = int(max(lo, min(n - size, round(c - 0.25 * size))))
        corner.append(int(torch.randint(lo, hi + 1, (1,), generator=generator)))
    i, j, k = corner
    return {key: v[..., i:i + size, j:j + size, k:k + size] for key, v in batch.items()}


def moment_error_per_sample(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """|∫(pred − ref) r| / ∫ref for each grid [B, 1, n, n, n] of a batch, r in voxels from the grid's centre: the
    shift of the charge centroid (dipole error / electron count when both hold the same charge)."""
    diff, n = (pred - ref)[:, 0].float(), pred.shape[-1]
    r = torch.arange(n, dtype=diff.dtype, device=diff.device) - (n - 1) / 2
    m = torch.stack([(diff.sum(dims) * r).sum(1) for dims in ((2, 3), (1, 3), (1, 2))], 1)
    return m.norm(dim=1) / ref[:, 0].float().sum((1, 2, 3)).clamp(min=1e-12)


def nmae_per_sample(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """∫|pred − ref| / ∫ref for each grid of a batch (the voxel volume cancels)."""
    dims = tuple(range(1, pred.dim()))
    return (pred - ref).abs().sum(dims) / ref.sum(dims).clamp(min=1e-12)

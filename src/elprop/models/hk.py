"""The Hohenberg-Kohn map as a network: input grids (promolecular density and/or potential) -> DFT density.

``HKMap`` predicts the deformation density with a 3D U-Net and adds it to the promolecular density, so the
network learns only the residual ρ_DFT − ρ_pro. The U-Net removes the mean of its output over each grid, so
∫ρ_pred = ∫ρ_pro, which is the electron count: the constraint holds by construction. Its loss is the
normalised mean absolute error NMAE = ∫|ρ_pred − ρ_DFT| / ∫ρ_DFT per molecule, the metric the field reports.
In training mode the input, promolecular and target grids of each sample are turned by the same random
rotation and shift (real-time augmentation).
"""
from __future__ import annotations

import torch
from torch import nn

from elprop.models.cnn3d import UNet3d


class HKMap(nn.Module):
    def __init__(self, in_channels: int, widths=(16, 32, 64), input_scale: float = 0.05, out_scale: float = 0.1,
                 augment: bool = True, max_shift: float = 0.5, conserve: bool = True):
        super().__init__()
        self.unet = UNet3d(in_channels, widths, conserve=conserve)
        nn.init.zeros_(self.unet.out.weight)  # start at the promolecular baseline (Δρ = 0) and learn from there
        nn.init.zeros_(self.unet.out.bias)
        self.input_scale, self.out_scale = input_scale, out_scale
        self.augment, self.max_shift = augment, max_shift
        self.in_channels = in_channels

    @property
    def stem(self):  # the estimator reads the input channel count from here
        return self.unet.stem

    def forward(self, batch):
        """ρ_pred [B, 1, n, n, n] in e/Å³ from batch["x"] (inputs) and batch["pro"] (promolecular density)."""
        delta = self.unet(torch.asinh(batch["x"] / self.input_scale))
        return batch["pro"] + self.out_scale * delta

    def loss(self, batch):
        if self.training and self.augment:
            from elprop.density.augment import augment_batch
            c = batch["x"].shape[1]
            both = augment_batch(torch.cat([batch["x"], batch["pro"], batch["y"]], 1), self.max_shift)
            batch = {"x": both[:, :c], "pro": both[:, c:c + 1], "y": both[:, c + 1:c + 2]}
        pred = self(batch)
        nmae = nmae_per_sample(pred, batch["y"])
        return nmae.mean(), nmae.mean().detach()


def nmae_per_sample(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """∫|pred − ref| / ∫ref for each grid of a batch (the voxel volume cancels)."""
    dims = tuple(range(1, pred.dim()))
    return (pred - ref).abs().sum(dims) / ref.sum(dims).clamp(min=1e-12)

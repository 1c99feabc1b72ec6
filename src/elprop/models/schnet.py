"""SchNet (Schütt et al., 2018): continuous-filter convolutions over interatomic distances.

A dense implementation: molecules are padded to the largest in the batch and every atom pair within the
cutoff interacts, which for QM9-sized molecules (<= 29 atoms) is faster on a CPU than scatter-based graphs and
needs no neighbour-list library.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from elprop.models.readout import Readout


def ssp(x):
    return nn.functional.softplus(x) - math.log(2.0)


class SSP(nn.Module):
    def forward(self, x):
        return ssp(x)


class Interaction(nn.Module):
    def __init__(self, dim: int, n_rbf: int):
        super().__init__()
        self.filt = nn.Sequential(nn.Linear(n_rbf, dim), SSP(), nn.Linear(dim, dim))
        self.in2f = nn.Linear(dim, dim, bias=False)
        self.f2out = nn.Sequential(nn.Linear(dim, dim), SSP(), nn.Linear(dim, dim))

    def forward(self, h, rbf, envelope):
        w = self.filt(rbf) * envelope.unsqueeze(-1)
        v = (w * self.in2f(h).unsqueeze(1)).sum(2)
        return h + self.f2out(v)


class SchNet(nn.Module):
    def __init__(self, extensive: list[bool], dim: int = 128, layers: int = 4, n_rbf: int = 50,
                 cutoff: float = 6.0, max_z: int = 100, dropout: float = 0.0):
        super().__init__()
        self.cutoff = cutoff
        self.embed = nn.Embedding(max_z, dim, padding_idx=0)
        self.register_buffer("centers", torch.linspace(0.0, cutoff, n_rbf))
        self.gamma = 0.5 / float(self.centers[1] - self.centers[0]) ** 2
        self.layers = nn.ModuleList(Interaction(dim, n_rbf) for _ in range(layers))
        self.readout = Readout(dim, extensive, dropout)

    def forward(self, batch):
        z, pos, mask = batch["z"], batch["pos"], batch["mask"]
        d = torch.cdist(pos, pos)
        rbf = torch.exp(-self.gamma * (d.unsqueeze(-1) - self.centers) ** 2)
        eye = torch.eye(z.shape[1], dtype=torch.bool, device=z.device)
        pair = mask.unsqueeze(1) & mask.unsqueeze(2) & ~eye & (d < self.cutoff)
        envelope = 0.5 * (torch.cos(d * math.pi / self.cutoff) + 1.0) * pair
        h = self.embed(z)
        for layer in self.layers:
            h = layer(h, rbf, envelope)
        return self.readout(h, mask)

"""Readout shared by the graph models: per-target mean and variance from atom embeddings.

Extensive targets (energies, polarizability, ...) are sums of atom contributions; intensive targets (orbital
energies, gap, dipole) come from a graph-level MLP over mean- and max-pooled atom embeddings. With
``attention=True`` each intensive target also gets an attention-weighted atom term Σ_i softmax_i(a_i) e_i, with
logits a_i and values e_i from per-atom MLPs: a soft selection of the atoms that set the property (a frontier
orbital sits on a few atoms, so its energy is closer to a weighted max than to a mean). The variance head
(softplus) gives the mean-variance uncertainty.
"""
from __future__ import annotations

import torch
from torch import nn


def mlp(d_in, d_hidden, d_out, act=nn.SiLU):
    return nn.Sequential(nn.Linear(d_in, d_hidden), act(), nn.Linear(d_hidden, d_hidden), act(),
                         nn.Linear(d_hidden, d_out))


class Readout(nn.Module):
    def __init__(self, dim: int, extensive: list[bool], dropout: float = 0.0, attention: bool = False):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        t = len(extensive)
        self.register_buffer("ext", torch.tensor(extensive, dtype=torch.float32))
        self.atom = mlp(dim, dim, t)
        self.graph = mlp(2 * dim, dim, 2 * t)
        self.att = mlp(dim, dim, 2 * t) if attention else None  # per atom: logits and values, per target

    def forward(self, h: torch.Tensor, mask: torch.Tensor):
        m = mask.unsqueeze(-1).float()
        n = m.sum(1).clamp(min=1)
        mean = (h * m).sum(1) / n
        mx = h.masked_fill(~mask.unsqueeze(-1), -1e4).max(1).values
        g = self.graph(self.drop(torch.cat([mean, mx], -1)))
        t = self.ext.shape[0]
        y_int, s = g[:, :t], g[:, t:]
        if self.att is not None:
            a, e = self.att(h).chunk(2, -1)  # [B,N,T] each
            w = torch.softmax(a.masked_fill(~mask.unsqueeze(-1), -1e4), 1)
            y_int = y_int + (w * e).sum(1)
        y_ext = (self.atom(h) * m).sum(1)
        mu = self.ext * y_ext + (1 - self.ext) * y_int
        var = nn.functional.softplus(s) + 1e-6
        return mu, var

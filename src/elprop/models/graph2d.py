"""Dense 2D bond-graph network over RDKit atom and bond features.

Each layer passes messages between all pairs of heavy atoms, gated by a filter built from the pair's bond
type (with conjugation and ring flags) and its topological distance, so one layer sees bonded neighbours and
further shells at once. A pair's filter depends only on its (bond code, distance code), so each layer computes
a small table of filters once per batch and looks it up, instead of running an MLP over all N x N pairs.
Molecules are padded to the largest one in the batch.
"""
from __future__ import annotations

import torch
from torch import nn

from elprop.chem.features import N_BOND_CODES, N_DIST_CODES
from elprop.models.readout import Readout


class PairLayer(nn.Module):
    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.filt = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.src = nn.Linear(dim, dim)
        self.upd = nn.Sequential(nn.Linear(2 * dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, code_emb, codes, pair_mask):
        w = nn.functional.embedding(codes, self.filt(code_emb)) * pair_mask.unsqueeze(-1)  # [B,N,N,D]
        msg = (w * self.src(h).unsqueeze(1)).sum(2)
        return self.norm(h + self.drop(self.upd(torch.cat([h, msg], -1))))


class BondGraphNet(nn.Module):
    def __init__(self, in_dim: int, extensive: list[bool], dim: int = 128, layers: int = 4, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.bond_emb = nn.Embedding(N_BOND_CODES, dim)
        self.dist_emb = nn.Embedding(N_DIST_CODES, dim)
        self.layers = nn.ModuleList(PairLayer(dim, dropout) for _ in range(layers))
        self.readout = Readout(dim, extensive, dropout)

    def forward(self, batch):
        mask = batch["mask"]
        h = self.embed(batch["x"])
        codes = batch["bond"] * N_DIST_CODES + batch["dist"]
        code_emb = (self.bond_emb.weight[:, None] + self.dist_emb.weight[None]).reshape(-1, h.shape[-1])
        eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
        pair_mask = (mask.unsqueeze(1) & mask.unsqueeze(2) & ~eye).float()
        for layer in self.layers:
            h = layer(h, code_emb, codes, pair_mask)
        return self.readout(h, mask)

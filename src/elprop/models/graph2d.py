"""Dense 2D bond-graph network over RDKit atom and bond features.

Each layer passes messages between all pairs of heavy atoms, gated by a filter built from the pair's bond
type (with conjugation and ring flags) and its topological distance, so one layer sees bonded neighbours and
further shells at once. A pair's filter depends only on its (bond code, distance code), so each layer computes
a small table of filters once per batch and looks it up, instead of running an MLP over all N x N pairs.
Molecules are padded to the largest one in the batch.

With a geometry (``geometry="mmff"``), each filter is also modulated by the pair's 3D distance in a force-field
conformer: filter(codes) ⊙ (1 + W·φ(r_ij)), with φ a small MLP (shared by the layers) of a Gaussian radial basis of r_ij, so the model sees bond angles,
torsions and through-space contacts; W starts at zero (the 2D model at initialisation).
"""
from __future__ import annotations

import torch
from torch import nn

from elprop.chem.features import N_BOND_CODES, N_DIST_CODES
from elprop.models.readout import Readout


class PairLayer(nn.Module):
    """One message-passing step. Messages: Σ_j filter(bond, distance code of i, j) ⊙ W h_j over all pairs, and,
    with ``heads`` > 0, multi-head attention whose logits are q_i·k_j/√d plus a learned bias per head and
    (bond, distance) code (Graphormer-style), so the weight of a pair can also depend on the two atoms' states."""

    def __init__(self, dim: int, dropout: float = 0.0, heads: int = 0, n_rbf: int = 0):
        super().__init__()
        self.filt = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.geo = None
        if n_rbf:
            self.geo = nn.Linear(n_rbf, dim)
            nn.init.zeros_(self.geo.weight)
            nn.init.zeros_(self.geo.bias)
        self.src = nn.Linear(dim, dim)
        self.heads = int(heads)
        if self.heads:
            if dim % self.heads:
                raise ValueError(f"width {dim} is not divisible by {heads} attention heads")
            self.qkv = nn.Linear(dim, 3 * dim)
            self.bias = nn.Linear(dim, self.heads)
        self.upd = nn.Sequential(nn.Linear((3 if self.heads else 2) * dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, code_emb, codes, pair_mask, att_mask=None, rbf=None):
        w = nn.functional.embedding(codes, self.filt(code_emb)) * pair_mask.unsqueeze(-1)  # [B,N,N,D]
        if self.geo is not None:
            w = w * (1 + self.geo(rbf))
        parts = [h, (w * self.src(h).unsqueeze(1)).sum(2)]
        if self.heads:
            b, n, d = h.shape
            q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # [B,H,N,dh]
            bias = nn.functional.embedding(codes, self.bias(code_emb)).permute(0, 3, 1, 2)  # [B,H,N,N]
            logits = q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5 + bias
            a = torch.softmax(logits.masked_fill(~att_mask.unsqueeze(1), -1e4), -1)
            parts.append((a @ v).transpose(1, 2).reshape(b, n, d))
        return self.norm(h + self.drop(self.upd(torch.cat(parts, -1))))


class BondGraphNet(nn.Module):
    def __init__(self, in_dim: int, extensive: list[bool], dim: int = 128, layers: int = 4, dropout: float = 0.0,
                 heads: int = 0, geometry: str | None = None, n_rbf: int = 32, cutoff: float = 8.0,
                 radial: int = 64, readout: str = "pool"):
        super().__init__()
        self.geometry = geometry
        n_rbf = n_rbf if geometry else 0
        if n_rbf:
            self.register_buffer("centers", torch.linspace(0.0, cutoff, n_rbf))
            self.gamma = 0.5 / (cutoff / (n_rbf - 1)) ** 2
            self.radial = nn.Sequential(nn.Linear(n_rbf, radial), nn.SiLU())  # shared by the layers' gates
        self.embed = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.bond_emb = nn.Embedding(N_BOND_CODES, dim)
        self.dist_emb = nn.Embedding(N_DIST_CODES, dim)
        self.layers = nn.ModuleList(PairLayer(dim, dropout, heads, radial if n_rbf else 0) for _ in range(layers))
        if readout not in ("pool", "attention"):
            raise ValueError(f"unknown readout {readout!r}: pool or attention")
        self.readout = Readout(dim, extensive, dropout, attention=readout == "attention")

    def forward(self, batch):
        mask = batch["mask"]
        h = self.embed(batch["x"])
        codes = batch["bond"] * N_DIST_CODES + batch["dist"]
        code_emb = (self.bond_emb.weight[:, None] + self.dist_emb.weight[None]).reshape(-1, h.shape[-1])
        eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
        both = mask.unsqueeze(1) & mask.unsqueeze(2)
        pair_mask = (both & ~eye).float()
        att_mask = both | eye  # padded atoms attend to themselves: no empty softmax rows
        rbf = None
        if self.geometry:
            if "d3" not in batch:
                raise ValueError("this model reads 3D distances: featurize with geometry=" + repr(self.geometry))
            rbf = self.radial(torch.exp(-self.gamma * (batch["d3"].unsqueeze(-1) - self.centers) ** 2))  # [B,N,N,R]
        for layer in self.layers:
            h = layer(h, code_emb, codes, pair_mask, att_mask, rbf)
        return self.readout(h, mask)

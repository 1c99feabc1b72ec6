"""Attention over several input representations of the same molecule (``--model multirep``).

A graph network depends on the atom features and the graph it is given, and no one choice is best for every
molecule. This family reads K representations of each molecule and learns, per molecule, how much to trust each:

- ``element``, ``ecfp``, ``extended``: the heavy-atom bond graph under each atom-feature set
  (``chem.features``: element one-hot; ECFP invariants; those plus hybridisation, aromaticity, ring sizes, lone
  pairs, mass), each read by its own message-passing trunk (``graph2d.PairLayer``);
- ``bag``: the same extended atom features with no message passing, a bag of atoms (a radius-0 count
  fingerprint, learned);
- ``mmff``: the extended graph with heavy-atom distances of an MMFF94 conformer modulating every filter
  (``--geometry mmff``; needs the conformers, so it is off unless asked for).

Each encoder k gives atom embeddings h_k [B, N, D] over the same heavy atoms. Combination (``--combine``):
- ``attention`` (default): a molecule-level summary s_k = mean_atoms(h_k) is scored by
  a_k = vᵀ tanh(W s_k + b) (the same W, v for every encoder: additive attention over representations, as in
  Han et al.'s semantic-level attention), α = softmax_k(a_k) per molecule, and h = Σ_k α_k h_k;
- ``concat``: h = Linear([h_1, ..., h_K]), the plain concatenation baseline;
- ``mean``: h = mean_k h_k.
The shared readout (``models.readout``) then gives each target's mean and variance, so extensive targets are still
sums over atoms. ``representation_weights(batch)`` returns α [B, K] (uniform for ``concat``/``mean``); the
estimator saves it with the predictions.
"""
from __future__ import annotations

import torch
from torch import nn

from elprop.chem.features import N_BOND_CODES, N_DIST_CODES, multi_slices
from elprop.models.graph2d import PairLayer
from elprop.models.readout import Readout

REPRESENTATIONS = ("element", "ecfp", "extended", "bag", "mmff")
DEFAULT_REPS = ("element", "ecfp", "extended", "bag")
COMBINES = ("attention", "concat", "mean")


def parse_reps(reps) -> tuple[str, ...]:
    """``"element,ecfp"`` or a sequence -> a tuple of known representation names (order kept, no repeats)."""
    names = [r.strip() for r in (reps.split(",") if isinstance(reps, str) else reps) if r and r.strip()]
    bad = [r for r in names if r not in REPRESENTATIONS]
    if bad or not names:
        raise ValueError(f"--reps {','.join(names) or '(none)'}: choose from {', '.join(REPRESENTATIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--reps {','.join(names)}: a representation is named twice")
    return tuple(names)


def check_arch(arch: dict) -> None:
    """InputError (exit 2) for options the network would refuse: unknown or repeated representations, an
    unknown combination, or mmff without a geometry."""
    from elprop.core.dataset import InputError
    try:
        reps = parse_reps(arch.get("reps") or DEFAULT_REPS)
        if arch.get("combine", "attention") not in COMBINES:
            raise ValueError(f"--combine {arch['combine']!r}: one of {', '.join(COMBINES)}")
        if "mmff" in reps and not arch.get("geometry"):
            raise ValueError("the mmff representation needs --geometry mmff (or dataset)")
    except ValueError as e:
        raise InputError(str(e)) from None


class GraphEncoder(nn.Module):
    """Atom embeddings of one representation: a slice of the atom features, then ``layers`` pair layers (0: a
    bag of atoms), with 3D distance gates when ``n_rbf`` > 0."""

    def __init__(self, in_dim: int, dim: int, layers: int, dropout: float, n_rbf: int = 0, radial: int = 64):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.bond_emb = nn.Embedding(N_BOND_CODES, dim)
        self.dist_emb = nn.Embedding(N_DIST_CODES, dim)
        self.radial = nn.Sequential(nn.Linear(n_rbf, radial), nn.SiLU()) if n_rbf else None
        self.layers = nn.ModuleList(PairLayer(dim, dropout, 0, radial if n_rbf else 0) for _ in range(layers))

    def forward(self, x, codes, pair_mask, att_mask, rbf=None):
        h = self.embed(x)
        if not len(self.layers):
            return h
        code_emb = (self.bond_emb.weight[:, None] + self.dist_emb.weight[None]).reshape(-1, h.shape[-1])
        r = self.radial(rbf) if self.radial is not None else None
        for layer in self.layers:
            h = layer(h, code_emb, codes, pair_mask, att_mask, r)
        return h


class MultiRepNet(nn.Module):
    def __init__(self, in_dim: int, extensive: list[bool], dim: int = 128, layers: int = 4, dropout: float = 0.0,
                 reps=None, combine: str = "attention", geometry: str | None = None, n_rbf: int = 32,
                 cutoff: float = 8.0, readout: str = "pool"):
        super().__init__()
        self.reps = parse_reps(reps or DEFAULT_REPS)
        if combine not in COMBINES:
            raise ValueError(f"--combine {combine!r}: one of {', '.join(COMBINES)}")
        if "mmff" in self.reps and not geometry:
            raise ValueError("the mmff representation needs --geometry mmff (or dataset)")
        self.combine, self.geometry = combine, geometry
        self.slices = multi_slices()
        if in_dim != self.slices["extended"].stop:
            raise ValueError(f"multirep reads the 'multi' atom features ({self.slices['extended'].stop} wide), "
                             f"got {in_dim}")
        self.encoders = nn.ModuleDict()
        for r in self.reps:
            part = "extended" if r in ("bag", "mmff") else r
            width = self.slices[part].stop - self.slices[part].start
            self.encoders[r] = GraphEncoder(width, dim, 0 if r == "bag" else layers, dropout,
                                            n_rbf if r == "mmff" else 0)
        if "mmff" in self.reps:
            self.register_buffer("centers", torch.linspace(0.0, cutoff, n_rbf))
            self.gamma = 0.5 / (cutoff / (n_rbf - 1)) ** 2
        if combine == "attention":
            self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        elif combine == "concat":
            self.mix = nn.Linear(dim * len(self.reps), dim)
        if readout not in ("pool", "attention"):
            raise ValueError(f"unknown readout {readout!r}: pool or attention")
        self.readout = Readout(dim, extensive, dropout, attention=readout == "attention")

    def encode(self, batch):
        """(atom embeddings [K, B, N, D] of every representation, atom mask [B, N])."""
        mask = batch["mask"]
        codes = batch["bond"] * N_DIST_CODES + batch["dist"]
        eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
        both = mask.unsqueeze(1) & mask.unsqueeze(2)
        pair_mask, att_mask = (both & ~eye).float(), both | eye
        rbf = None
        if "mmff" in self.reps:
            if "d3" not in batch:
                raise ValueError("this model reads 3D distances: featurize with geometry=" + repr(self.geometry))
            rbf = torch.exp(-self.gamma * (batch["d3"].unsqueeze(-1) - self.centers) ** 2)
        hs = []
        for r, enc in self.encoders.items():
            part = "extended" if r in ("bag", "mmff") else r
            hs.append(enc(batch["x"][..., self.slices[part]], codes, pair_mask, att_mask,
                          rbf if r == "mmff" else None))
        return torch.stack(hs), mask

    def weights(self, hs, mask):
        """α [B, K]: per molecule, the weight of each representation (rows sum to 1)."""
        k, b = hs.shape[0], hs.shape[1]
        if self.combine != "attention":
            return torch.full((b, k), 1.0 / k, device=hs.device, dtype=hs.dtype)
        m = mask.unsqueeze(-1).to(hs.dtype)
        summary = (hs * m).sum(2) / m.sum(1).clamp(min=1)  # [K, B, D]
        return torch.softmax(self.score(summary).squeeze(-1).transpose(0, 1), -1)  # [B, K]

    def forward(self, batch):
        hs, mask = self.encode(batch)
        if self.combine == "concat":
            h = self.mix(torch.cat(list(hs), -1))
        else:
            alpha = self.weights(hs, mask)  # [B, K]
            h = (alpha.transpose(0, 1)[..., None, None] * hs).sum(0)
        return self.readout(h, mask)

    def representation_weights(self, batch):
        hs, mask = self.encode(batch)
        return self.weights(hs, mask)

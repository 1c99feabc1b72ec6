"""Model families: name -> (builder, representation). A new family is a module plus one entry here."""
from __future__ import annotations

from elprop.models.graph2d import BondGraphNet
from elprop.models.schnet import SchNet

# representation: "graph" (2D heavy-atom graph from SMILES) or "points" (3D all-atom structure)
MODELS = {
    "bondgraph": {"representation": "graph", "description": "dense 2D bond-graph network over RDKit features"},
    "schnet": {"representation": "points", "description": "SchNet continuous-filter convolutions over 3D distances"},
}


def build_model(name: str, extensive: list[bool], in_dim: int | None = None, dim: int = 128, layers: int = 4,
                dropout: float = 0.0):
    if name == "bondgraph":
        return BondGraphNet(in_dim, extensive, dim=dim, layers=layers, dropout=dropout)
    if name == "schnet":
        return SchNet(extensive, dim=dim, layers=layers, dropout=dropout)
    raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")

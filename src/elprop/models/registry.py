"""Model families: name -> (builder, representation). A new family is a module plus one entry here."""
from __future__ import annotations

from elprop.models.cnn3d import PropertyCNN, stage_widths
from elprop.models.graph2d import BondGraphNet
from elprop.models.schnet import SchNet

# representation: "graph" (2D heavy-atom graph from SMILES), "points" (3D all-atom structure), "volume" (density
# grids of a store), "density-map" (store grids in, the DFT density out).
# options: the family's own command-line options (dest names); `elprop train` refuses the others for this family.
_PROPERTY = {"ensemble", "dropout", "targets", "target_weights", "units", "extensive"}
MODELS = {
    "bondgraph": {"representation": "graph", "description": "dense 2D bond-graph network over RDKit features",
                  "options": _PROPERTY | {"features", "heads", "readout", "geometry"}},
    "schnet": {"representation": "points", "description": "SchNet continuous-filter convolutions over 3D distances",
               "options": _PROPERTY},
    "cnn3d": {"representation": "volume", "description": "residual Inception/SE 3D CNN over density grids",
              "options": _PROPERTY | {"pool", "augment", "tta", "channels", "device_memory"}},
    "hk-unet": {"representation": "density-map",
                "description": "3D U-Net from promolecular/potential grids to the DFT density (Hohenberg-Kohn map)",
                "options": {"crop", "augment", "channels", "device_memory"}},
}


def build_model(name: str, extensive: list[bool], in_dim: int | None = None, dim: int = 128, layers: int = 4,
                dropout: float = 0.0, **arch):
    """``arch``: family-specific options (bondgraph: heads; cnn3d: pool, augment; hk-unet: crop, augment)."""
    if arch and name not in ("bondgraph", "cnn3d", "hk-unet"):
        raise KeyError(f"model {name!r} takes no options {sorted(arch)}")
    if name == "bondgraph":
        return BondGraphNet(in_dim, extensive, dim=dim, layers=layers, dropout=dropout, **arch)
    if name == "cnn3d":  # in_dim: input channels; widths double per stage up to dim
        return PropertyCNN(in_dim, len(extensive), widths=stage_widths(dim, layers), dropout=dropout, **arch)
    if name == "hk-unet":
        from elprop.models.hk import HKMap
        return HKMap(in_dim, widths=stage_widths(dim, layers), **arch)
    if name == "schnet":
        return SchNet(extensive, dim=dim, layers=layers, dropout=dropout)
    raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")

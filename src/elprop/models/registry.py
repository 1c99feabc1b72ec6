"""Model families: one ``Family`` entry each. A new family is a module plus one entry (``register``).

A family declares:
- ``representation``: what it reads, ``graph`` (the 2D heavy-atom graph from SMILES, ``represent.graph.GraphSet``),
  ``points`` (3D all-atom structures, ``represent.points.PointSet``), ``volume`` (density grids, ``represent.volume.VolumeSet``)
  or ``density-map`` (grids in, the DFT density out: the HK map);
- ``build(extensive, in_dim, dim, layers, dropout, **arch)``: the torch module. ``extensive`` has one flag per
  target (summed over atoms, or pooled); ``in_dim`` is the representation's feature width (graph: atom features;
  volume: channels); ``arch`` holds the family's own options that differ from their defaults (saved with the
  model). A property family's module returns ``(mean, variance)`` [batch, targets] in scaled units (reuse
  ``models.readout``); it may define ``train_transform()`` (real-time augmentation, applied by the trainer);
- ``options``: the command-line options it takes, by name: shared ones (``OPTIONS``) or its own ``Option``s,
  which ``elprop train`` then shows in an argument group and refuses for every other family.

Training, saving, ``elprop train/evaluate/predict`` and the estimator apply unchanged. Packages can register
families at import through the ``elprop.models`` entry-point group (each entry point names a module whose import
calls ``register``). ``docs/architecture.md`` has a worked example.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Option:
    """A family option on the command line: ``--flag`` with argparse keywords; ``arch`` options go to the
    family's ``build`` (and into the saved model's config) when they differ from the default."""
    flag: str
    help: str
    default: Any = None
    type: Callable | None = None
    choices: tuple | None = None
    arch: bool = True

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def add_to(self, group, families: list[str]):
        kw = {"default": self.default, "help": f"{', '.join(families)}: {self.help}"}
        if isinstance(self.default, bool):  # a switch: off by default, on when given
            kw["action"] = "store_true"
        elif self.type is not None:
            kw["type"] = self.type
        if self.choices is not None:
            kw["choices"] = list(self.choices)
        group.add_argument(self.flag, **kw)


@dataclass(frozen=True)
class Family:
    name: str
    representation: str
    description: str
    build: Callable
    options: tuple = ()  # names in OPTIONS, or Option objects of the family's own
    property_model: bool = True  # predicts targets (mean, variance); False: the HK map (densities)

    def option_names(self) -> set[str]:
        return {o.dest if isinstance(o, Option) else o for o in self.options}


_AUGMENT_HELP = ("real-time augmentation in training. so3: a uniform random rotation and a sub-voxel shift per "
                 "sample, resampled (cnn3d default); octahedral: one of the 48 exact symmetries of the cubic grid, "
                 "no resampling (hk-unet default); none")
OPTIONS: dict[str, Option] = {o.dest: o for o in [
    Option("--heads", "attention heads per layer, with logits biased by bond and distance codes (default: 0, "
                      "filter messages only)", 0, int),
    Option("--readout", "intensive targets from mean/max pooling (pool, default) or pooling plus an "
                        "attention-weighted sum of per-atom values (attention)", "pool", None, ("pool", "attention")),
    Option("--geometry", "also read heavy-atom 3D distances, from one seeded ETKDG + MMFF94 conformer per SMILES "
                         "(mmff) or from the data's own structures (dataset: e.g. the QM9 DFT geometries; "
                         "predictions then need xyz/sdf input). Default: 2D only", None, None, ("mmff", "dataset")),
    Option("--pool", "average-pool the input grids by this factor after augmentation (2: 48³ -> 24³, 8x less "
                     "work; default 1)", 1, int),
    Option("--augment", _AUGMENT_HELP, None, None, ("so3", "octahedral", "none")),
    Option("--channels-last", "keep the grids and convolution weights in the channels-last-3d memory format "
                              "(up to 1.6x faster training on an AVX2 CPU, depending on widths and grid; no gain "
                              "on a GPU; default off)", False),
    # options of the run rather than the network (not passed to build)
    Option("--features", "atom feature set (default: extended; multi: the three side by side, which multirep "
                         "always reads)", "extended", None, ("element", "ecfp", "extended", "multi"), arch=False),
    Option("--tta", "test-time augmentation, averaging predictions over this many random rotations", 0, int,
           arch=False),
    Option("--crop", "train on random sub-cubes of this many voxels per side around the molecule (a multiple of "
                     "2^(layers-1); predictions are on whole grids; default 0: whole grids)", 0, int, arch=False),
    Option("--dipole-weight", "add this weight times the charge-centroid shift |∫Δρ r| / ∫ρ (the dipole error per "
                              "electron, in voxels) to the NMAE loss (default 0: NMAE only)", 0.0, float, arch=False),
    Option("--channels", "density kinds stacked as input channels (cnn3d default: dft; hk-unet default: "
                         "promolecular; e.g. promolecular,potential)", None, arch=False),
    Option("--device-memory", "report the largest batch that fits this memory (e.g. 80GiB)", None, arch=False),
]}
# options every property family takes (defined by `elprop train` itself)
PROPERTY_OPTIONS = ("ensemble", "ensemble_mode", "init_model", "dropout", "targets", "target_weights", "units",
                    "extensive")

MODELS: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add a family (a new name, or a replacement of the same name); its own Options join ``OPTIONS``."""
    for o in family.options:
        if isinstance(o, Option):
            known = OPTIONS.get(o.dest)
            if known is not None and known != o:
                raise ValueError(f"option {o.flag} of {family.name!r} clashes with an existing option of that name")
            OPTIONS[o.dest] = o
        elif o not in OPTIONS and o not in PROPERTY_OPTIONS:
            raise ValueError(f"family {family.name!r}: unknown option {o!r}")
    opts = tuple(family.options) + (PROPERTY_OPTIONS if family.property_model else ())
    MODELS[family.name] = Family(family.name, family.representation, family.description, family.build, opts,
                                 family.property_model)
    return MODELS[family.name]


def family(name: str) -> Family:
    from elprop.core.dataset import InputError
    _load_plugins()
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, extensive: list[bool], in_dim: int | None = None, dim: int = 128, layers: int = 4,
                dropout: float = 0.0, **arch):
    """The torch module of family ``name``; ``arch``: the family's own options (bondgraph: heads, readout,
    geometry; cnn3d: pool, augment, channels_last; hk-unet: augment, crop, channels_last)."""
    f = family(name)
    allowed = {o.dest if isinstance(o, Option) else o for o in f.options}
    bad = sorted(set(arch) - allowed)
    if bad:
        raise KeyError(f"model {name!r} takes no options {bad}")
    return f.build(extensive, in_dim, dim, layers, dropout, **arch)


_plugins_loaded = False


def _load_plugins():
    """Import the modules named by the ``elprop.models`` entry points (once); each registers its families."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points
    for ep in entry_points(group="elprop.models"):
        ep.load()


# --- elprop's own families ---------------------------------------------------------------------------------
def _bondgraph(extensive, in_dim, dim, layers, dropout, **arch):
    from elprop.models.graph2d import BondGraphNet
    return BondGraphNet(in_dim, extensive, dim=dim, layers=layers, dropout=dropout, **arch)


def _multirep(extensive, in_dim, dim, layers, dropout, **arch):
    from elprop.core.dataset import InputError
    from elprop.models.multirep import MultiRepNet
    try:
        return MultiRepNet(in_dim, extensive, dim=dim, layers=layers, dropout=dropout, **arch)
    except ValueError as e:  # a bad --reps/--combine/--geometry combination: the user's to fix
        raise InputError(str(e)) from None


def _schnet(extensive, in_dim, dim, layers, dropout, **arch):
    from elprop.models.schnet import SchNet
    return SchNet(extensive, dim=dim, layers=layers, dropout=dropout)


def _cnn3d(extensive, in_dim, dim, layers, dropout, **arch):  # in_dim: input channels; widths double per stage
    from elprop.models.cnn3d import PropertyCNN, stage_widths
    return PropertyCNN(in_dim, len(extensive), widths=stage_widths(dim, layers), dropout=dropout, **arch)


def _hk(extensive, in_dim, dim, layers, dropout, **arch):
    from elprop.models.cnn3d import stage_widths
    from elprop.models.hk import HKMap
    return HKMap(in_dim, widths=stage_widths(dim, layers), **arch)


for _f in [
    Family("bondgraph", "graph", "dense 2D bond-graph network over RDKit features", _bondgraph,
           ("features", "heads", "readout", "geometry")),
    Family("multirep", "graph", "attention over several representations of each molecule (graphs under each "
           "atom-feature set, a bag of atoms, MMFF distances)", _multirep,
           ("readout", "geometry",
            Option("--reps", "the representations, comma-separated, of element, ecfp, extended, bag, mmff "
                             "(mmff needs --geometry; default: element,ecfp,extended,bag)", None),
            Option("--combine", "how the representations are combined: a learned attention per molecule "
                                "(default), plain concatenation, or their mean", None, None,
                   ("attention", "concat", "mean")))),
    Family("schnet", "points", "SchNet continuous-filter convolutions over 3D distances", _schnet),
    Family("cnn3d", "volume", "residual Inception/SE 3D CNN over density grids", _cnn3d,
           ("pool", "augment", "channels_last", "tta", "channels", "device_memory")),
    Family("hk-unet", "density-map", "3D U-Net from promolecular/potential grids to the DFT density "
           "(Hohenberg-Kohn map)", _hk, ("crop", "augment", "channels_last", "dipole_weight", "channels",
                                   "device_memory"),
           property_model=False),
]:
    register(_f)

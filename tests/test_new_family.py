"""Adding a model family takes one module and one registry entry: a toy family defined in this file trains,
saves, loads, evaluates and predicts through the `elprop` command, and its own option is refused elsewhere.
(docs/architecture.md walks through the same example.)"""
import json

import pytest
import torch
from torch import nn

from elprop.models import Family, Option, register
from elprop.models.readout import Readout


class MeanAtoms(nn.Module):
    """A deliberately small property model: an MLP on each atom's features, averaged (or summed, for extensive
    targets) over the heavy atoms by the shared readout."""

    def __init__(self, in_dim, extensive, dim=32, layers=1, dropout=0.0, scale=1.0):
        super().__init__()
        self.scale = scale
        mlp = [nn.Linear(in_dim, dim), nn.SiLU()]
        for _ in range(layers - 1):
            mlp += [nn.Linear(dim, dim), nn.SiLU()]
        self.atoms = nn.Sequential(*mlp)
        self.readout = Readout(dim, extensive, dropout=dropout)

    def forward(self, batch):
        h = self.atoms(batch["x"] * self.scale)
        return self.readout(h, batch["mask"])


def build(extensive, in_dim, dim, layers, dropout, **arch):
    return MeanAtoms(in_dim, extensive, dim=dim, layers=layers, dropout=dropout, **arch)


@pytest.fixture
def toy_family():
    from elprop.models.registry import MODELS, OPTIONS
    register(Family("mean-atoms", "graph", "an MLP per atom, averaged", build,
                    ("features", Option("--scale", "multiply the atom features by this", 1.0, float))))
    yield "mean-atoms"
    MODELS.pop("mean-atoms")
    OPTIONS.pop("scale")


def test_a_family_defined_here_trains_evaluates_and_predicts_through_the_cli(toy_family, tmp_path, capsys):
    from elprop.cli.main import main
    out = tmp_path / "run"
    assert main(["train", "--model", toy_family, "--scale", "0.5", "--features", "element", "--data", "qm9",
                 "--limit", "300", "--targets", "gap,U0_atom", "--epochs", "3", "--dim", "16", "--out", str(out),
                 "--no-progress"]) == 0
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["model"] == toy_family and cfg["arch"] == {"scale": 0.5} and cfg["features"] == "element"
    assert [s["extensive"] for s in cfg["target_specs"]] == [False, True]
    from elprop.train.saved import load_model
    m = load_model(out / "model")
    assert isinstance(m.nets[0], MeanAtoms) and m.nets[0].scale == 0.5
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model"), "--data", "qm9", "--split-file",
                 str(out / "split.json")]) == 0
    text = capsys.readouterr().out
    run_mae = {(r.split(",")[0], r.split(",")[1]): float(r.split(",")[4])
               for r in (out / "metrics.csv").read_text().splitlines()[1:]}
    line = next(ln for ln in text.splitlines() if ln.split()[:2] == ["test", "gap"])
    assert float(line.split()[4]) == pytest.approx(run_mae[("test", "gap")], abs=1e-4)
    assert main(["predict", "CCO", "c1ccccc1", "--model", str(out / "model"), "--format", "json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert preds[1]["predictions"]["U0_atom"]["unit"] == "eV" and preds[1]["predictions"]["gap"]["std"] > 0
    # its own option is refused by the other families, and theirs by it
    assert main(["train", "--model", "bondgraph", "--scale", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--scale is an option of mean-atoms, not bondgraph" in capsys.readouterr().err
    assert main(["train", "--model", toy_family, "--heads", "2", "--out", str(tmp_path / "x")]) == 2


def test_registered_feature_sets_match_the_featurisers():
    from elprop.chem.features import FEATURE_SETS
    from elprop.models import OPTIONS
    assert set(OPTIONS["features"].choices) == set(FEATURE_SETS)


def test_options_of_a_family_reach_only_its_build():
    from elprop.models import build_model
    with pytest.raises(KeyError, match="takes no options"):
        build_model("schnet", [False], dim=8, layers=1, heads=2)
    assert torch.is_tensor(next(build_model("bondgraph", [False], in_dim=8, dim=8, layers=1, heads=2).parameters()))

"""The multi-representation model: shapes, attention weights, training, save/load, the run's attention report."""
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_cli
from elprop.chem.features import feature_dim, multi_slices
from elprop.models.multirep import MultiRepNet
from elprop.represent.graph import featurize_smiles

SMILES = ["CCO", "c1ccccc1O", "CC=CC=O", "N#CC(=O)N", "C1CC1F", "OC(=O)C(F)(F)F", "CN1C=NC=C1", "C"]


def _batch(geometry=None):
    gs = featurize_smiles(SMILES, "multi", geometry=geometry)
    return gs, gs.batch(np.arange(len(SMILES)))


def test_multi_features_stack_the_three_sets():
    sl = multi_slices()
    assert sl["extended"].stop == sum(feature_dim(n) for n in ("element", "ecfp", "extended"))
    gs, _ = _batch()
    one = featurize_smiles(SMILES, "ecfp")
    assert np.array_equal(gs.x[..., sl["ecfp"]], one.x)


@pytest.mark.parametrize("reps,combine,geometry", [(None, "attention", None), ("element,extended", "concat", None),
                                                   ("ecfp,bag,mmff", "attention", "mmff"), ("bag", "mean", None)])
def test_shapes_and_attention_weights(reps, combine, geometry):
    torch.manual_seed(0)
    gs, b = _batch(geometry)
    net = MultiRepNet(gs.in_dim, [False, False, True], dim=16, layers=2, reps=reps, combine=combine,
                      geometry=geometry)
    mu, var = net(b)
    assert mu.shape == var.shape == (len(SMILES), 3) and (var > 0).all()
    a = net.representation_weights(b)
    assert a.shape == (len(SMILES), len(net.reps))
    assert torch.allclose(a.sum(1), torch.ones(len(SMILES)), atol=1e-6) and (a >= 0).all()
    if combine == "attention" and len(net.reps) > 1:
        assert not torch.allclose(a, a[:1].expand_as(a))  # per molecule, not one global weighting


def test_short_training_lowers_the_loss():
    torch.manual_seed(0)
    gs, b = _batch()
    y = torch.tensor(np.random.default_rng(0).normal(size=(len(SMILES), 2)), dtype=torch.float32)
    net = MultiRepNet(gs.in_dim, [False, False], dim=16, layers=2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        mu, var = net(b)
        loss = torch.nn.functional.gaussian_nll_loss(mu, y, var)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_train_predict_save_load_and_report(qm9_small, tmp_path):
    from elprop.train.run import train_run
    from elprop.train.saved import load_model
    ds = qm9_small.subset(np.arange(200))
    est, rows = train_run(ds, tmp_path / "run", model="multirep", targets=["gap", "U0_atom"], dim=16, layers=1,
                          epochs=2, progress=False, log=lambda *a: None)
    assert est.config["features"] == "multi"
    summary = pd.read_csv(tmp_path / "run" / "attention_summary.csv")
    cols = [f"attention_{n}" for n in ("element", "ecfp", "extended", "bag")]
    assert set(summary["class"]) == {"all", "aromatic", "heteroatoms", "conjugated", "rings"}
    assert np.allclose(summary[cols].sum(axis=1), 1.0, atol=1e-3)
    assert "Attention over representations" in (tmp_path / "run" / "model" / "card.md").read_text()
    back = load_model(tmp_path / "run" / "model")
    p1, p2 = est.predict(SMILES), back.predict(SMILES)
    assert np.allclose(p1.mean, p2.mean, atol=1e-4, equal_nan=True)
    assert p2.rep_weights[0] == ["element", "ecfp", "extended", "bag"]
    assert np.allclose(p1.rep_weights[1], p2.rep_weights[1], atol=1e-5, equal_nan=True)
    r = run_cli("predict", *SMILES[:2], "--model", tmp_path / "run" / "model", "--format", "csv")
    assert r.returncode == 0 and "attention_bag" in r.stdout.splitlines()[0]


@pytest.mark.parametrize("args,msg", [(["--reps", "element,foo"], "choose from element"),
                                      (["--reps", "mmff"], "needs --geometry"),
                                      (["--reps", "ecfp,ecfp"], "named twice")])
def test_bad_options_exit_2(tmp_path, args, msg):
    r = run_cli("train", "--model", "multirep", *args, "--data", "qm9", "--limit", "50", "--out", tmp_path / "o")
    assert r.returncode == 2 and msg in r.stderr and not (tmp_path / "o").exists()

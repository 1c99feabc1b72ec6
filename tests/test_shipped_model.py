"""The model shipped in the package: files, card, and that its card's test figures are what it computes."""
import json
import re

import numpy as np
import pytest

from elprop.pretrained import model_path
from elprop.train.estimator import PropertyModel


def _card_mae(card: str, target: str) -> float:
    m = re.search(rf"^\| QM9 test \| {target} \| \S+ \| \d+ \| ([0-9.]+) \|", card, re.M)
    assert m, f"no test row for {target} in card.md"
    return float(m.group(1))


def test_shipped_model_files_and_card():
    p = model_path()
    files = {f.name for f in p.iterdir()}
    assert {"config.json", "card.md", "test_indices.json", "member_0.safetensors", "domain.safetensors"} <= files
    assert not any(f.endswith((".pt", ".pkl", ".ckpt")) for f in files)
    assert sum(f.stat().st_size for f in p.iterdir()) <= 25e6
    cfg = json.loads((p / "config.json").read_text())
    assert {"homo", "lumo", "gap", "mu", "alpha", "U0_atom"} <= set(cfg["targets"])
    assert cfg["units"]["gap"] == "eV" and cfg["units"]["alpha"] == "bohr^3"
    card = (p / "card.md").read_text()
    assert "QM9 split (random, seed 0: 110,000 training, 10,000 validation, 10,831 test)" in card
    assert "## Shift set" in card and "## Applicability domain" in card
    assert cfg["ensemble"] >= 2 and (p / "domain.safetensors").exists()  # epistemic σ and the domain
    test = json.loads((p / "test_indices.json").read_text())["test"]
    assert len(test) == 10831 and len(set(test)) == 10831


def test_shipped_model_reproduces_card_on_a_test_sample(qm9):
    """1,000 of the shipped model's own test molecules: the MAE matches the card's full-test MAE within
    sampling noise (~±15 %). Guards against a card that does not describe the weights."""
    p = model_path()
    card = (p / "card.md").read_text()
    test = np.array(json.loads((p / "test_indices.json").read_text())["test"])
    idx = np.sort(np.random.default_rng(0).choice(test, 1000, replace=False))
    model = PropertyModel.load(p)
    ds = qm9.subset(idx)
    pred = model.predict(list(ds.smiles))
    mean, std = pred.mean, pred.std
    assert np.mean([bool(f) for f in pred.flags]) < 0.05  # the domain flags few of QM9's own test molecules
    for k, t in enumerate(model.config["targets"]):
        mae = np.abs(mean[:, k] - ds.target(t)).mean()
        assert mae == pytest.approx(_card_mae(card, t), rel=0.15), t
    assert np.all(std > 0)


def test_predict_phenol_with_shipped_model(cli):
    res = cli("predict", "c1ccccc1O")
    assert res.returncode == 0, res.stderr
    header, row = res.stdout.splitlines()[:2]
    for t in ("homo [eV]", "lumo [eV]", "gap [eV]"):
        assert t in header
    vals = dict(zip([h.strip() for h in re.split(r"\s{2,}", header.strip())],
                    [c.strip() for c in re.split(r"\s{2,}", row.strip())]))
    gap, gap_std = (float(x) for x in vals["gap [eV]"].split("±"))
    homo = float(vals["homo [eV]"].split("±")[0])
    # phenol is QM9 row 923 (gdb_924): B3LYP gap 5.99 eV, HOMO -5.96 eV
    assert 4.8 < gap < 6.8 and -7.0 < homo < -5.0 and 0 < gap_std < 1.0
    assert not vals.get("warning")  # phenol is well inside QM9's chemistry


def test_shipped_model_warns_on_chemistry_qm9_lacks(cli):
    """A cumulene that neither QM9 nor the shift set has is flagged, with a σ that admits the model does not
    know; butadiene (QM9 lacks it, the shift set's fine-tuning half may have it) is flagged or has a wide σ."""
    res = cli("predict", "C=C=C=C=C=C", "C=CC=C", "c1ccccc1O", "--format", "json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    for r in rows:
        g = r["predictions"]["gap"]
        assert g["epistemic_std"] is not None and 0 <= g["epistemic_std"] <= g["std"]
        assert r["domain"]["score"] is not None
    cumulene, diene, phenol = rows
    assert "rare substructure" in cumulene["warning"] and cumulene["predictions"]["gap"]["std"] > 1.0
    assert diene["warning"] or diene["predictions"]["gap"]["std"] > 0.5
    assert not phenol["warning"] and phenol["predictions"]["gap"]["std"] < 0.3
    assert cumulene["domain"]["score"] > phenol["domain"]["score"]


@pytest.mark.slow
def test_shipped_model_full_test_set_matches_card(qm9):
    p = model_path()
    card = (p / "card.md").read_text()
    test = np.array(json.loads((p / "test_indices.json").read_text())["test"])
    model = PropertyModel.load(p)
    ds = qm9.subset(test)
    mean, _, _ = model.predict(list(ds.smiles))
    for k, t in enumerate(model.config["targets"]):
        assert np.abs(mean[:, k] - ds.target(t)).mean() == pytest.approx(_card_mae(card, t), abs=2e-4), t

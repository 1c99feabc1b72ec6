"""Epistemic σ (snapshot ensembles), the applicability domain and fine-tuning on new labels."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

SHIFT_LIKE = ["C=CC=C", "C=C=C", "C=CC#N", "CC(C)=C=O"]  # a diene, allene, acrylonitrile, a ketene: none in QM9


def test_domain_flags_what_qm9_lacks(qm9):
    from elprop.train.domain import Domain
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(qm9))
    d = Domain.fit(qm9.smiles[idx[:20000]], qm9.smiles[idx[20000:22000]])
    # each threshold flags ~1 % of validation molecules (never-seen environments can add more with 20k training)
    assert d.fit_report["val_flagged_fraction"] <= 0.05
    test = d.score(list(qm9.smiles[idx[22000:24000]]))
    assert np.mean([bool(f) for f in test["flags"]]) < 0.06
    out = d.score(SHIFT_LIKE)
    assert all(out["flags"])
    assert "[CH2]=C (in 0 training molecules)" in out["flags"][0]  # QM9 has no terminal =CH2
    assert "C(=C)=C" in out["flags"][1]  # nor an allene's central carbon
    assert np.min(out["score"]) > np.quantile(test["score"], 0.99)
    # a fine-tuning set extends the domain: the diene is known afterwards
    d2 = d.extended(["C=CC=C", "C=CC=CC"])
    assert d2.score(["C=CC=C"])["flags"] == [""] and d2.min_count == d.min_count


def test_snapshot_ensemble_members_and_epistemic_sigma(qm9_small, tmp_path):
    from elprop.train.estimator import PropertyModel
    from elprop.train.run import train_run
    est, _ = train_run(qm9_small, tmp_path, targets=["gap"], dim=32, layers=2, ensemble=3, ensemble_mode="snapshot",
                       epochs=6, progress=False, log=lambda *a: None)
    assert len(est.nets) == 3
    w = [next(iter(n.state_dict().values())).flatten() for n in est.nets]
    assert not np.allclose(w[0].numpy(), w[1].numpy())  # a member per cycle, not three copies
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist["epoch"]) == [1, 2, 3, 4, 5, 6]
    lr = hist["lr"].to_numpy()
    assert lr[1] < lr[0] and lr[2] > lr[1] and lr[4] > lr[3]  # the learning rate restarts every 2 epochs
    p = est.predict(list(qm9_small.smiles[:50]) + SHIFT_LIKE)
    assert (p.epistemic[:, 0] > 0).all() and (p.epistemic <= p.std + 1e-9).all()
    loaded = PropertyModel.load(tmp_path / "model")
    q = loaded.predict(list(qm9_small.smiles[:50]) + SHIFT_LIKE)
    assert np.allclose(q.mean, p.mean, atol=1e-5) and np.allclose(q.epistemic, p.epistemic, atol=1e-5)
    assert q.flags == p.flags and all(q.flags[-4:])
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["ensemble_mode"] == "snapshot" and cfg["applicability"]["min_count"] >= 1
    assert "Applicability domain" in (tmp_path / "model" / "card.md").read_text()


def test_snapshot_needs_divisible_epochs(cli, tmp_path):
    r = cli("train", "--limit", "200", "--targets", "gap", "--ensemble", "3", "--ensemble-mode", "snapshot",
            "--epochs", "4", "--out", tmp_path / "r", "--no-progress")
    assert r.returncode == 2 and "divisible by 3" in r.stderr


@pytest.fixture(scope="module")
def shift_labels(tmp_path_factory):
    """Ten DFT-labelled molecules of the embedded shift set, as `elprop label` writes them."""
    from elprop.data.embedded import embedded_path
    df = pd.read_csv(embedded_path("shift"))
    df = df[np.isfinite(df["gap [eV]"])]
    assert len(df) >= 150
    pick = df[df["motif"].isin(["terminal alkene", "diene"])].head(10)
    path = tmp_path_factory.mktemp("ft") / "labels.csv"
    pick[["name", "smiles", "homo [eV]", "lumo [eV]", "gap [eV]", "mu [D]"]].to_csv(path, index=False)
    return path, pick


def test_finetune_learns_new_labels_with_replay(tiny_model, shift_labels, tmp_path):
    from elprop.train.saved import load_model
    run_dir, base, _ = tiny_model
    path, pick = shift_labels
    out = tmp_path / "tuned"
    r = run_cli("train", "--init-model", run_dir / "model", "--data", path, "--n-train", "1.0", "--n-val", "0",
                "--replay", "100", "--epochs", "30", "--lr", "1e-3", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "replay: 100 training and 10 validation molecules" in r.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["init_model"].startswith(str(run_dir / "model")) and cfg["n_train"] == 110 and cfg["n_val"] == 10
    tuned = load_model(out / "model")
    assert tuned.config["targets"] == base.config["targets"]  # U0_atom kept, masked for the new molecules
    assert tuned.scaler.to_dict() == base.scaler.to_dict()
    y = pick["gap [eV]"].to_numpy()
    k = base.config["targets"].index("gap")
    before = np.abs(base.predict(list(pick["smiles"])).mean[:, k] - y).mean()
    after_pred = tuned.predict(list(pick["smiles"]))
    after = np.abs(after_pred.mean[:, k] - y).mean()
    assert after < 0.7 * before  # it learned the molecules it was tuned on
    assert not any("[CH2]=C" in f for f in after_pred.flags)  # and they are inside its domain now


def test_finetune_refuses_foreign_units_and_targets(tiny_model, tmp_path):
    run_dir, _, _ = tiny_model
    bad = tmp_path / "bad.csv"
    bad.write_text("smiles,gap [Ha]\nC=C,0.28\nC=CC,0.27\n")
    r = run_cli("train", "--init-model", run_dir / "model", "--data", bad, "--out", tmp_path / "o")
    assert r.returncode == 2 and "in Ha, the model's in eV" in r.stderr
    none = tmp_path / "none.csv"
    none.write_text("smiles,logS\nC=C,1.0\nCC,2.0\n")
    r = run_cli("train", "--init-model", run_dir / "model", "--data", none, "--out", tmp_path / "o2")
    assert r.returncode == 2 and "none of the model's targets" in r.stderr
    r = run_cli("train", "--init-model", run_dir / "model", "--data", bad, "--targets", "gap", "--out", tmp_path / "o3")
    assert r.returncode == 2 and "keeps the saved model's targets" in r.stderr


def test_replay_recipe_is_inherited_through_fine_tunings(tmp_path):
    """A fine-tuned model replays its base model's data and split, not its own mix of new and replayed rows
    (the shipped model is itself fine-tuned, and `--init-model shipped --replay N` must keep working)."""
    import numpy as np

    from elprop.data.splits import random_split
    from elprop.train.finetune import base_split, replay_info
    base = {"data": "qm9", "split_spec": {"kind": "random", "n_train": 100, "n_val": 20, "seed": 3}}
    info = replay_info(tmp_path, base)
    assert info == {"data": "qm9", "split": base["split_spec"]}
    tuned = {"data": "half_A.csv + 2000 replayed training molecules", "replay": info}
    (tmp_path / "split.json").write_text('{"train": [0, 1], "val": [2], "test": []}')  # the fine-tuning's own
    assert replay_info(tmp_path, tuned) == info
    sp = base_split(tmp_path, tuned, 500)
    ref = random_split(500, 100, 20, 3)
    assert all(np.array_equal(sp[k], ref[k]) for k in ref)
    assert replay_info(tmp_path, {"data": "mine.csv", "split_spec": {"kind": "scaffold"}}) is None


def test_new_fraction_repeats_new_molecules(tiny_model, tmp_path):
    """--new-fraction: a few new labels are repeated so they are not drowned by thousands of replayed ones."""
    from elprop.train.finetune import oversample_new
    train = np.array([0, 2, 5, 6, 7, 8])  # rows 0-4 are new (two of them in training), 5-8 replayed
    rows, k = oversample_new(train, 5, 4, 0.5)
    assert k == 2 and sorted(rows.tolist()) == [0, 0, 2, 2, 5, 6, 7, 8]
    rows, k = oversample_new(train, 5, 4000, 0.2)  # 2k / (2k + 4000) >= 0.2
    assert k == 500 and (rows < 5).sum() == 1000
    assert oversample_new(train, 5, 4, 0.0)[1] == 1 and oversample_new(train, 0, 4, 0.5)[1] == 1
    run_dir, _, _ = tiny_model
    r = run_cli("train", "--init-model", run_dir / "model", "--data", "qm9", "--new-fraction", "1",
                "--out", tmp_path / "o")
    assert r.returncode == 2 and "--new-fraction 1: give a fraction in [0, 1)" in r.stderr

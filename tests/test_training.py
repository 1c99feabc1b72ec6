import json

import numpy as np
import pytest
import torch

from elprop.represent.graph import featurize_smiles
from elprop.models import build_model
from elprop.train.estimator import PropertyModel
from elprop.train.loop import train_network
from elprop.train.scaling import TargetScaler


def test_target_scaler_atomref_roundtrip():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, size=(200, 6)).astype(np.float32)
    ref = np.array([-0.5, -37.8, -54.6, -75.1, -99.7, 0.0]) * 27.2
    y = np.column_stack([counts @ ref + rng.normal(0, 0.1, 200), rng.normal(5, 2, 200)])
    sc = TargetScaler.fit(y, counts, [True, False])
    z = sc.transform(y, counts)
    assert np.allclose(np.nanstd(z, 0), 1.0) and np.allclose(np.nanmean(z, 0), 0.0, atol=1e-9)
    assert np.allclose(sc.atomref[:5, 0], ref[:5], atol=0.5)  # the per-element references are recovered
    assert np.allclose(sc.inverse(z, counts), y)
    assert np.allclose(TargetScaler.from_dict(json.loads(json.dumps(sc.to_dict()))).inverse(z, counts), y)


def test_training_learns_beats_mean_baseline(tiny_model, qm9_small):
    run_dir, est, rows = tiny_model
    by = {(r["split"], r["target"]): r for r in rows}
    for t in ("gap", "U0_atom"):
        y = qm9_small.target(t)
        baseline = np.abs(y - y.mean()).mean()
        assert by[("test", t)]["mae"] < 0.8 * baseline, t
    assert by[("test", "U0_atom")]["mae"] < 1.5  # eV, after 10 epochs on 1,200 molecules
    for f in ("config.json", "split.json", "metrics.csv", "history.csv", "model/card.md", "model/config.json",
              "model/member_0.safetensors", "plots/parity_test_gap.png"):
        assert (run_dir / f).is_file(), f


def test_save_load_roundtrip_same_predictions(tiny_model, tmp_path):
    _, est, _ = tiny_model
    est.save(tmp_path / "m")
    back = PropertyModel.load(tmp_path / "m")
    smiles = ["CCO", "c1ccccc1O", "CC#N"]
    m1, s1, _ = est.predict(smiles)
    m2, s2, _ = back.predict(smiles)
    assert np.allclose(m1, m2) and np.allclose(s1, s2)
    assert not any(p.suffix in (".pkl", ".pt") for p in (tmp_path / "m").iterdir())


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_kill_continues_not_restarts(qm9_small, tmp_path, ema):
    """Kill a 4-epoch run during epoch 3, rerun the same call: it resumes at epoch 3 and ends where an
    uninterrupted run ends (also with a moving average of the weights, which the checkpoint must carry)."""
    gs = featurize_smiles(list(qm9_small.smiles[:300]), "ecfp")
    y = qm9_small.target("gap")[:300, None]
    y = (y - y.mean()) / y.std()
    tr, va = np.arange(250), np.arange(250, 300)

    def net():
        torch.manual_seed(0)
        return build_model("bondgraph", [False], in_dim=gs.x.shape[-1], dim=16, layers=1)

    class Killed(Exception):
        pass

    def killer(msg):
        if msg.startswith("epoch 3:"):
            raise Killed  # as if the process died after epoch 3's work but before its checkpoint
    kw = dict(epochs=4, batch_size=50, progress=False, ema=ema)
    with pytest.raises(Killed):
        train_network(net(), gs, y, tr, va, tmp_path / "a", log=killer, **kw)
    logs = []
    _, resumed = train_network(net(), gs, y, tr, va, tmp_path / "a", log=logs.append, **kw)
    assert any("resuming" in s and "epoch 3" in s for s in logs)
    assert sum(s.startswith("epoch ") for s in logs) == 2  # only epochs 3 and 4 were trained again
    _, fresh = train_network(net(), gs, y, tr, va, tmp_path / "b", log=lambda *a: None, **kw)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    assert [r["val_l1_scaled"] for r in resumed] == pytest.approx([r["val_l1_scaled"] for r in fresh], rel=1e-4)
    if ema:  # validation used the averaged weights, which differ from the raw ones
        ck = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)
        raw = {k[len("net."):]: v for k, v in ck["state_dict"].items()}
        ema_w = next(v["avg"] for k, v in ck["callbacks"].items() if "EMA" in k)
        assert any(not torch.equal(raw[k], ema_w[k]) for k in raw)


def test_dropout_model_saves_and_predicts_deterministically(qm9_small, tmp_path):
    ds = qm9_small.subset(np.arange(300))
    est = PropertyModel("bondgraph", ["gap"], "element", dim=16, layers=1, dropout=0.2)
    est.fit(ds, {"train": np.arange(250), "val": np.arange(250, 300)}, tmp_path / "ck", epochs=1,
            weight_decay=1e-2, progress=False, log=lambda *a: None)
    est.save(tmp_path / "m")
    back = PropertyModel.load(tmp_path / "m")
    assert back.config["dropout"] == 0.2 and any(isinstance(m, torch.nn.Dropout) and m.p == 0.2
                                                 for m in back.nets[0].modules())
    a, _, _ = est.predict(["CCO", "c1ccccc1"])
    b, _, _ = back.predict(["CCO", "c1ccccc1"])
    assert np.array_equal(a, b)  # dropout is off at inference


def test_ensemble_uncertainty_includes_spread(qm9_small, tmp_path):
    ds = qm9_small.subset(np.arange(400))
    est = PropertyModel("bondgraph", ["gap"], "element", dim=16, layers=1, ensemble=2, seed=0)
    sp = {"train": np.arange(350), "val": np.arange(350, 400)}
    est.fit(ds, sp, tmp_path, epochs=2, progress=False, log=lambda *a: None)
    assert len(est.nets) == 2
    mean, std, rep = est.predict(["CCO", "c1ccccc1"])
    single = PropertyModel("bondgraph", ["gap"], "element", dim=16, layers=1)
    single.nets, single.scaler, single.domain = est.nets[:1], est.scaler, est.domain
    _, std1, _ = single.predict(["CCO", "c1ccccc1"])
    assert np.all(std > 0) and np.all(np.isfinite(mean))
    assert not np.allclose(std, std1)


def test_schnet_trains_on_coordinates_and_predicts_xyz_and_smiles(qm9_small, tmp_path):
    from elprop.cli.predict_cmd import predict_records
    from elprop.data.readers import read_xyz
    ds = qm9_small.subset(np.arange(300))
    est = PropertyModel("schnet", ["U0_atom", "gap"], dim=32, layers=2, seed=0)
    sp = {"train": np.arange(250), "val": np.arange(250, 300)}
    est.fit(ds, sp, tmp_path / "ck", epochs=6, lr=3e-3, progress=False, log=lambda *a: None)
    mean, std = est.predict_rep(est.represent(ds), np.arange(250, 300))
    y = ds.target("U0_atom")[250:300]
    assert np.abs(mean[:, 0] - y).mean() < 0.5 * np.abs(y - y.mean()).mean()  # atom refs + learning
    est.save(tmp_path / "m")
    back = PropertyModel.load(tmp_path / "m")
    m = ds[260]
    xyz = tmp_path / "one.xyz"
    xyz.write_text(f"{len(m.z)}\n\n" + "\n".join(f"{int(a)} {p[0]} {p[1]} {p[2]}" for a, p in zip(m.z, m.pos)))
    rec = read_xyz(xyz)[0]
    rows = predict_records(back, [rec])
    assert rows[0]["U0_atom"] == pytest.approx(mean[10, 0], abs=1e-3)  # the file's coordinates were used
    rows = predict_records(back, [read_xyz(xyz)[0].__class__(np.zeros(0, np.int64), smiles="CCO", name="CCO")])
    assert rows[0]["error"] == "" and np.isfinite(rows[0]["gap"])  # SMILES -> RDKit 3D embedding


def test_sigma_calibration_on_validation(qm9_small, tmp_path):
    """After fit, σ is rescaled on the validation set so that mean((err/σ)²) = 1 there; saved and loaded."""
    ds = qm9_small.subset(np.arange(600))
    est = PropertyModel("bondgraph", ["gap", "homo"], "ecfp", dim=32, layers=2, seed=0)
    sp = {"train": np.arange(450), "val": np.arange(450, 600)}
    est.fit(ds, sp, tmp_path / "ck", epochs=3, progress=False, log=lambda *a: None)
    rep = est.represent(ds)
    mean, std = est.predict_rep(rep, sp["val"])
    y = np.column_stack([ds.target("gap"), ds.target("homo")])[sp["val"]]
    assert np.allclose((((y - mean) / std) ** 2).mean(0), 1.0, rtol=1e-6)
    assert not np.allclose(est.sigma_scale, 1.0)
    est.save(tmp_path / "m")
    back = PropertyModel.load(tmp_path / "m")
    assert np.allclose(back.sigma_scale, est.sigma_scale)
    assert np.allclose(back.predict_rep(rep, sp["val"])[1], std)


def test_total_budget_counts_featurisation_and_split_file_reads_only_its_molecules(tmp_path):
    """--total-budget: training gets what start-up and featurisation left; a split file over all of QM9 featurises
    only the molecules it names, and split.json still holds QM9 indices."""
    import json

    from conftest import run_cli
    split = {"train": list(range(0, 300)), "val": list(range(50000, 50060)), "test": list(range(90000, 90060))}
    (tmp_path / "split.json").write_text(json.dumps(split))
    r = run_cli("train", "--data", "qm9", "--split", "file", "--split-file", tmp_path / "split.json", "--targets",
                "gap", "--total-budget", "120", "--epochs", "2", "--dim", "16", "--layers", "1", "--out",
                tmp_path / "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["n_molecules"] == 420 and 0 < cfg["time_budget_s"] < 120 and cfg["represent_s"] >= 0
    assert "s left for training" in r.stdout
    saved = json.loads((tmp_path / "run" / "split.json").read_text())
    assert {k: sorted(v) for k, v in saved.items()} == split
    r = run_cli("train", "--data", "qm9", "--limit", "50", "--total-budget", "0", "--out", tmp_path / "o")
    assert r.returncode == 2 and "--total-budget must be positive" in r.stderr and not (tmp_path / "o").exists()

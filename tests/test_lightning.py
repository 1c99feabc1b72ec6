"""Training on Lightning: exact resume after a SIGKILL mid-epoch, checkpoints that load with weights_only=True,
and DDP over two CPU processes (gloo)."""
import csv
import json
import os

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def pro_store(tmp_path_factory):
    from conftest import run_cli
    store = tmp_path_factory.mktemp("lt") / "p.zarr"
    res = run_cli("density", "generate", "--kind", "promolecular", "--subset", "random:64:1", "--shape", "16",
                  "--box", "16", "--out", store, "--workers", "0", "--no-progress")
    assert res.returncode == 0, res.stderr
    return store


def _weights(ckpt):
    return torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]


def test_killed_mid_epoch_resumes_to_the_same_weights(cli, pro_store, tmp_path):
    """A cnn3d with dropout, SO(3) augmentation and an EMA, SIGKILLed right after the checkpoint of step 7 (in
    epoch 2 of 3), then rerun: it ends with the same weights as the uninterrupted run (random states, loader
    position, optimiser, EMA and schedule all come back)."""
    args = ["train", "--model", "cnn3d", "--density-store", pro_store, "--channels", "promolecular", "--targets",
            "gap", "--dim", "8", "--layers", "2", "--epochs", "3", "--batch-size", "12", "--dropout", "0.2",
            "--augment", "so3", "--ema", "0.9", "--checkpoint-every", "2", "--no-progress"]
    res = cli(*args, "--out", tmp_path / "a")
    assert res.returncode == 0, res.stderr
    env = dict(os.environ, ELPROP_KILL_AFTER_STEP="6")
    import subprocess
    import sys
    killed = subprocess.run([sys.executable, "-m", "elprop.cli.main", *map(str, args), "--out", tmp_path / "b"],
                            capture_output=True, text=True, env=env)
    assert killed.returncode == -9, killed.stderr  # SIGKILL: nothing after the checkpoint ran
    ck = torch.load(tmp_path / "b" / "checkpoints" / "member_0" / "last.ckpt", weights_only=True)
    assert ck["elprop"]["t"] == 6 and ck["elprop"]["done_in_epoch"] == 2  # 4 steps per epoch: mid-epoch 2
    assert not (tmp_path / "b" / "model").exists()
    res = cli(*args, "--out", tmp_path / "b")
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stdout and "epoch 2, step 2" in res.stdout
    a = _weights(tmp_path / "a" / "checkpoints" / "member_0" / "last.ckpt")
    b = _weights(tmp_path / "b" / "checkpoints" / "member_0" / "last.ckpt")
    assert a.keys() == b.keys()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-6
    ha = list(csv.DictReader(open(tmp_path / "a" / "history.csv")))
    hb = list(csv.DictReader(open(tmp_path / "b" / "history.csv")))
    assert [r["val_l1_scaled"] for r in ha] == [r["val_l1_scaled"] for r in hb]
    from safetensors.torch import load_file
    ma, mb = load_file(tmp_path / "a" / "model" / "member_0.safetensors"), \
        load_file(tmp_path / "b" / "model" / "member_0.safetensors")
    assert all(torch.allclose(ma[k], mb[k], atol=1e-6) for k in ma)
    # the check can fail: another seed (other initial weights, dropout masks and rotations) ends elsewhere
    res = cli(*args, "--seed", "1", "--out", tmp_path / "c")
    assert res.returncode == 0, res.stderr
    c = _weights(tmp_path / "c" / "checkpoints" / "member_0" / "last.ckpt")
    assert max(float((a[k].float() - c[k].float()).abs().max()) for k in a) > 1e-4


def test_ddp_on_two_cpu_processes(cli, tmp_path):
    common = ["train", "--data", "qm9", "--limit", "500", "--targets", "gap,homo", "--epochs", "2", "--dim", "16",
              "--layers", "1", "--batch-size", "50", "--no-progress"]
    res = cli(*common, "--devices", "2", "--strategy", "ddp", "--out", tmp_path / "ddp")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("saved model") == 1  # process 0 reports and saves
    cfg = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert cfg["trainer"] == {"devices": 2, "strategy": "ddp"}
    hist = list(csv.DictReader(open(tmp_path / "ddp" / "history.csv")))
    assert [int(h["steps"]) for h in hist] == [4, 4]  # 400 training molecules, 8 batches of 50, 4 per process
    res = cli(*common, "--out", tmp_path / "one")
    assert res.returncode == 0, res.stderr
    one = list(csv.DictReader(open(tmp_path / "one" / "history.csv")))
    assert [int(h["steps"]) for h in one] == [8, 8]
    from elprop.train.saved import load_model
    m_ddp, m_one = load_model(tmp_path / "ddp" / "model"), load_model(tmp_path / "one" / "model")
    assert type(m_ddp) is type(m_one) and m_ddp.config["targets"] == m_one.config["targets"] == ["gap", "homo"]
    assert m_ddp.nets[0].state_dict().keys() == m_one.nets[0].state_dict().keys()
    mean, std, _ = m_ddp.predict(["CCO", "c1ccccc1"])
    assert np.isfinite(mean).all() and (std > 0).all()
    metrics = list(csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")))
    assert {(m["split"], m["target"]) for m in metrics} == {(s, t) for s in ("val", "test") for t in ("gap", "homo")}


def test_time_budget_counts_the_time_spent_reading_batches(tmp_path):
    """The budget is wall-clock: a representation whose batches take 50 ms to read (as a volumetric store can)
    stops training after about the budget, not after the budget's worth of forward and backward passes alone."""
    import time

    from torch import nn

    from elprop.train.lightning import train_lightning

    class SlowRep:
        def __init__(self, n):
            self.x = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))

        def __len__(self):
            return len(self.x)

        def batch(self, idx):
            time.sleep(0.05)
            return {"x": self.x[np.asarray(idx)]}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, b):
            o = self.lin(b["x"])
            return o[:, :1], nn.functional.softplus(o[:, 1:]) + 1e-3

    rep = SlowRep(400)
    y = rep.x[:, :1].numpy() * 2.0
    t0 = time.time()
    _, hist = train_lightning(Net(), rep, y, np.arange(380), np.arange(380, 400), tmp_path, epochs=1000,
                              time_budget=1.5, batch_size=8, progress=False, log=lambda *a: None)
    wall = time.time() - t0
    steps = sum(r["steps"] for r in hist)
    assert 1.5 <= hist[-1]["time_s"] < 2.5
    assert steps <= 1.6 / 0.05  # each step waited 50 ms for its batch: at most the budget's worth of them
    assert wall < 8  # it stopped on time (start-up and the final checkpoint included)

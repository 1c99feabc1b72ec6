import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    os.environ["ELPROP_CACHE"] = str(tmp_path_factory.mktemp("elprop_cache"))
    yield


@pytest.fixture(scope="session")
def qm9():
    from elprop.data.qm9 import load_qm9
    return load_qm9()


@pytest.fixture(scope="session")
def qm9_small(qm9):
    idx = np.sort(np.random.default_rng(1).permutation(len(qm9))[:1500])
    return qm9.subset(idx)


def run_cli(*args, cwd=None):
    """Run the elprop command in a subprocess; returns CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "elprop.cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ))


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def tiny_model(qm9_small, tmp_path_factory):
    """A small bondgraph model trained for a few epochs (shared by tests that need a saved model)."""
    from elprop.train.run import train_run
    d = tmp_path_factory.mktemp("tiny_run")
    est, rows = train_run(qm9_small, d, targets=["homo", "lumo", "gap", "U0_atom"], dim=64, layers=3, epochs=10,
                          progress=False, log=lambda *a: None)
    return d, est, rows


@pytest.fixture(scope="session")
def hk_store(tmp_path_factory):
    """A 10-record store (16³) with promolecular and DFT (PBE/def2-SVP) grids, for the HK map tests."""
    d = tmp_path_factory.mktemp("hk")
    store = d / "h.zarr"
    for kind in ("promolecular", "dft"):
        res = run_cli("density", "generate", "--kind", kind, "--subset", "0:10", "--shape", "16", "--box", "16",
                      "--xc", "pbe", "--basis", "def2-svp", "--grid-level", "1", "--out", store, "--workers", "0",
                      "--no-progress")
        assert res.returncode == 0, res.stderr
    return store

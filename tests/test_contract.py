"""The documented paths, end to end through the CLI: one's own CSV and target with its unit, evaluate and predict
for every torch family (bondgraph with --geometry dataset, cnn3d, hk-unet), --limit with a density store, and
the fixes of issue 13, each with a test that failed before."""
import csv
import json

import numpy as np
import pytest

from test_cli import _one_line_error


def _csv(path, smiles, cols: dict):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["smiles"] + list(cols))
        for i, s in enumerate(smiles):
            w.writerow([s] + [f"{v[i]:.6f}" for v in cols.values()])
    return path


# --- targets of one's own ----------------------------------------------------------------------------------------
def test_user_csv_custom_target_with_unit_train_evaluate_predict(cli, qm9_small, tmp_path):
    """`elprop train --data mols.csv --targets logS` (a target elprop does not know): the unit from the CSV header
    travels to the metrics, the model and every prediction table."""
    n = 160
    data = _csv(tmp_path / "mols.csv", qm9_small.smiles[:n],
                {"logS [log(mol/L)]": 0.5 * qm9_small.target("gap")[:n] - 3.0, "pIC50": qm9_small.target("mu")[:n]})
    res = cli("train", "--data", data, "--targets", "logS", "--epochs", "2", "--dim", "16", "--layers", "1",
              "--out", tmp_path / "run", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "logS [log(mol/L)]" in res.stdout and "log(mol/L)" in res.stdout.splitlines()[-3]
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert cfg["target_specs"] == [{"name": "logS", "unit": "log(mol/L)", "extensive": False, "weight": 1.0}]
    metrics = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert {m["unit"] for m in metrics} == {"log(mol/L)"}
    res = cli("evaluate", "--model", tmp_path / "run" / "model", "--data", data, "--split-file",
              tmp_path / "run" / "split.json", "--out", tmp_path / "ev")
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.split()[:2] == ["test", "logS"])
    assert "log(mol/L)" in line
    mae_run = next(float(m["mae"]) for m in metrics if m["split"] == "test")
    assert float(line.split()[4]) == pytest.approx(mae_run, abs=1e-4)
    assert (tmp_path / "ev" / "metrics.csv").exists() and (tmp_path / "ev" / "plots" / "parity_test_logS.png").exists()
    res = cli("predict", "CCO", "c1ccccc1", "--model", tmp_path / "run" / "model")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].split()[1:3] == ["logS", "[log(mol/L)]"]
    res = cli("predict", "CCO", "--model", tmp_path / "run" / "model", "--format", "json")
    assert json.loads(res.stdout)[0]["predictions"]["logS"]["unit"] == "log(mol/L)"
    # a header without a unit: --units names it, --extensive makes it extensive; without both it is unitless
    res = cli("train", "--data", data, "--targets", "pIC50", "--units", "pIC50=log(M)", "--extensive", "pIC50",
              "--epochs", "1", "--dim", "16", "--layers", "1", "--out", tmp_path / "run2", "--no-progress")
    assert res.returncode == 0, res.stderr
    spec = json.loads((tmp_path / "run2" / "model" / "config.json").read_text())["target_specs"][0]
    assert spec == {"name": "pIC50", "unit": "log(M)", "extensive": True, "weight": 1.0}
    res = cli("train", "--data", data, "--targets", "pIC50", "--epochs", "1", "--dim", "16", "--layers", "1",
              "--out", tmp_path / "run3", "--no-progress")
    assert res.returncode == 0 and "pIC50 [unitless]" in res.stdout
    # elprop's own targets keep elprop's units
    assert "keeps gap in eV" in _one_line_error(cli("train", "--data", data, "--targets", "gap", "--units", "gap=Ha"))
    assert "--extensive" in _one_line_error(cli("train", "--data", data, "--targets", "logS", "--extensive", "mu"))


# --- 3D input for a model trained on the data's own geometries -------------------------------------------------
def test_predict_xyz_with_a_geometry_dataset_model(cli, tmp_path, qm9):
    res = cli("train", "--data", "qm9", "--limit", "300", "--targets", "gap", "--geometry", "dataset", "--epochs",
              "1", "--dim", "16", "--layers", "1", "--out", tmp_path / "g", "--no-progress")
    assert res.returncode == 0, res.stderr
    m = qm9[5]
    xyz = tmp_path / "m.xyz"
    xyz.write_text(f"{len(m.z)}\n\n" + "\n".join(f"{int(a)} {p[0]} {p[1]} {p[2]}" for a, p in zip(m.z, m.pos)))
    res = cli("predict", xyz, "--model", tmp_path / "g" / "model", "--format", "csv")
    assert res.returncode == 0, res.stderr
    row = next(csv.DictReader(res.stdout.splitlines()))
    assert row["gap [eV]"] and not row["error"]
    assert "xyz" in _one_line_error(cli("predict", "CCO", "--model", tmp_path / "g" / "model"))


def test_graph_cache_key_includes_the_coordinates(qm9, tmp_path):
    """Under --geometry dataset the cached graphs hold distances from the data's coordinates: the same SMILES
    with other coordinates must not reuse them."""
    from elprop.represent.graph import dataset_graphs
    ds = qm9.subset(np.arange(20))
    a = dataset_graphs(ds, "element", geometry="dataset")
    moved = qm9.subset(np.arange(20))
    moved.pos = moved.pos * 1.1  # the same molecules, stretched by 10 %
    b = dataset_graphs(moved, "element", geometry="dataset")
    ok = a.mask.astype(bool)
    assert np.allclose(b.d3[0][ok[0]][:, ok[0]], 1.1 * a.d3[0][ok[0]][:, ok[0]], rtol=1e-4)


# --- volumetric families through evaluate and predict -----------------------------------------------------------
def test_cnn3d_limit_with_a_store_evaluate_and_predict(cli, tmp_path):
    store = tmp_path / "v.zarr"
    res = cli("density", "generate", "--kind", "promolecular", "--subset", "random:48:0", "--shape", "16", "--box",
              "16", "--out", store, "--workers", "0", "--no-progress")
    assert res.returncode == 0, res.stderr
    res = cli("train", "--model", "cnn3d", "--density-store", store, "--limit", "36", "--channels", "promolecular",
              "--targets", "gap", "--dim", "8", "--layers", "2", "--epochs", "1", "--batch-size", "8",
              "--out", tmp_path / "c", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "(36 molecules)" in res.stdout  # --limit keeps the store: its records are the data
    sp = json.loads((tmp_path / "c" / "split.json").read_text())
    recs = np.concatenate([sp[k] for k in ("train", "val", "test")])
    assert len(recs) == 36 and recs.max() < 48 and len(set(recs)) == 36  # record indices of the store
    metrics = list(csv.DictReader(open(tmp_path / "c" / "metrics.csv")))
    res = cli("evaluate", "--model", tmp_path / "c" / "model", "--density-store", store, "--split-file",
              tmp_path / "c" / "split.json")
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.split()[:2] == ["test", "gap"])
    assert float(line.split()[4]) == pytest.approx(next(float(m["mae"]) for m in metrics if m["split"] == "test"),
                                                   abs=1e-4)
    # molecules without stored grids (QM9 structures): the promolecular input is computed on the store's grid
    res = cli("evaluate", "--model", tmp_path / "c" / "model", "--data", "qm9", "--limit", "5")
    assert res.returncode == 0 and next(ln for ln in res.stdout.splitlines() if ln.startswith("all")).split()[3] == "5"
    # new molecules: the promolecular grid is computed on the store's grid; store records: read from the store
    res = cli("predict", "CCO", "c1ccccc1", "--model", tmp_path / "c" / "model", "--format", "csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert len(rows) == 2 and all(r["gap [eV]"] and r["gap_std [eV]"] for r in rows)
    res = cli("predict", "--model", tmp_path / "c" / "model", "--density-store", store, "--format", "csv")
    assert res.returncode == 0, res.stderr
    assert len(list(csv.DictReader(res.stdout.splitlines()))) == 48


def test_hk_unet_evaluate_predict_and_refused_options(cli, hk_store, tmp_path):
    res = cli("train", "--model", "hk-unet", "--density-store", hk_store, "--dim", "8", "--layers", "2", "--epochs",
              "1", "--batch-size", "2", "--out", tmp_path / "h", "--no-progress")
    assert res.returncode == 0, res.stderr
    res = cli("evaluate", "--model", tmp_path / "h" / "model", "--density-store", hk_store, "--split-file",
              tmp_path / "h" / "split.json", "--out", tmp_path / "ev")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(tmp_path / "ev" / "metrics.csv")))
    run = list(csv.DictReader(open(tmp_path / "h" / "metrics.csv")))
    nmae = {r["split"]: float(r["model"]) for r in run if r["metric"] == "NMAE"}
    assert {r["metric"] for r in rows} == {"NMAE", "|electron count error|", "dipole error"}
    assert float(next(r["model"] for r in rows if r["metric"] == "NMAE")) == pytest.approx(nmae["test"], rel=1e-3)
    res = cli("predict", "CCO", "--model", tmp_path / "h" / "model", "--format", "json")
    assert res.returncode == 0, res.stderr
    p = json.loads(res.stdout)[0]["predictions"]
    assert p["electrons"]["unit"] == "e" and p["electrons"]["value"] == pytest.approx(26, abs=0.1)
    assert p["dipole"]["unit"] == "D" and p["dipole"]["value"] > 0
    for opt in (["--tta", "2"], ["--ensemble", "2"], ["--dropout", "0.1"], ["--targets", "gap"]):
        msg = _one_line_error(cli("train", "--model", "hk-unet", "--density-store", hk_store, *opt,
                                  "--out", tmp_path / "x"))
        assert opt[0] in msg and "not hk-unet" in msg


# --- fixes ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arg", ["C" * 20000, "C" * 300 + "/x", "no/such/dir/"])
def test_giant_or_path_like_smiles_exit_2_one_line(cli, tiny_model, arg):
    msg = _one_line_error(cli("predict", arg, "--model", tiny_model[0] / "model"))
    assert "SMILES" in msg and len(msg) < 300


def test_no_validation_split_says_sigma_is_uncalibrated(cli, tmp_path):
    res = cli("train", "--data", "qm9", "--limit", "200", "--targets", "gap", "--n-val", "0", "--epochs", "1",
              "--dim", "16", "--layers", "1", "--out", tmp_path / "r", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "σ stays uncalibrated" in res.stdout
    assert "NOT calibrated" in (tmp_path / "r" / "model" / "card.md").read_text()
    assert json.loads((tmp_path / "r" / "model" / "config.json").read_text())["sigma_calibrated"] is False


def test_runs_dir_and_name_are_aliases_of_out(cli, tmp_path):
    args = ["train", "--data", "qm9", "--limit", "120", "--targets", "gap", "--epochs", "1", "--dim", "8",
            "--layers", "1", "--no-progress"]
    res = cli(*args, "--runs-dir", tmp_path / "runs", "--name", "a")
    assert res.returncode == 0 and (tmp_path / "runs" / "a" / "model" / "config.json").exists()
    res = cli(*args, "--out", tmp_path / "runs" / "a")  # the same folder: resumes, nothing to train
    assert res.returncode == 0 and "resuming" in res.stdout


def test_qm9_tarball_cache_key_is_the_same_in_every_process(tmp_path):
    import os
    import subprocess
    import sys
    f = tmp_path / "q.tar.bz2"
    f.write_bytes(b"x")
    code = f"from pathlib import Path; from elprop.data.qm9 import qm9_cache_key; print(qm9_cache_key(Path('{f}')))"
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONHASHSEED=str(s))).stdout for s in (1, 2)}
    assert len(keys) == 1 and len(keys.pop().strip()) == 20


def test_one_bohr_constant():
    from elprop.core import units
    from elprop.density import atoms, cube, dft, potential
    assert all(m.BOHR is units.BOHR for m in (atoms, cube, dft, potential))
    import pyscf.lib
    assert units.BOHR == pyscf.lib.param.BOHR  # grids and PySCF's own conversion agree


def test_dft_charge_and_spin(cli, tmp_path):
    from elprop.density.dft import DFTSettings, run_scf
    z, pos = np.array([8, 1]), np.array([[0.0, 0, 0], [0.97, 0, 0]])  # OH: 9 electrons
    res = run_scf(z, pos, DFTSettings(xc="pbe", basis="sto-3g"))
    assert not res["ok"] and "odd electron count" in res["log"][0]["error"]
    assert run_scf(z, pos, DFTSettings(xc="pbe", basis="sto-3g", spin=1))["ok"]  # the radical, UKS
    assert run_scf(z, pos, DFTSettings(xc="pbe", basis="sto-3g", charge=-1))["ok"]  # hydroxide, RKS
    xyz = tmp_path / "oh.xyz"
    xyz.write_text("2\n\nO 0 0 0\nH 0.97 0 0\n")
    msg = _one_line_error(cli("density", "generate", "--data", xyz, "--kind", "dft", "--basis", "sto-3g", "--shape",
                              "8", "--out", tmp_path / "s.zarr", "--workers", "0", "--no-progress"))
    assert "odd electron count" in msg and "--spin" in msg
    res = cli("density", "generate", "--data", xyz, "--kind", "dft", "--xc", "pbe", "--basis", "sto-3g", "--shape",
              "8", "--spin", "1", "--out", tmp_path / "s.zarr", "--workers", "0", "--no-progress")
    assert res.returncode == 0, res.stderr
    from elprop.density.store import DensityStore
    st = DensityStore(tmp_path / "s.zarr")
    assert (st.status("dft") == 1).all() and "UKS" in st.kind_attrs("dft")["level_of_theory"]


def test_sparse_solver_warns_and_flags_when_stopped_early(qm9):
    from elprop.subgraph.molgraph import smiles_graphs
    from elprop.subgraph.sparse import SubgraphLinearModel
    idx = np.arange(60)
    graphs, _, _ = smiles_graphs([qm9.smiles[i] for i in idx])
    y = qm9.target("gap")[idx]
    m = SubgraphLinearModel(graphs, y, min_support=3, max_edges=3, max_inner=1)
    with pytest.warns(RuntimeWarning, match="max_inner=1"):
        m.fit(m.lambda_max() / 50)
    assert m.history[-1]["converged"] is False
    m2 = SubgraphLinearModel(graphs, y, min_support=3, max_edges=3)
    with pytest.warns(RuntimeWarning, match="max_outer=1"):
        m2.fit(m2.lambda_max() / 50, max_outer=1)
    m3 = SubgraphLinearModel(graphs, y, min_support=3, max_edges=3)
    m3.fit(m3.lambda_max() / 50)
    assert m3.history[-1]["converged"] is True


def test_subgraph_path_chooses_lambda_on_validation(cli, tmp_path):
    res = cli("subgraph", "path", "--data", "qm9", "--limit", "150", "--target", "gap", "--n-lambdas", "3",
              "--min-support", "0.1", "--max-edges", "2", "--out", tmp_path / "p")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(tmp_path / "p" / "path.csv")))
    assert "val_mae" in rows[0] and "test_mae" not in rows[0]
    m = list(csv.DictReader(open(tmp_path / "p" / "metrics.csv")))
    best = min(rows, key=lambda r: float(r["val_mae"]))
    assert m[0]["split"] == "test" and m[0]["unit"] == "eV" and float(m[0]["lambda"]) == pytest.approx(
        float(best["lambda"]))


def test_leave_one_metal_out_rmse_is_over_every_row_and_fold():
    import pandas as pd
    from elprop.data.embedded import embedded_path
    from elprop.materials.featurize import pair_features
    from elprop.materials.protocols import leave_one_group_out
    d = pd.read_csv(embedded_path("dband-overlayers"))
    X = pair_features(d.host_substrate, d.guest_overlayer, ["density", "d_electrons"])
    y = d["shift_eV"].to_numpy()
    go = leave_one_group_out(X, y, [{h, g} for h, g in zip(d.host_substrate, d.guest_overlayer)], "lgbm")
    assert len(go.per_fold) == 2 * len(y)  # every pair is tested in its host's fold and its guest's fold
    err = go.per_fold["pred"].to_numpy() - y[go.per_fold["row"].to_numpy()]
    assert go.rmse == pytest.approx(np.sqrt(np.mean(err ** 2)))
    assert go.rmse != pytest.approx(np.sqrt(np.mean((go.pooled - y) ** 2)), rel=1e-3)  # not the fold-mean RMSE


def test_heat_map_columns_follow_the_rows(tmp_path):
    from elprop.materials.report import heatmap_plot
    M = heatmap_plot(tmp_path / "h.png", ["Pt", "Au", "Pt", "Au"], ["Au", "Au", "Pt", "Pt"], [1, 2, 3, 4], "x")
    assert M.tolist() == [[3, 1], [4, 2]]  # rows Pt, Au; columns Pt, Au: the diagonal is host == guest


def test_embedded_materials_tables(cli, tmp_path):
    res = cli("data", "info", "dband-overlayers")
    assert res.returncode == 0 and "Ruban" in res.stdout and "110" in res.stdout and "eV" in res.stdout
    for name in ("dband-pure", "adsorption-h", "adsorption-o-oh", "elements", "dband-overlayer-matrix"):
        res = cli("data", "info", name)
        assert res.returncode == 0 and "source:" in res.stdout and "licence:" in res.stdout, name
    res = cli("materials", "fit", "--data", "dband-overlayers", "--target", "eps_d_minus_EF_eV", "--drop-columns",
              "shift_eV", "--repeats", "2", "--model", "lgbm", "--out", tmp_path / "m")
    assert res.returncode == 0, res.stderr
    assert "target eps_d_minus_EF_eV (eV)" in res.stdout
    # the saved materials model through `elprop evaluate` and `elprop predict`, on an embedded table
    res = cli("evaluate", "--model", tmp_path / "m" / "model", "--data", "dband-overlayers")
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("all"))
    assert line.split()[1:4] == ["eps_d_minus_EF_eV", "eV", "110"] and float(line.split()[4]) < 0.5  # fitted rows
    res = cli("predict", "dband-overlayers", "--model", tmp_path / "m" / "model", "--format", "csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert len(rows) == 110 and rows[0]["input"] == "dband-overlayers:Co on Fe" and rows[0]["eps_d_minus_EF_eV [eV]"]
    import pandas as pd
    from elprop.data.embedded import embedded_path
    own = tmp_path / "own.csv"
    pd.read_csv(embedded_path("dband-overlayers")).rename(columns={"shift_eV": "shift"}).to_csv(own, index=False)
    res = cli("materials", "fit", "--data", own, "--target", "shift", "--drop-columns", "eps_d_minus_EF_eV",
              "--repeats", "2", "--model", "lgbm", "--out", tmp_path / "m2")
    assert res.returncode == 0 and "target shift (unitless)" in res.stdout  # no guessing from the name
    res = cli("materials", "fit", "--data", own, "--target", "shift", "--units", "shift=eV", "--drop-columns",
              "eps_d_minus_EF_eV", "--repeats", "2", "--model", "lgbm", "--out", tmp_path / "m3")
    assert res.returncode == 0 and "target shift (eV)" in res.stdout


@pytest.mark.parametrize("model", ["sparse-linear", "boosted-trees", "slda"])
def test_subgraph_models_through_evaluate_and_predict(cli, tmp_path, model):
    """A saved subgraph model predicts new molecules by substructure matches of its SMARTS (slda: by topic
    inference on its bag of words): `elprop evaluate` on the fit's own molecules reproduces the fit's train and
    test MAE (slda: within the noise of Gibbs sampling)."""
    res = cli("subgraph", "fit", "--model", model, "--limit", "200", "--target", "gap", "--max-edges", "3",
              "--min-support", "0.05", "--n-estimators", "10", "--topics", "5", "--iterations", "100",
              "--out", tmp_path / "s")
    assert res.returncode == 0, res.stderr
    fit = {m["split"]: m for m in csv.DictReader(open(tmp_path / "s" / "metrics.csv")) if m["model"] == model}
    n_tr, n_te = int(fit["train"]["n"]), int(fit["test"]["n"])
    mae_all = (n_tr * float(fit["train"]["mae"]) + n_te * float(fit["test"]["mae"])) / (n_tr + n_te)
    res = cli("evaluate", "--model", tmp_path / "s" / "model", "--data", "qm9", "--limit", "200", "-o",
              tmp_path / "ev.csv")
    assert res.returncode == 0, res.stderr
    ev = next(csv.DictReader(open(tmp_path / "ev.csv")))
    assert ev["unit"] == "eV" and int(ev["n"]) == n_tr + n_te
    # the same predictions as in the fit
    assert float(ev["mae"]) == pytest.approx(mae_all, rel=1e-6 if model != "slda" else 0.1)
    res = cli("predict", "CCO", "C1CC", "--model", tmp_path / "s" / "model", "--format", "csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert rows[0]["gap [eV]"] and rows[0]["gap_std [eV]"] == "" and "SMILES" in rows[1]["error"]


def test_subgraph_estimator_fit_predict_save_load(qm9_small, tmp_path):
    """The estimator shape for subgraph models: new -> fit(data, targets, split) -> predict -> save -> load."""
    from elprop.subgraph.estimator import SubgraphModel
    from elprop.train.saved import load_model
    ds = qm9_small.subset(np.arange(150))
    m = SubgraphModel.new("sparse-linear", "gap", min_support=0.05, max_edges=3).fit(ds, split={"train": np.arange(120)})
    assert m.config["features"] and m.specs[0].unit == "unitless"  # the caller gives the unit (TargetSpec)
    p = m.predict(list(ds.smiles[:120]))
    assert np.allclose(p.mean[:, 0], m.learner.decision(), atol=1e-9)  # SMARTS matches reproduce the fit
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert np.allclose(back.predict(list(ds.smiles[120:])).mean, m.predict(list(ds.smiles[120:])).mean)

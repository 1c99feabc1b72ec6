import csv
import io
import json

import pytest


def _one_line_error(res):
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("elprop: error:"), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def test_help_has_examples(cli):
    for args in (["--help"], ["predict", "--help"], ["train", "--help"], ["evaluate", "--help"],
                 ["data", "info", "--help"], ["density", "--help"], ["density", "generate", "--help"],
                 ["density", "info", "--help"], ["density", "devset", "--help"], ["density", "cube", "--help"],
                 ["predict-density", "--help"]):
        res = cli(*args)
        assert res.returncode == 0 and "examples:" in res.stdout, args


def test_data_info_qm9(cli):
    res = cli("data", "info", "qm9")
    assert res.returncode == 0
    assert "130,831" in res.stdout
    assert "gap        eV" in res.stdout and "alpha      bohr^3" in res.stdout and "U0_atom" in res.stdout


def test_predict_units_uncertainty_and_formats(cli, tiny_model, tmp_path):
    model = tiny_model[0] / "model"
    res = cli("predict", "c1ccccc1O", "CCO", "--model", model)
    assert res.returncode == 0, res.stderr
    header = res.stdout.splitlines()[0]
    assert "homo [eV]" in header and "gap [eV]" in header and "±" in res.stdout
    res = cli("predict", "CCO", "--model", model, "--format", "json")
    rec = json.loads(res.stdout)[0]
    assert rec["predictions"]["gap"]["unit"] == "eV" and rec["predictions"]["gap"]["std"] > 0
    out = tmp_path / "p.csv"
    res = cli("predict", "CCO", "CC#N", "--model", model, "-o", out)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 2 and "gap [eV]" in rows[0] and "gap_std [eV]" in rows[0]


def test_predict_batch_with_bad_molecules_keeps_good_ones(cli, tiny_model, tmp_path):
    model = tiny_model[0] / "model"
    smi = tmp_path / "m.smi"
    smi.write_text("CCO ethanol\nC1CC bad_ring\nC[Si](C)(C)C tms\nCCCCCCCCCCCCCCCCCCCCCCCC long\n")
    res = cli("predict", smi, "--model", model, "--format", "csv")
    assert res.returncode == 0, res.stderr
    rows = {r["input"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert rows["m.smi:ethanol"]["gap [eV]"] and not rows["m.smi:ethanol"]["error"]
    assert "invalid SMILES" in rows["m.smi:bad_ring"]["error"] and rows["m.smi:bad_ring"]["gap [eV]"] == ""
    assert "Si" in rows["m.smi:tms"]["error"] and "never seen" in rows["m.smi:tms"]["error"]
    assert "heavy atoms" in rows["m.smi:long"]["warning"] and rows["m.smi:long"]["gap [eV]"]
    assert "skipped" in res.stderr and "outside the training domain" in res.stderr


@pytest.mark.parametrize("args,match", [
    (["predict", "C1CC"], "invalid SMILES"),
    (["predict", "missing.sdf"], "no such file"),
    (["predict", "C[Se]C"], "Se"),
    (["data", "info", "nothing.xyz"], "no such file"),
    (["train", "--data", "qm9", "--targets", "bandgap", "--limit", "50"], "bandgap"),
    (["train", "--data", "qm9", "--targets", "gap,homo", "--target-weights", "lumo=2"], "--target-weights"),
    (["train", "--data", "qm9", "--targets", "gap", "--target-weights", "gap=-1"], ">= 0"),
])
def test_bad_input_exit_2_one_line(cli, tiny_model, args, match):
    if args[0] == "predict":
        args = args + ["--model", str(tiny_model[0] / "model")]
    assert match in _one_line_error(cli(*args))


def test_bad_files_exit_2(cli, tiny_model, tmp_path):
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    assert "empty" in _one_line_error(cli("predict", empty, "--model", tiny_model[0] / "model"))
    nan_csv = tmp_path / "nan.csv"
    nan_csv.write_text("smiles,gap\nCCO,1.0\nCCN,nan\n")
    msg = _one_line_error(cli("train", "--data", nan_csv, "--targets", "gap", "--runs-dir", tmp_path))
    assert "row 3" in msg and "NaN" in msg
    bad_model = tmp_path / "notamodel"
    bad_model.mkdir()
    assert "not a saved elprop model" in _one_line_error(cli("predict", "CCO", "--model", bad_model))


def test_train_and_evaluate_commands(cli, tmp_path):
    res = cli("train", "--data", "qm9", "--targets", "gap,mu", "--limit", "600", "--epochs", "2", "--dim", "16",
              "--layers", "1", "--features", "element", "--split", "scaffold", "--name", "t", "--runs-dir", tmp_path,
              "--no-progress")
    assert res.returncode == 0, res.stderr
    run = tmp_path / "t"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["split"] == "scaffold" and cfg["units"] == {"gap": "eV", "mu": "D"}
    metrics = list(csv.DictReader(open(run / "metrics.csv")))
    assert {(m["split"], m["target"], m["unit"]) for m in metrics} >= {("test", "gap", "eV"), ("val", "mu", "D")}
    # rerunning the same command resumes (all epochs done) instead of training again
    res2 = cli("train", "--data", "qm9", "--targets", "gap,mu", "--limit", "600", "--epochs", "2", "--dim", "16",
               "--layers", "1", "--features", "element", "--split", "scaffold", "--name", "t", "--runs-dir",
               tmp_path, "--no-progress")
    assert res2.returncode == 0 and "resuming" in res2.stdout
    # split.json holds indices of full QM9, so evaluating on full QM9 reproduces the run's own test metrics
    res = cli("evaluate", "--model", run / "model", "--data", "qm9", "--split-file", run / "split.json")
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.split()[:2] == ["test", "gap"])
    mae_eval = float(line.split()[4])
    mae_run = next(float(m["mae"]) for m in metrics if (m["split"], m["target"]) == ("test", "gap"))
    assert mae_eval == pytest.approx(mae_run, abs=1e-3)

"""elprop design: objectives, the search space, the generator, and the closed loop end to end with a stand-in
oracle (GFN2-xTB, seconds per molecule) and a small surrogate; resume after a kill without repeating a label."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

from elprop.core.dataset import InputError
from elprop.design.generate import Operators, random_molecules, run_ga
from elprop.design.objective import make_goal, pareto_ranks
from elprop.design.space import SearchSpace

UNITS = {"homo": "eV", "lumo": "eV", "gap": "eV", "mu": "D"}


def test_objectives_parse_and_score():
    g = make_goal(["gap=3.0:3.5eV"], ["mu>2"], UNITS)
    assert g.objectives[0].lo == 3.0 and g.objectives[0].hi == 3.5 and g.targets == ["gap", "mu"]
    mean = {"gap": np.array([3.25, 3.25, 6.0]), "mu": np.array([5.0, 0.0, 5.0])}
    std = {"gap": np.array([0.1, 0.1, 0.1]), "mu": np.array([0.1, 0.1, 0.1])}
    s = g.scores(mean, std)
    assert s[0] == pytest.approx(0.9876, abs=1e-3)  # P(3 < N(3.25, 0.1²) < 3.5) × P(mu > 2) ≈ 0.9876 × 1
    assert s[1] < 1e-6 and s[2] < 1e-6  # the constraint fails / the window is 27σ away
    hits = g.hits({"gap": np.array([3.2, 3.6, 3.2, np.nan]), "mu": np.array([3.0, 3.0, 1.0, 3.0])})
    assert hits.tolist() == [True, False, False, False]
    mx = make_goal(["max:mu:4"], [], UNITS, acquisition="ei")
    ei = mx.scores({"mu": np.array([1.0, 3.0, 3.0])}, {"mu": np.array([0.5, 0.5, 2.0])}, best={"mu": 3.0})
    assert ei[2] > ei[1] > ei[0]  # more σ at the same mean: more expected improvement
    assert mx.hits({"mu": np.array([4.5, 3.9])}).tolist() == [True, False]
    assert pareto_ranks(np.array([[1, 1], [2, 0], [0, 0], [2, 2]])).tolist() == [1, 1, 2, 0]


@pytest.mark.parametrize("obj,con,msg", [
    ("gap=3.5:3.0", [], "low end 3.5 is above its high end"),
    ("gap=3.0:3.5 Ha", [], "predicts gap in eV, not Ha"),
    ("logP=1:2", [], "has no target 'logP'"),
    ("gap~3", [], "write a window"),
    ("max:mu", ["gap>six"], "is not a number"),
])
def test_objective_errors(obj, con, msg):
    with pytest.raises(InputError, match=msg):
        make_goal([obj], con, UNITS)


def test_space_filters_and_rings():
    sp = SearchSpace()
    assert sp.reason(Chem.MolFromSmiles("C=CC=CC=O")) is None
    assert sp.reason(Chem.MolFromSmiles("CCOOC")).startswith("peroxide")
    assert sp.reason(Chem.MolFromSmiles("CC=O.CO")) == "more than one molecule"
    assert SearchSpace(min_heavy=2).reason(Chem.MolFromSmiles("O=O")).startswith("peroxide or O2")  # a triplet
    assert sp.reason(Chem.MolFromSmiles("CC=C=N")) == "ketenimine"
    assert sp.reason(Chem.MolFromSmiles("N#N")) == "2 heavy atoms"  # at least 3 by default
    assert SearchSpace(min_heavy=2).reason(Chem.MolFromSmiles("N#N")) is None
    assert sp.reason(Chem.MolFromSmiles("C[N+](C)(C)C")) == "charged atom"
    assert sp.reason(Chem.MolFromSmiles("C1CCCCCCC1")) == "8-membered ring"
    assert sp.reason(Chem.MolFromSmiles("CCCCCCCCCC")) == "10 heavy atoms"
    assert sp.reason(Chem.MolFromSmiles("CCS")) == "element S"
    assert "SA score" in SearchSpace(sa_max=1.0).reason(Chem.MolFromSmiles("CC1CC(O)C(N)C1F"))
    with pytest.raises(InputError):
        SearchSpace(elements=("H",))
    # a run saved before the defaults changed resumes with its own: 2 heavy atoms, the old group list
    before = {**SearchSpace().to_dict(), "min_heavy": 2, "unstable_groups": {"peroxide": "[#8]-[#8]"}}
    again = SearchSpace().resumed(before)
    assert again.to_dict() == before and again.reason(Chem.MolFromSmiles("CC=C=N")) is None
    assert SearchSpace(min_heavy=4).resumed(before).min_heavy == 4  # what the user gives is not overridden


def test_probability_of_a_hit_is_the_default_when_thresholds_are_given():
    g = make_goal(["max:mu:5"], ["gap>6"], UNITS)
    assert g.acquisition == "pi" and g.acquisition_auto
    # huge σ on a poor mean no longer beats a confident mean above the threshold (EI would take the first)
    mean, std = {"mu": np.array([5.5, 8.9]), "gap": np.array([8.0, 8.0])}, {"mu": np.array([23.0, 1.2]),
                                                                            "gap": np.array([0.5, 0.5])}
    pi = g.scores(mean, std)
    assert pi[1] > 0.99 and pi[0] == pytest.approx(0.5087, abs=1e-3)
    ei = make_goal(["max:mu:5"], ["gap>6"], UNITS, acquisition="ei").scores(mean, std)
    assert ei[0] > ei[1]
    assert make_goal(["max:mu"], [], UNITS).acquisition == "ei"  # no threshold: improvement over the best
    assert make_goal(["gap=3:3.5", "max:mu:4"], [], UNITS).acquisition == "pi"


def test_operators_stay_in_space_and_are_seeded():
    sp = SearchSpace(max_heavy=7)
    seeds = ["CCO", "c1ccccc1", "CC(=O)N", "C#CC=O", "OC1CC1"]

    def draw(seed):
        ops = Operators(sp, np.random.default_rng(seed))
        return [ops.mutate(s) for s in seeds * 6] + [ops.crossover("CCOC(C)=O", "Cc1ccccc1") for _ in range(6)]
    a = draw(3)
    assert a == draw(3) and a != draw(4)  # a seed fixes every move
    for s in a:
        if s is not None:
            assert sp.reason(Chem.MolFromSmiles(s)) is None, s
    assert sum(s is not None for s in a) >= 0.8 * len(a)
    ops = Operators(sp, np.random.default_rng(0))
    rnd = random_molecules(seeds, ops, 15)
    assert len(set(rnd)) == 15 and not set(rnd) & set(seeds)
    # the GA climbs a simple fitness: heavy-atom count
    scored = run_ga(seeds, lambda L: np.array([Chem.MolFromSmiles(x).GetNumHeavyAtoms() for x in L], float), ops,
                    generations=3, offspring=30, keep=10)
    assert max(scored.values()) == 7


def _design(model_dir, out, *extra):
    return [sys.executable, "-m", "elprop.cli.main", "design", "--model", str(model_dir), "--objective",
            "gap=1.5:3.0", "--oracle", "xtb", "--rounds", "2", "--batch", "3", "--population", "12", "--offspring",
            "16", "--generations", "2", "--seed-pool", "80", "--finetune-epochs", "2", "--replay", "0",
            "--novelty-reference", "none", "--workers", "0", "--no-progress", "--out", str(out), *extra]


def test_design_loop_end_to_end_and_resume_after_kill(tiny_model, tmp_path):
    """A tiny loop with GFN2-xTB standing in for DFT: every file, the learning step, and a kill mid-run."""
    model_dir = tiny_model[0] / "model"
    out = tmp_path / "d"
    env = dict(os.environ)
    proc = subprocess.Popen(_design(model_dir, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    res_dir = out / "labels" / "results"
    t0 = time.time()
    while time.time() - t0 < 300 and proc.poll() is None:  # kill once round 1 is verified, before learning ends
        if res_dir.is_dir() and len(list(res_dir.glob("*.json"))) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in res_dir.glob("*.json")}
    assert len(before) == 3
    r = subprocess.run(_design(model_dir, out), capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in res_dir.glob("*.json")}
    assert all(after[k] == v for k, v in before.items())  # no label of round 1 was computed again
    assert len(after) == 6
    for f in ("config.json", "rounds/01/pool.csv", "rounds/01/batch.csv", "rounds/02/batch.csv",
              "labels/labels.csv", "models/01/model/config.json", "models/02/model/config.json", "proposals.csv",
              "report.html"):
        assert (out / f).is_file(), f
    prop = pd.read_csv(out / "proposals.csv")
    assert len(prop) == 6 and prop["round"].tolist() == [1, 1, 1, 2, 2, 2]
    assert sorted(pd.read_csv(out / "labels" / "labels.csv")["smiles"]) == sorted(prop["smiles"])
    assert prop["smiles"].is_unique  # nothing verified twice
    lab = prop["gap_label"].to_numpy()
    assert np.array_equal(prop["hit"].to_numpy(), (lab >= 1.5) & (lab <= 3.0))
    for c in ("gap_pred", "gap_std", "gap_epistemic", "score", "warning", "novel", "verified"):
        assert c in prop.columns
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["design"]["oracle"] == "xtb" and "ketenimine" in cfg["space"]["unstable_groups"]
    page = (out / "report.html").read_text()
    assert "GFN2-xTB (a stand-in, not DFT)" in page and "<svg" in page and "Rounds" in page
    # round 2 was proposed by the model fine-tuned on round 1's labels
    from elprop.train.saved import load_model
    r2_smiles = prop.loc[prop["round"] == 2, "smiles"].tolist()
    tuned_model = load_model(out / "models/01/model")
    tuned, k = tuned_model.predict(r2_smiles), tuned_model.config["targets"].index("gap")
    assert np.allclose(tuned.mean[:, k], prop.loc[prop["round"] == 2, "gap_pred"], atol=1e-4)
    base = load_model(model_dir).predict(r2_smiles)
    assert not np.allclose(base.mean[:, k], tuned.mean[:, k], atol=1e-4)  # the fine-tuning changed the model
    # a rerun of a finished run computes nothing; other settings are refused
    r2 = subprocess.run(_design(model_dir, out), capture_output=True, text=True, env=env)
    assert r2.returncode == 0 and {p.name: p.stat().st_mtime_ns for p in res_dir.glob("*.json")} == after
    r3 = subprocess.run(_design(model_dir, out, "--max-heavy", "7"), capture_output=True, text=True, env=env)
    assert r3.returncode == 2 and "other settings" in r3.stderr
    # the model after round 1 learned round 1's labels only; restored without its models (a fresh machine), the
    # run does not train that model again, since it only served to propose round 2, which is chosen
    assert len(pd.read_csv(out / "models/train_01.csv")) == 3 and len(pd.read_csv(out / "models/train_02.csv")) == 6
    shutil.rmtree(out / "models")
    r4 = subprocess.run(_design(model_dir, out), capture_output=True, text=True, env=env)
    assert r4.returncode == 0, r4.stderr[-2000:]
    assert not (out / "models/01").exists() and (out / "models/02/model/config.json").is_file()


@pytest.mark.parametrize("args,msg", [
    (["--objective", "gap=3.5:3.0"], "above its high end"),
    (["--objective", "gap=3:3.5 kcal/mol"], "predicts gap in eV"),
    (["--objective", "max:logS"], "has no target 'logS'"),
    (["--objective", "gap=3:3.5", "--finetune-new-fraction", "1"], "give a fraction in [0, 1)"),
    (["--objective", "gap=3:3.5", "--generator", "library", "--library", "missing.smi"], "no such file"),
    (["--objective", "gap=3:3.5", "--prescreen", "xtb,dftb"], "stages are 'xtb' or 'dft:BASIS'"),
    (["--objective", "gap=3:3.5", "--prescreen", "dft:no-such-basis"], "PySCF knows no basis"),
    (["--objective", "gap=3:3.5", "--prescreen", "xtb", "--prescreen-top", "5"], "at least --batch 12"),
    (["--objective", "gap=3:3.5", "--prescreen", "xtb", "--prescreen-top", "100,40"], "one positive number per"),
])
def test_design_bad_input_exit_2(tiny_model, tmp_path, capsys, args, msg):
    from elprop.cli.main import main
    assert main(["design", "--model", str(tiny_model[0] / "model"), "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_design_empty_library_exit_2(tiny_model, tmp_path, capsys):
    from elprop.cli.main import main
    lib = tmp_path / "lib.smi"
    lib.write_text("CCCCCCCCCCCC\nC[Si](C)C\n")  # nothing inside the default space
    assert main(["design", "--model", str(tiny_model[0] / "model"), "--out", str(tmp_path / "x"), "--objective",
                 "gap=3:3.5", "--generator", "library", "--library", str(lib), "--oracle", "xtb",
                 "--novelty-reference", "none", "--workers", "0", "--no-progress"]) == 2
    assert "no molecule of the library lies inside the search space" in capsys.readouterr().err


def test_screen_chunks_resume_and_dask(tiny_model, tmp_path, cli, qm9_small):
    """elprop screen: every molecule scored once into chunk files, the same through Dask, a lost chunk redone."""
    lib = tmp_path / "lib.smi"
    lib.write_text("".join(f"{s}\n" for s in qm9_small.smiles[:230]) + "not_a_smiles\n")
    args = ["--model", tiny_model[0] / "model", "--objective", "gap=6:7", "--constraint", "homo<-6", "--chunk",
            "100", "--top", "20", "--no-progress"]
    r = cli("screen", lib, "--out", tmp_path / "s0", "--workers", "0", *args)
    assert r.returncode == 0, r.stderr
    parts = sorted((tmp_path / "s0" / "parts").glob("*.parquet"))
    assert [p.name for p in parts] == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    df = pd.concat([pd.read_parquet(p) for p in parts])
    assert df["row"].tolist() == list(range(231))
    assert df["error"].iloc[-1] == "invalid SMILES" and df["score"].iloc[-1] == -np.inf
    top = pd.read_csv(tmp_path / "s0" / "top.csv")
    assert len(top) == 20 and top["score"].is_monotonic_decreasing
    assert top["score"].iloc[0] == pytest.approx(df["score"].max())
    # a lost chunk is recomputed, the others kept
    keep = parts[0].stat().st_mtime_ns
    parts[1].unlink()
    r = cli("screen", lib, "--out", tmp_path / "s0", "--workers", "0", *args)
    assert r.returncode == 0 and parts[1].exists() and parts[0].stat().st_mtime_ns == keep
    assert json.loads((tmp_path / "s0" / "summary.json").read_text())["chunks_now"] == 1
    # two Dask workers give the same scores
    r = cli("screen", lib, "--out", tmp_path / "s2", "--workers", "2", *args)
    assert r.returncode == 0, r.stderr
    df2 = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "s2" / "parts").glob("*.parquet"))])
    assert np.allclose(df2["score"], df["score"], atol=1e-5)
    # other settings in the same folder are refused
    r = cli("screen", lib, "--out", tmp_path / "s0", "--workers", "0", *args[:-5], "--chunk", "50", "--no-progress")
    assert r.returncode == 2 and "other settings" in r.stderr


@pytest.mark.parametrize("content,msg", [("", "the library is empty"), ("xx\nyy(\n", "is a valid SMILES")])
def test_screen_bad_library_exit_2(tiny_model, tmp_path, capsys, content, msg):
    from elprop.cli.main import main
    lib = tmp_path / "lib.smi"
    lib.write_text(content)
    assert main(["screen", str(lib), "--model", str(tiny_model[0] / "model"), "--objective", "gap=6:7", "--out",
                 str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_residual_gp_learns_a_chemistry_offset():
    """The GP on fingerprints moves predictions of molecules like the verified ones and leaves others alone."""
    from elprop.design.gp import ResidualGP
    polyenes = ["C=CC=CC=O", "C=CC=CC=CC=O", "CC=CC=CC=O", "C=CC=C", "C=CC=CC=C", "CC=CC=CC"]
    alcohols = ["CCO", "CCCO", "CCCCO", "CC(C)O", "CC(C)CO", "OCCCCO"]
    gp = ResidualGP().fit(polyenes + alcohols, np.array([-1.5] * 6 + [0.0] * 6))
    shift, shrink = gp.predict(["C=CC=CC=CC=CC=O", "CCCCCCO", "CCCC=CC=CC=O"])
    assert shift[0] < -0.8 and shift[2] < -0.8 and abs(shift[1]) < 0.3
    assert np.all((shrink >= 0) & (shrink <= 1))
    on_train = gp.predict(polyenes)[1]
    assert on_train.max() < shrink.min()  # σ shrinks most where it was verified
    none = ResidualGP().fit(["CCO"], np.array([1.0]))  # too few points: no correction
    assert none.predict(["CCO"])[0].tolist() == [0.0] and none.predict(["CCO"])[1].tolist() == [1.0]


@pytest.mark.slow
def test_design_one_round_with_real_dft(tiny_model, tmp_path, cli):
    """One round verified by DFT at the QM9 level (small molecules, so minutes, not hours)."""
    out = tmp_path / "dft"
    r = cli("design", "--model", tiny_model[0] / "model", "--objective", "gap=6:9", "--rounds", "1", "--batch",
            "2", "--max-heavy", "4", "--population", "10", "--offspring", "10", "--generations", "1",
            "--seed-pool", "300", "--novelty-reference", "none", "--workers", "2", "--no-progress", "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    prop = pd.read_csv(out / "proposals.csv")
    assert len(prop) == 2 and prop["verified"].all()
    cfg = json.loads((out / "labels" / "config.json").read_text())
    assert cfg["method"] == "dft" and "B3LYP/6-31g(2df,p)" in cfg["level_of_theory"]
    lab = pd.read_csv(out / "labels" / "labels.csv")
    assert set(lab["smiles"]) == set(prop["smiles"]) and (lab["scf"] != "gfn2-xtb").all()
    assert np.allclose(np.sort(lab["gap [eV]"]), np.sort(prop["gap_label"]))


def test_sigma_is_calibrated_by_verified_proposals(tmp_path):
    """--calibrate: σ grows by the RMS z-score of the proposals verified so far (their prediction and σ at proposal
    time, never the calibrated σ, so the factor does not shrink back to 1); a resumed old run keeps its σ."""
    from elprop.design.loop import DesignConfig, DesignRun
    from elprop.label.run import item_key
    goal = make_goal(["gap=3.0:3.5"], [], UNITS)
    run = DesignRun(tmp_path / "run", DesignConfig(model="unused", calibrate=True), goal, SearchSpace())
    smiles = ["CC", "CCC", "CCCC", "CCO", "CCN", "CCF"]
    pred, std, label = np.full(6, 3.0), np.full(6, 0.1), 3.0 + np.array([0.3, -0.3, 0.3, -0.3, 0.3, -0.3])
    d = run.round_dir(1)
    d.mkdir(parents=True)
    pd.DataFrame({"smiles": smiles[:4], "gap_pred": pred[:4], "gap_std": std[:4],
                  "name": [f"r01_{i:03d}" for i in range(4)]}).to_csv(d / "batch.csv", index=False)
    res = run.labels_dir / "results"
    res.mkdir(parents=True)
    for s, y in zip(smiles, label):
        (res / f"{item_key(s)}.json").write_text(json.dumps({"ok": True, "gap": y, "smiles": s}))
    assert run.sigma_scales() == {"gap": 1.0}  # 4 labels: too few
    d2 = run.round_dir(2)
    d2.mkdir(parents=True)  # round 2 was proposed with a calibrated σ already; its z uses the raw one
    pd.DataFrame({"smiles": smiles[4:], "gap_pred": pred[4:], "gap_std": 10 * std[4:], "gap_std_raw": std[4:],
                  "name": ["r02_000", "r02_001"]}).to_csv(d2 / "batch.csv", index=False)
    assert run.sigma_scales()["gap"] == pytest.approx(3.0)
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"design": {k: v for k, v in DesignConfig(model="m").to_dict().items()
                                                            if k != "calibrate"}, "goal": goal.to_dict(),
                                                 "space": SearchSpace().to_dict()}))
    resumed = DesignRun(old, DesignConfig(model="m"), goal, SearchSpace())
    resumed.open()
    assert resumed.cfg.calibrate is False
    fresh = DesignRun(tmp_path / "new", DesignConfig(model="m"), goal, SearchSpace())
    fresh.open()
    assert fresh.cfg.calibrate is True


def test_recalibration_and_delta_model_learn_what_they_should():
    """σ from the verified candidates is their RMS error; the Δ-model learns a substructure's offset to the xTB
    value from a reference table."""
    from elprop.design.multifidelity import DeltaModel, verified_sigma
    rng = np.random.default_rng(0)
    x = rng.uniform(2, 8, 40)
    y = x + rng.normal(0, 0.1, 40)
    assert 0.07 < verified_sigma(x, y) < 0.14
    assert verified_sigma(x, y + 0.3) == pytest.approx(np.sqrt(verified_sigma(x, y) ** 2 + 0.09), rel=0.1)
    assert verified_sigma(x[:5], y[:5]) is None  # too few verified molecules: the Δ-model's own σ stays
    smiles = ["C" * n + s for n in range(1, 9) for s in ("", "O", "N", "C#N", "C=O", "F")] * 6
    ref = pd.DataFrame({"smiles": smiles})
    for t in ("homo", "lumo", "gap", "mu"):
        ref[f"xtb_{t}"] = rng.uniform(0, 5, len(ref))
        ref[t] = ref[f"xtb_{t}"] + np.where(ref["smiles"].str.contains("N"), 1.0, 0.0)  # nitrogen: +1 at DFT
    dm = DeltaModel(["gap", "alpha"]).fit(ref)
    assert dm.targets == ["gap"]  # xTB gives no α: that target keeps the surrogate
    test = pd.DataFrame({"smiles": ["CCCN", "CCCO"], **{f"xtb_{t}": [2.0, 2.0] for t in ("homo", "lumo", "gap", "mu")}})
    est = dm.predict(test["smiles"], test)["gap"]
    assert est[0] == pytest.approx(3.0, abs=0.2) and est[1] == pytest.approx(2.0, abs=0.2)
    assert dm.rms["gap"] < 0.2


def test_design_with_an_xtb_prescreen(tiny_model, tmp_path):
    """--prescreen xtb (the fast suite's prescreen test; the cascade with a DFT stage is slow, below): each round
    the surrogate's best 8 get GFN2-xTB + Δ-model estimates, the batch is chosen among them, σ comes from the
    verified molecules once there are 6, and a rerun computes nothing new."""
    out = tmp_path / "p"
    env = dict(os.environ, ELPROP_CACHE=str(tmp_path / "cache"))
    cmd = _design(tiny_model[0] / "model", out, "--prescreen", "xtb", "--prescreen-top", "8",
                  "--prescreen-reference", "30", "--batch", "6", "--finetune-epochs", "1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "prescreening the surrogate's best 8" in r.stdout
    for k in (1, 2):
        pre = pd.read_csv(out / "rounds" / f"{k:02d}" / "prescreen.csv")
        batch = pd.read_csv(out / "rounds" / f"{k:02d}" / "batch.csv")
        assert len(pre) == 8 and set(batch["smiles"]) <= set(pre["smiles"])
        assert {"gap_xtb", "gap_surrogate_pred", "gap_surrogate_std"} <= set(pre.columns)
        est = pre.set_index("smiles").loc[batch["smiles"]]
        assert np.allclose(est["gap_pred"], batch["gap_pred"])
    pre1, pre2 = (pd.read_csv(out / f"rounds/0{k}/prescreen.csv") for k in (1, 2))
    assert pre2["gap_std"].iloc[0] != pre1["gap_std"].iloc[0]  # σ from round 1's 6 labels
    n = len(list((out / "prescreen" / "results").glob("*.json")))
    assert n >= 8
    assert subprocess.run(cmd, capture_output=True, text=True, env=env).returncode == 0
    assert n == len(list((out / "prescreen" / "results").glob("*.json")))


@pytest.mark.slow
def test_design_with_xtb_prescreen(tiny_model, tmp_path):
    """--prescreen as a cascade, xTB then a small-basis DFT single point (STO-3G here, to stay fast): each round
    the best candidates get GFN2-xTB + Δ-model estimates, the best of those B3LYP/STO-3G + Δ-model estimates, and
    the batch is chosen among the last; once 6 candidates are verified σ comes from their errors."""
    out = tmp_path / "p"
    env = dict(os.environ, ELPROP_CACHE=str(tmp_path / "cache"))  # reference sets of its own, computed here
    cmd = _design(tiny_model[0] / "model", out, "--prescreen", "xtb,dft:sto-3g", "--prescreen-top", "8,6",
                  "--prescreen-reference", "30,12", "--batch", "6", "--finetune-epochs", "1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "prescreening the surrogate's best 8" in r.stdout and "with B3LYP/sto-3g" in r.stdout
    version = __import__('importlib.metadata').metadata.version('qm9pack')
    assert (tmp_path / "cache" / f"qm9xtb-{version}-30-seed11.csv").is_file()
    assert (tmp_path / "cache" / f"qm9dft-sto-3g-{version}-12-seed11.csv").is_file()
    assert json.loads((out / "config.json").read_text())["design"]["prescreen_top"] == "8,6"
    prop = pd.read_csv(out / "proposals.csv")
    assert len(prop) == 12
    for k in (1, 2):
        first = pd.read_csv(out / "rounds" / f"{k:02d}" / "prescreen-xtb.csv")
        pre = pd.read_csv(out / "rounds" / f"{k:02d}" / "prescreen.csv")
        batch = pd.read_csv(out / "rounds" / f"{k:02d}" / "batch.csv")
        assert len(first) == 8 and len(pre) == 6 and set(pre["smiles"]) <= set(first["smiles"])
        assert set(batch["smiles"]) <= set(pre["smiles"])
        for c in ("gap_xtb", "gap_dft_sto_3g", "gap_surrogate_pred", "gap_surrogate_std", "surrogate_score"):
            assert c in pre.columns
        assert not np.allclose(pre["gap_xtb"], pre["gap_dft_sto_3g"])  # two levels, two sets of values
        est = pre.set_index("smiles").loc[batch["smiles"]]
        assert np.allclose(est["gap_pred"], batch["gap_pred"])  # the batch carries the last stage's estimates
    for folder in ("prescreen", "prescreen-dft-sto-3g"):
        assert len(list((out / folder / "results").glob("*.json"))) >= 6
    page = (out / "report.html").read_text()
    assert "GFN2-xTB on 8 a round" in page and "B3LYP/sto-3g on 6 a round" in page
    pre1 = pd.read_csv(out / "rounds/01/prescreen.csv")
    pre2 = pd.read_csv(out / "rounds/02/prescreen.csv")
    assert pre1["gap_std"].nunique() == 1 and pre2["gap_std"].nunique() == 1
    assert pre2["gap_std"].iloc[0] != pre1["gap_std"].iloc[0]  # σ from round 1's 6 labels
    # the rerun of a finished run computes nothing new
    n = {f: len(list((out / f / "results").glob("*.json"))) for f in ("prescreen", "prescreen-dft-sto-3g")}
    assert subprocess.run(cmd, capture_output=True, text=True, env=env).returncode == 0
    assert n == {f: len(list((out / f / "results").glob("*.json"))) for f in ("prescreen", "prescreen-dft-sto-3g")}


def test_prescreen_stages_parse_with_defaults():
    from elprop.design.multifidelity import parse_prescreen, stage_numbers
    assert parse_prescreen("none") == [] and parse_prescreen(None) == []
    xtb, dft = parse_prescreen("xtb, dft:6-31G")
    assert (xtb.prefix, xtb.folder, dft.prefix, dft.folder) == ("xtb", "prescreen", "dft_6_31g", "prescreen-dft-6-31g")
    assert dft.settings()["basis"] == "6-31g" and dft.settings()["xc"] == "b3lyp"
    assert stage_numbers(None, 2, [100, 36], "--prescreen-top") == [100, 36]
    assert stage_numbers("80", 2, [100, 36], "--prescreen-top") == [80, 36]
    assert stage_numbers(100, 1, [100], "--prescreen-top") == [100]
    assert stage_numbers(100, 0, [], "--prescreen-top") == []  # a resumed run without prescreen stores 100


def test_reference_workers_do_not_hang_after_tblite_ran_in_the_parent(tmp_path):
    """qm9_reference's process pool is spawned: forked after a GFN2-xTB call in the same process (tblite's OpenMP
    threads started), its workers hung forever on a copied lock."""
    script = tmp_path / "ref.py"
    script.write_text(
        "import numpy as np\n"
        "from elprop.label.compute import xtb_single_point\n"
        "from elprop.design.multifidelity import qm9_xtb_reference\n"
        "if __name__ == '__main__':\n"
        "    xtb_single_point([8, 1, 1], np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.0]]))\n"
        "    print(len(qm9_xtb_reference(20, workers=2, progress=False, log=lambda *a: None)))\n")
    env = dict(os.environ, ELPROP_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "20"

"""Materials descriptors and featurisers: mendeleev descriptors cross-checked against the packaged table, pair and
alloy-formula features, and bad input."""
from pathlib import Path

import numpy as np
import pytest

from elprop.core.dataset import InputError
from elprop.materials.descriptors import cross_check, element_table
from elprop.materials.featurize import formula_features, pair_features, parse_formula



def _materials_dir() -> Path:
    """The materials tables shipped inside elprop (``elprop.data.embedded``): every clone has them."""
    from elprop.data.embedded import embedded_path
    return embedded_path("dband-overlayers").parent


MATERIALS = _materials_dir()
DBAND_METALS = ["Fe", "Co", "Ni", "Cu", "Ru", "Rh", "Pd", "Ag", "Ir", "Pt", "Au"]


def test_descriptors_cover_the_dband_metals_with_physical_values():
    t = element_table()
    sub = t.loc[DBAND_METALS]
    listed = ["Z", "group", "period", "mass", "atomic_radius", "covalent_radius", "metallic_radius", "electronegativity",
              "ionization_energy", "density", "melting_point", "fusion_enthalpy", "d_electrons"]
    assert sub[listed].notna().all().all()  # the descriptors the RSC Adv. protocol uses, for all 11 metals
    assert list(sub["d_electrons"]) == [6, 7, 8, 10, 7, 8, 10, 10, 7, 9, 10]  # ground-state configurations
    assert list(sub["group"]) == [8, 9, 10, 11, 8, 9, 10, 11, 9, 10, 11]
    assert sub.loc["Pt", "density"] == pytest.approx(21.45, rel=0.01)
    assert sub.loc["Au", "melting_point"] == pytest.approx(1337.3, rel=0.001)


def test_descriptors_agree_with_the_reference_table_and_disagreements_are_reported():
    c = cross_check(MATERIALS / "element_descriptors.csv").set_index("descriptor")
    for name in ("Z", "group", "period", "mass", "ionization_energy", "melting_point", "valence_electrons"):
        assert c.loc[name, "n_compared"] > 50
        assert c.loc[name, "max_rel_diff"] < 0.05, name  # the same quantity in both sources
    # the reference's electronegativity is not Pauling's (Au: 1.42 there, 2.54/2.4 Pauling): reported, not hidden
    assert c.loc["electronegativity", "n_disagree"] > 10
    assert {"worst_element", "ours_at_worst", "reference_at_worst"} <= set(c.columns)


def test_pair_and_formula_features():
    f = pair_features(["Pt", "Cu"], ["Au", "Pt"])
    t = element_table()
    assert f.loc[0, "host_density"] == t.loc["Pt", "density"] and f.loc[0, "guest_density"] == t.loc["Au", "density"]
    assert f.loc[1, "diff_d_electrons"] == t.loc["Pt", "d_electrons"] - t.loc["Cu", "d_electrons"]
    assert f.loc[1, "ratio_mass"] == pytest.approx(t.loc["Pt", "mass"] / t.loc["Cu", "mass"])
    assert parse_formula("Ti3In") == {"Ti": 3, "In": 1}
    assert parse_formula("Ca(OH)2") == {"Ca": 1, "O": 2, "H": 2}
    assert parse_formula("Cu0.5Pd0.5") == {"Cu": 0.5, "Pd": 0.5}
    g = formula_features(["Ti3In", "Pt"])
    d_ti, d_in = t.loc["Ti", "d_electrons"], t.loc["In", "d_electrons"]
    assert g.loc[0, "mean_d_electrons"] == pytest.approx(0.75 * d_ti + 0.25 * d_in)
    assert g.loc[0, "range_d_electrons"] == abs(d_in - d_ti) and g.loc[1, "std_density"] == 0
    for bad in ("Ti3Xx", "CuPd)", "3Cu", "", "Cu(Pd"):
        with pytest.raises(InputError):
            parse_formula(bad)
    with pytest.raises(InputError, match="Qq"):
        pair_features(["Pt"], ["Qq"])


@pytest.mark.parametrize("kind", ["gbr", "lgbm", "rf", "gp", "krr"])
def test_models_fit_predict_with_uncertainty_and_round_trip(kind, tmp_path):
    import pandas as pd
    from elprop.materials.models import MaterialsModel
    d = pd.read_csv(MATERIALS / "dband_overlayers_long.csv")
    X = pair_features(d.host_substrate, d.guest_overlayer, ["density", "fusion_enthalpy", "d_electrons",
                                                             "metallic_radius"])
    y = d["shift_eV"].to_numpy()
    tr, te = np.arange(0, 110, 2), np.arange(1, 110, 2)
    m = MaterialsModel(kind, seed=3).fit(X.iloc[tr], y[tr])
    mu, sd = m.predict(X.iloc[te], return_std=True)
    rmse = np.sqrt(np.mean((mu - y[te]) ** 2))
    assert rmse < 0.75 * np.std(y[te])  # clearly better than predicting the mean
    assert np.all(np.isfinite(sd)) and np.all(sd >= 0) and sd.mean() > 0
    m.save(tmp_path / "m")
    m2 = MaterialsModel.load(tmp_path / "m")
    assert np.allclose(m2.predict(X.iloc[te]), mu)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "m").iterdir())
    if kind != "krr":
        imp = m.feature_importance()
        assert len(imp) == X.shape[1] and abs(sum(imp.values()) - 1) < 1e-6
    with pytest.raises(InputError):
        MaterialsModel(kind).fit(X.iloc[:5], np.array([1.0, np.nan, 2.0, 3.0, 4.0]))
    with pytest.raises(InputError):
        m.predict(X.drop(columns=["host_density"]))


def test_protocols_learning_curve_leave_one_metal_out_and_descriptor_search():
    import pandas as pd
    from elprop.materials.protocols import descriptor_search, learning_curve, leave_one_group_out
    d = pd.read_csv(MATERIALS / "dband_overlayers_long.csv")
    y = d["shift_eV"].to_numpy()

    def feats(desc):
        return pair_features(d.host_substrate, d.guest_overlayer, desc)
    X = feats(["density", "fusion_enthalpy", "d_electrons"])
    lc = learning_curve(X, y, "lgbm", fractions=(0.1, 0.5, 0.9), repeats=4)
    assert list(lc["n_train"]) == [11, 55, 99] and (lc["repeats"] == 4).all()
    assert lc["rmse_mean"].iloc[-1] < lc["rmse_mean"].iloc[0]  # more data, lower error
    table, pooled = leave_one_group_out(X, y, [{h, g} for h, g in zip(d.host_substrate, d.guest_overlayer)], "lgbm")
    assert len(table) == 11 and (table["n_test"] == 20).all()  # each metal is in 10 pairs as host, 10 as guest
    assert np.isfinite(pooled).all()
    steps = descriptor_search(feats, ["density", "d_electrons", "mass"], y, k_max=2, kind="lgbm", repeats=2)
    assert len(steps) == 2 and steps["descriptors"].iloc[1].startswith(steps["added"].iloc[0])


def test_materials_commands_fit_screen_predict_evaluate_and_bad_input(tmp_path, cli):
    import pandas as pd
    long = MATERIALS / "dband_overlayers_long.csv"
    res = cli("materials", "fit", "--data", long, "--target", "eps_d_minus_EF_eV", "--drop-columns", "shift_eV",
              "--model", "lgbm", "--repeats", "3", "--out", tmp_path / "fit")
    assert res.returncode == 0, res.stderr
    for f in ("report.html", "learning_curve.png", "parity.png", "importance.png", "partial_dependence.png",
              "heatmap.png", "model/config.json", "model/materials.json", "model/card.md"):
        assert (tmp_path / "fit" / f).exists(), f
    res = cli("materials", "screen", "--model", tmp_path / "fit" / "model", "--elements", "Pt,Au,Os", "--out",
              tmp_path / "s")
    assert res.returncode == 0, res.stderr
    rank = pd.read_csv(tmp_path / "s" / "ranking.csv")
    assert len(rank) == 9 and rank["eps_d_minus_EF_eV_pred"].is_monotonic_decreasing
    assert (~rank["in_training_elements"]).sum() == 5  # every pair with Os
    new = tmp_path / "new.csv"
    new.write_text("host,guest\nPt,Au\nCu,Pd\n")
    res = cli("materials", "predict", "--model", tmp_path / "fit" / "model", "--data", new, "-o", tmp_path / "p.csv")
    assert res.returncode == 0, res.stderr
    assert len(pd.read_csv(tmp_path / "p.csv")) == 2
    matrix = MATERIALS / "dband_overlayer_matrix.csv"
    res = cli("materials", "evaluate", "--data", matrix, "--models", "lgbm", "--fractions", "0.25,0.75",
              "--repeats", "3", "--subset-k", "1", "--out", tmp_path / "ev")
    assert res.returncode == 0, res.stderr
    assert len(pd.read_csv(tmp_path / "ev" / "leave_one_group_out.csv")) == 1
    # bad input: one line, exit 2
    bad = {"sym.csv": "host,guest,y\nPt,Xx,1.0\nPt,Au,2.0\n", "nan.csv": "host,guest,y\nPt,Au,\nCu,Pd,1\n",
           "formula.csv": "formula,y\nTi3In,1\nCu(Pd,2\nPt,3\n"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        res = cli("materials", "fit", "--data", tmp_path / name, "--target", "y", "--out", tmp_path / "b")
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, (name, res.stderr)
    res = cli("materials", "fit", "--data", long, "--target", "nope", "--out", tmp_path / "b")
    assert res.returncode == 2 and "nope" in res.stderr
    res = cli("materials", "fit", "--data", long, "--target", "eps_d_minus_EF_eV", "--pair-features", "host,sum",
              "--out", tmp_path / "b")
    assert res.returncode == 2 and "sum" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_pair_feature_parts_select_columns_and_a_model_on_them_screens(tmp_path, cli):
    import pandas as pd

    from elprop.materials.table import read_table
    long = MATERIALS / "dband_overlayers_long.csv"
    t = read_table(long, "eps_d_minus_EF_eV", drop_columns=["shift_eV"], pair_parts=("host", "guest"))
    assert {c.split("_", 1)[0] for c in t.X.columns} == {"host", "guest"}
    full = read_table(long, "eps_d_minus_EF_eV", drop_columns=["shift_eV"])
    assert full.X.shape[1] == 2 * t.X.shape[1]
    res = cli("materials", "fit", "--data", long, "--target", "eps_d_minus_EF_eV", "--drop-columns", "shift_eV",
              "--pair-features", "host,guest", "--model", "gp", "--repeats", "2", "--out", tmp_path / "fit")
    assert res.returncode == 0, res.stderr
    res = cli("materials", "screen", "--model", tmp_path / "fit" / "model", "--elements", "Pt,Au", "--out",
              tmp_path / "s")
    assert res.returncode == 0, res.stderr
    assert len(pd.read_csv(tmp_path / "s" / "ranking.csv")) == 4

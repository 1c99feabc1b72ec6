"""elprop serve: every route answers, bad input is a message on the page (never a 500), big tables are paged."""
import io
import re

import numpy as np
import pandas as pd
import pytest

from elprop.serve.app import create_app


@pytest.fixture(scope="module")
def client(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    d = root / "design-a"
    d.mkdir()
    rng = np.random.default_rng(0)
    n = 10000
    pd.DataFrame({"smiles": ["CCO"] * n, "round": np.repeat(np.arange(1, 5), n // 4),
                  "gap_pred": rng.normal(6, 1, n), "gap_label": rng.normal(6, 1, n),
                  "hit": rng.random(n) < 0.2}).to_csv(d / "proposals.csv", index=False)
    (root / "empty-folder").mkdir()
    sg = root / "subgraph-a"  # the files `elprop subgraph fit` writes, with two patterns
    sg.mkdir()
    pd.DataFrame({"smarts": ["[#6]:[#6]", "[#6]=[#8]"], "coefficient": [-1.86, -1.25], "support": [21, 55]}) \
        .to_csv(sg / "selected.csv", index=False)
    (sg / "model.json").write_text("{}")
    (sg / "report.html").write_text("<html>report</html>")
    mat = root / "materials-a"  # the files `elprop materials fit` writes
    mat.mkdir()
    pd.DataFrame({"model": ["gbr", "gbr"], "train_fraction": [0.25, 0.5], "rmse_mean": [0.3, 0.2],
                  "rmse_sd": [0.02, 0.01]}).to_csv(mat / "learning_curve.csv", index=False)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.plot([0, 1], [1, 0])
    plt.savefig(mat / "heatmap.png")
    plt.close()
    tr = root / "training-in-progress"  # what `elprop train` has written two epochs in
    (tr / "checkpoints" / "member_0").mkdir(parents=True)
    (tr / "config.json").write_text('{"model": "bondgraph", "epochs": 30, "ensemble": 2}')
    (tr / "checkpoints" / "member_0" / "history.csv").write_text("epoch,steps,time_s,train_l1_scaled,val_l1_scaled\n"
                                                                  "1,10,5.0,0.5,0.6\n2,20,10.0,0.4,0.5\n")
    lab = root / "labels-running"  # an `elprop label` folder with its lock held
    (lab / "results").mkdir(parents=True)
    (lab / "results" / "a.json").write_text('{"ok": true}')
    (lab / "results" / "b.json").write_text('{"ok": false, "error": "SCF"}')
    pd.DataFrame({"name": ["a"], "smiles": ["CCO"]}).to_csv(lab / "labels.csv", index=False)
    (lab / ".lock").write_text("12345")
    app = create_app([tiny_model[0].parent, root])
    app.testing = True
    return app.test_client()


def _runs(client):
    return re.findall(r"/runs/([0-9a-f]{10})", client.get("/runs").get_data(as_text=True))


def test_pages_answer(client):
    for url in ("/", "/predict", "/runs", "/molecule?smiles=c1ccccc1O", "/static/plotly.min.js"):
        r = client.get(url)
        assert r.status_code == 200, url
    page = client.get("/runs").get_data(as_text=True)
    for kind in ("training", "design", "subgraph", "materials"):
        assert f"<h2>{kind} (" in page, kind
    pages = {}
    for rid in _runs(client):
        r = client.get(f"/runs/{rid}")
        assert r.status_code == 200
        pages[rid] = r.get_data(as_text=True)
    training = next(p for p in pages.values() if "(training)" in p and "training-in-progress" not in p)
    assert 'id="metrics"' in training and "plot-history" in training and "parity_" in training
    sub = next(p for p in pages.values() if "(subgraph)" in p)
    assert sub.count("<svg") == 2 and "[#6]=[#8]" in sub
    mat = next((rid, p) for rid, p in pages.items() if "(materials)" in p)
    assert "heatmap.png" in mat[1] and "rmse_mean" in mat[1]
    assert client.get(f"/runs/{mat[0]}/file/heatmap.png").mimetype == "image/png"
    design = next(p for p in pages.values() if "(design)" in p)
    assert "plot-parity" in design


def test_predict_table_depictions_and_csv(client):
    r = client.post("/predict", data={"smiles": "CCO\nnot-a-smiles\nc1ccccc1O", "model": "shipped"})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and page.count("<svg") == 2 and "invalid SMILES" in page
    assert "gap [eV]" in page and "±" in page
    token = re.search(r"/download/([0-9a-f]+)\.csv", page).group(1)
    csv = client.get(f"/download/{token}.csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert csv.get_data(as_text=True).splitlines()[0].startswith("input,smiles,homo [eV]")
    up = client.post("/predict", data={"smiles": "", "model": "shipped",
                                       "file": (io.BytesIO(b"smiles,name\nCCN,ethylamine\nC#N,hcn\n"), "mine.csv")},
                     content_type="multipart/form-data")
    assert up.status_code == 200 and "2 molecule(s)" in up.get_data(as_text=True)


@pytest.mark.parametrize("data,msg", [
    ({"smiles": ""}, "give one or more SMILES"),
    ({"smiles": "", "file": (io.BytesIO(b""), "empty.smi")}, "empty.smi: the file is empty"),
    ({"smiles": "", "file": (io.BytesIO(b"garbage\x00"), "bad.sdf")}, "bad.sdf"),
    ({"smiles": "", "file": (io.BytesIO(b"a,b\n1,2\n"), "nosmiles.csv")}, "no SMILES column"),
    ({"smiles": "", "file": (io.BytesIO(b"CCO\n"), "mols.docx")}, "give a .smi"),
    ({"smiles": "CCO", "model": "/etc"}, "unknown model"),
    ({"smiles": "[Xe]"}, "could not be predicted"),
])
def test_bad_input_is_a_message_not_a_500(client, data, msg):
    r = client.post("/predict", data=data, content_type="multipart/form-data")
    page = r.get_data(as_text=True)
    assert r.status_code in (200, 400) and msg in page


@pytest.mark.parametrize("url,code", [("/molecule?smiles=xx", 400), ("/molecule", 400), ("/runs/0000000000", 404),
                                      ("/download/nothere.csv", 404), ("/nowhere", 404)])
def test_bad_urls(client, url, code):
    assert client.get(url).status_code == code


def test_big_design_table_is_paged_and_sortable(client):
    rid = next(i for i in _runs(client) if "design-a" in client.get(f"/runs/{i}").get_data(as_text=True))
    page = client.get(f"/runs/{rid}").get_data(as_text=True)
    assert "10000 rows" in page and "page 1 of 100" in page and page.count("<tr>") < 120
    assert "Hit rate per round" in page
    r = client.get(f"/runs/{rid}?page=100&sort=gap_pred&desc=1")
    assert r.status_code == 200 and "page 100 of 100" in r.get_data(as_text=True)
    assert client.get(f"/runs/{rid}/file/../../etc/passwd").status_code == 404


def test_molecule_densities_promolecular_hk_dft_and_differences(hk_store, tmp_path, cli):
    """The molecule page offers the HK map's density when one is under --runs, and the DFT density (and the
    differences) when a --store holds the molecule; each comes as a cube file with the right atoms."""
    from urllib.parse import quote

    from elprop.density.store import DensityStore
    res = cli("train", "--model", "hk-unet", "--density-store", hk_store, "--dim", "8", "--layers", "2", "--epochs",
              "1", "--batch-size", "2", "--out", tmp_path / "runs" / "hk", "--no-progress")
    assert res.returncode == 0, res.stderr
    st = DensityStore(hk_store)
    smiles = str(st.root["smiles"][3])
    c = create_app([tmp_path / "runs"], stores=[hk_store]).test_client()
    page = c.get(f"/molecule?smiles={quote(smiles)}").get_data(as_text=True)
    hk = str(tmp_path / "runs" / "hk" / "model")
    for kind in ("promolecular", f"hk:{hk}", f"hk-pro:{hk}", "dft", "dft-pro", "dft-hk"):
        assert f'value="{kind}"' in page, kind
        r = c.get(f"/molecule/density.cube?smiles={quote(smiles)}&kind={quote(kind)}")
        assert r.status_code == 200, (kind, r.get_data(as_text=True)[:200])
        lines = r.get_data(as_text=True).splitlines()
        n_atoms = int(lines[2].split()[0])
        values = np.array(" ".join(lines[6 + n_atoms:]).split(), dtype=float)
        assert len(values) == int(lines[3].split()[0]) ** 3 and np.isfinite(values).all()
        if "-" in kind.split(":")[0]:
            assert values.min() < 0 < values.max(), kind  # a difference density has both signs
        else:
            assert values.min() >= -1e-6 and values.max() > 0, kind
    z, _ = st.atoms(3)
    xyz = c.get(f"/molecule/structure.xyz?smiles={quote(smiles)}&source=store").get_data(as_text=True)
    assert int(xyz.splitlines()[0]) == len(z)
    other = c.get("/molecule?smiles=c1ccccc1O").get_data(as_text=True)
    assert 'value="dft"' not in other and f'value="hk:{hk}"' in other  # no store holds phenol
    assert c.get("/molecule/density.cube?smiles=c1ccccc1O&kind=dft").status_code == 400


def test_progress_of_runs_started_from_the_cli(client):
    page = client.get("/runs").get_data(as_text=True)
    assert "training: member 1 of 2, epoch 2 of at most 30, 10 s" in page
    assert "labelling: 2 molecule(s) done, 1 ok, 1 failed" in page
    assert 'http-equiv="refresh"' in page  # something is running: the list reloads itself
    rid = next(i for i in _runs(client) if "training-in-progress" in client.get(f"/runs/{i}").get_data(as_text=True))
    run_page = client.get(f"/runs/{rid}").get_data(as_text=True)
    assert "epoch 2 of at most 30" in run_page and "reloads every 30 s" in run_page


def test_structure_and_density_routes_and_bad_input(client):
    from elprop.serve.app import threedmol_path
    assert client.get("/molecule/structure.xyz?smiles=CCO").get_data(as_text=True).startswith("9\n")
    cube = client.get("/molecule/promolecular.cube?smiles=CCO")
    assert cube.status_code == 200 and len(cube.get_data(as_text=True).splitlines()) > 1000
    for url in ("/molecule/structure.xyz?smiles=xx", "/molecule/structure.xyz", "/molecule/promolecular.cube?smiles=",
                "/molecule/density.cube?smiles=CCO&kind=nonsense", "/molecule/density.cube?smiles=xx&kind=promolecular"):
        assert client.get(url).status_code == 400, url
    js = client.get("/static/3Dmol-min.js")
    assert js.status_code == (200 if threedmol_path() else 404)

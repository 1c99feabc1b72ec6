import numpy as np
import pytest

from elprop.core.dataset import InputError
from elprop.data.readers import read_any, read_csv, read_xyz
from elprop.data.splits import load_split, random_split, save_split, scaffold_split

EXTXYZ = """3
Properties=species:S:1:pos:R:3 gap=7.5 name=water
O 0.0 0.0 0.1173
H 0.0 0.7572 -0.4692
H 0.0 -0.7572 -0.4692
2
comment
H 0 0 0
H 0 0 0.74
"""


def test_xyz_multiframe_extxyz(tmp_path):
    p = tmp_path / "m.xyz"
    p.write_text(EXTXYZ)
    ds = read_xyz(p)
    assert len(ds) == 2 and list(ds.n_atoms) == [3, 2]
    assert ds.target("gap")[0] == 7.5 and np.isnan(ds.target("gap")[1])
    assert ds.names[0] == "water" and ds.smiles[0] == "O" and ds.smiles[1] == "[H][H]"


@pytest.mark.parametrize("text,match", [("", "empty"), ("3\ncomment\nO 0 0 0\n", "ends early"),
                                        ("x\n", "atom count"), ("1\n\nQq 0 0 0\n", "malformed atom")])
def test_xyz_bad_input(tmp_path, text, match):
    p = tmp_path / "bad.xyz"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        read_xyz(p)


def test_sdf_and_smi(tmp_path):
    from rdkit import Chem
    from rdkit.Chem import AllChem
    p = tmp_path / "m.sdf"
    w = Chem.SDWriter(str(p))
    for s, v in [("CCO", 1.5), ("c1ccccc1", 2.5)]:
        m = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(m, randomSeed=1)
        m.SetProp("logS", str(v))
        w.write(m)
    w.close()
    ds = read_any(p)
    assert list(ds.smiles) == ["CCO", "c1ccccc1"] and list(ds.target("logS")) == [1.5, 2.5]
    assert ds.pos is not None and list(ds.n_atoms) == [9, 12]
    smi = tmp_path / "m.smi"
    smi.write_text("# comment\nCCO ethanol\nc1ccccc1\n")
    ds = read_any(smi)
    assert list(ds.smiles) == ["CCO", "c1ccccc1"] and ds.names[0] == "ethanol"


def test_csv_nan_targets_and_columns(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("smiles,gap,note\nCCO,7.1,a\nCCN,,b\n")
    with pytest.raises(InputError, match=r"row 3: target 'gap' is NaN"):
        read_csv(p, targets=["gap"])
    ds = read_csv(p, targets=["gap"], allow_missing=True)
    assert len(ds) == 2 and np.isnan(ds.target("gap")[1])
    assert read_csv(p, allow_missing=True).target_names == ["gap"]  # non-numeric column not taken as a target
    with pytest.raises(InputError, match="no SMILES column"):
        read_csv(p, smiles_column=None, targets=["gap"]) if False else read_csv(
            _write(tmp_path / "n.csv", "mol,gap\nCCO,1\n"))
    with pytest.raises(InputError, match="unknown file type"):
        read_any(_write(tmp_path / "x.pdbqt", "x"))


def _write(p, text):
    p.write_text(text)
    return p


def test_random_split_seeded_disjoint_complete():
    a, b = random_split(1000, 800, 100, seed=3), random_split(1000, 800, 100, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    allidx = np.concatenate([a["train"], a["val"], a["test"]])
    assert len(allidx) == 1000 and len(np.unique(allidx)) == 1000
    assert not np.array_equal(a["train"], random_split(1000, 800, 100, seed=4)["train"])
    with pytest.raises(InputError):
        random_split(10, 9, 5)


def test_scaffold_split_keeps_scaffolds_apart(qm9_small, tmp_path):
    from elprop.chem.rdkit_utils import murcko_scaffold
    sp = scaffold_split(list(qm9_small.smiles), 0.8, 0.1, seed=0)
    scaf = [murcko_scaffold(s) for s in qm9_small.smiles]
    train_s = {scaf[i] for i in sp["train"]}
    test_s = {scaf[i] for i in sp["test"]}
    assert not train_s & test_s
    assert sum(len(v) for v in sp.values()) == len(qm9_small)
    save_split(sp, tmp_path / "s.json")
    back = load_split(tmp_path / "s.json", len(qm9_small))
    assert all(np.array_equal(back[k], sp[k]) for k in sp)
    with pytest.raises(InputError, match="out of range"):
        load_split(tmp_path / "s.json", 10)

import bz2
import io
import tarfile

import numpy as np
import pytest

from elprop.core.dataset import InputError
from elprop.data.qm9 import QM9_N_MOLECULES_QM9PACK, load_qm9, parse_qm9_xyz
from elprop.core.units import HARTREE_TO_EV, QM9_ATOMREF_HA, TARGETS, label, unit

# dsgdb9nsd_000001.xyz (methane) as distributed, including the *^ exponent quirk on a Mulliken charge
METHANE = """5
gdb 1	157.7118	157.70997	157.70699	0.	13.21	-0.3877	0.1171	0.5048	35.3641	0.044749	-40.47893	-40.476062	-40.475117	-40.498597	6.469	
C	-0.0126981359	 1.0858041578	 0.0080009958	-0.535689
H	 0.002150416	-0.0060313176	 0.0019761204	 0.133921
H	 1.0117308433	 1.4637511618	 0.0002765748	 0.133922
H	-0.540815069	 1.4475266138	-0.8766437152	 0.133923
H	-0.5238136345	 1.4379326443	 0.9063972942	 1.2345*^-6
1341.307	1341.3284	1341.365	1562.6731	1562.7453	3038.3205	3151.6034	3151.6788	3151.7078
C	C	
InChI=1S/CH4/h1H4	InChI=1S/CH4/h1H4
"""
WATER = """3
gdb 3	799.58812	437.90386	282.94545	1.8511	6.31	-0.2928	0.0687	0.3615	19.0002	0.021375	-76.404702	-76.401867	-76.400922	-76.422349	6.002	
O	-0.0343604951	 0.9775395708	 0.0076015923	-0.589706
H	 0.0647664923	 0.0205721989	 0.0015346341	 0.294853
H	 0.8717903737	 1.3007924048	 0.0006931336	 0.294853
1671.4222	3803.6305	3907.698
O	O	
InChI=1S/H2O/h1H2	InChI=1S/H2O/h1H2
"""


def test_units_table():
    assert unit("gap") == "eV" and unit("mu") == "D" and unit("alpha") == "bohr^3"
    assert label("homo") == "homo [eV]"
    assert TARGETS["gap"].factor == pytest.approx(27.211386, rel=1e-7)
    assert TARGETS["U0_atom"].extensive and not TARGETS["gap"].extensive
    with pytest.raises(KeyError, match="unknown target"):
        unit("bandgap")


def test_qm9pack_counts_and_units(qm9):
    assert len(qm9) == QM9_N_MOLECULES_QM9PACK == 130_831
    m = qm9[0]  # methane
    assert m.smiles == "C" and list(m.z) == [6, 1, 1, 1, 1]
    assert m.targets["gap"] == pytest.approx(0.5048 * HARTREE_TO_EV)
    ref = sum(QM9_ATOMREF_HA["U0"][z] for z in m.z)
    assert m.targets["U0_atom"] == pytest.approx((-40.47893 - ref) * HARTREE_TO_EV, abs=1e-6)
    # gap = lumo - homo holds across the whole set (all in eV)
    assert np.allclose(qm9.target("gap"), qm9.target("lumo") - qm9.target("homo"),
                       atol=1.01e-4 * HARTREE_TO_EV)  # QM9 rounds each value to 1e-4 Ha
    assert set(np.unique(qm9.z)) == {1, 6, 7, 8, 9}


def test_qm9pack_binary_cache_roundtrip(qm9, tmp_path):
    from elprop.core.dataset import Dataset
    qm9.subset(np.arange(100)).save(tmp_path / "x.npz")
    back = Dataset.load(tmp_path / "x.npz")
    assert np.array_equal(back.z, qm9.subset(np.arange(100)).z) and back.target_names == qm9.target_names


def test_parse_original_xyz_with_exponent_quirk():
    mol, y = parse_qm9_xyz(METHANE, "dsgdb9nsd_000001.xyz")
    assert list(mol.z) == [6, 1, 1, 1, 1] and mol.pos.shape == (5, 3)
    assert y[7] == pytest.approx(0.5048) and mol.name == "gdb_1"
    with pytest.raises(InputError, match="malformed"):
        parse_qm9_xyz("5\nnot a property line\n", "broken.xyz")


def test_original_distribution_tarball_folder_and_exclusion(tmp_path, qm9):
    folder = tmp_path / "xyz"
    folder.mkdir()
    (folder / "dsgdb9nsd_000001.xyz").write_text(METHANE)
    (folder / "dsgdb9nsd_000003.xyz").write_text(WATER)
    ds_dir = load_qm9(folder, cache=False)
    tar_path = tmp_path / "dsgdb9nsd.xyz.tar.bz2"
    with tarfile.open(tar_path, "w:bz2") as tar:
        for f in sorted(folder.iterdir()):
            tar.add(f, arcname=f.name)
    ds_tar = load_qm9(tar_path, cache=False)
    for ds in (ds_dir, ds_tar):
        assert len(ds) == 2 and list(ds.names) == ["gdb_1", "gdb_3"]
        # the same molecules from the packaged data give the same targets in the same units
        assert np.allclose(ds.y[0], qm9.y[0], rtol=1e-6) and np.allclose(ds.y[1], qm9.y[2], rtol=1e-6)
    excl = tmp_path / "uncharacterized.txt"
    excl.write_text("header line\n   Index    SMILES\n       3   O   O\n")
    assert list(load_qm9(folder, exclude=excl, cache=False).names) == ["gdb_1"]
    with pytest.raises(InputError):
        load_qm9(tmp_path / "missing.tar.bz2")

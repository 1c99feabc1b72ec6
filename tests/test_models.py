import numpy as np
import pytest
import torch

from elprop.chem.features import FEATURE_SETS, feature_dim, featurize_mol
from elprop.chem.graphs import featurize_smiles
from elprop.chem.rdkit_utils import embed_3d, mol_from_smiles
from elprop.data.dataset import InputError
from elprop.models import build_model


def test_feature_sets_nested_and_topology():
    dims = {fs: feature_dim(fs) for fs in FEATURE_SETS}
    assert dims["element"] < dims["ecfp"] < dims["extended"]
    x, bond, dist = featurize_mol(mol_from_smiles("OCC=O"), "ecfp")
    assert x.shape == (4, dims["ecfp"])
    assert dist[0].tolist() == [0, 1, 2, 3]  # O-C-C=O path lengths
    assert bond[0, 1] != 0 and bond[0, 2] == 0 and bond[2, 3] != bond[1, 2]  # double differs from single
    # the element set cannot tell the two carbons apart, ecfp can (different H counts)
    xe, _, _ = featurize_mol(mol_from_smiles("OCC=O"), "element")
    assert np.array_equal(xe[1], xe[2]) and not np.array_equal(x[1], x[2])


def test_featurize_flags_bad_molecules():
    gs = featurize_smiles(["CCO", "not_a_smiles", "C[Se]C", "c1ccccc1"], "extended")
    assert gs.valid.tolist() == [True, False, False, True]
    assert "invalid SMILES" in gs.errors[1] and "Se" in gs.errors[2]
    assert gs.counts[0].tolist()[:4] == [6, 2, 0, 1]  # H6 C2 N0 O1


def _bond_model(heads=0):
    torch.manual_seed(0)
    arch = {"heads": heads} if heads else {}
    return build_model("bondgraph", [False, True], in_dim=feature_dim("extended"), dim=32, layers=2, **arch).eval()


@pytest.mark.parametrize("heads", [0, 4])
def test_bondgraph_padding_and_batch_invariance(heads):
    net = _bond_model(heads)
    gs = featurize_smiles(["CCO", "c1ccccc1CCN"], "extended")
    with torch.no_grad():
        mu_pair, var_pair = net(gs.batch(np.array([0, 1])))
        single = featurize_smiles(["CCO"], "extended")
        mu_one, var_one = net(single.batch(np.array([0])))
    assert torch.allclose(mu_pair[0], mu_one[0], atol=1e-5) and torch.allclose(var_pair[0], var_one[0], atol=1e-5)
    assert (var_pair > 0).all()


@pytest.mark.parametrize("heads", [0, 4])
def test_bondgraph_atom_order_invariance(heads):
    net = _bond_model(heads)
    a = featurize_smiles(["OCC(N)C=O"], "extended")
    b = featurize_smiles(["O=CC(N)CO"], "extended")  # same molecule, other atom order
    with torch.no_grad():
        assert torch.allclose(net(a.batch(np.array([0])))[0], net(b.batch(np.array([0])))[0], atol=1e-5)


def test_schnet_rotation_translation_permutation_invariance():
    torch.manual_seed(0)
    net = build_model("schnet", [False, True], dim=32, layers=2).eval()
    m = embed_3d("CC(=O)NC")
    z = torch.tensor(m.z)[None]
    pos = torch.tensor(m.pos, dtype=torch.float32)[None]
    mask = torch.ones_like(z, dtype=torch.bool)
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    perm = torch.randperm(z.shape[1])
    with torch.no_grad():
        ref = net({"z": z, "pos": pos, "mask": mask})[0]
        rot = net({"z": z, "pos": pos @ q.T + torch.tensor([1.0, -2.0, 3.0]), "mask": mask})[0]
        per = net({"z": z[:, perm], "pos": pos[:, perm], "mask": mask})[0]
        # padding with a ghost atom (z=0, masked) changes nothing
        zp = torch.cat([z, torch.zeros(1, 3, dtype=z.dtype)], 1)
        pp = torch.cat([pos, torch.zeros(1, 3, 3)], 1)
        pad = net({"z": zp, "pos": pp, "mask": zp > 0})[0]
    for other in (rot, per, pad):
        assert torch.allclose(ref, other, atol=1e-4)


def test_unknown_model_is_input_error():
    from elprop.train.estimator import PropertyModel
    with pytest.raises(InputError, match="unknown model"):
        PropertyModel("transformer")
    with pytest.raises(InputError, match="unknown feature set"):
        PropertyModel(features="fancy")

"""Volumetric models: shapes and memory estimate, augmentation correctness, electron-count conservation, and a
short cnn3d training run through `elprop train`."""
import numpy as np
import pytest
import torch

from elprop.represent.transforms import augment_batch, octahedral_batch, rotate_grids, torch_rotations
from elprop.density.grid import molecule_grid, random_rotation
from elprop.density.promolecular import promolecular_density
from elprop.models.cnn3d import PropertyCNN, UNet3d, memory_estimate, parse_bytes


def test_property_cnn_shapes_and_memory_estimate():
    net = PropertyCNN(2, 3, widths=(8, 16, 32))
    mu, var = net({"x": torch.rand(2, 2, 24, 24, 24)})
    assert mu.shape == (2, 3) and var.shape == (2, 3) and (var > 0).all()
    small = memory_estimate(net, (2, 24, 24, 24))
    big = memory_estimate(net, (2, 48, 48, 48), device_memory=parse_bytes("1GiB"))
    assert small["parameters"] == sum(p.numel() for p in net.parameters())
    assert 7.5 < big["activation_bytes_per_sample"] / small["activation_bytes_per_sample"] < 8.5  # scales with n³
    assert big["max_batch"] == int((0.9 * 2 ** 30 - big["parameter_bytes"]) // big["activation_bytes_per_sample"])
    assert parse_bytes("80GiB") == 80 * 2 ** 30 and parse_bytes("24 GB") == 24e9
    with pytest.raises(ValueError):
        parse_bytes("lots")


def test_rotating_a_grid_equals_the_grid_of_the_rotated_molecule(qm9):
    m = qm9[5000]
    pos = m.pos.astype(float)
    g = molecule_grid(pos, 40, 14.0)
    x = torch.from_numpy(promolecular_density(m.z, pos, g, blur=1.0))[None, None]
    rng = np.random.default_rng(0)
    for _ in range(3):
        rot = random_rotation(rng)
        shift = rng.uniform(-0.5, 0.5, 3)
        moved = pos.mean(0) + (pos - pos.mean(0)) @ rot.T + shift * g.spacing
        ref = promolecular_density(m.z, moved, g, blur=1.0)
        out = rotate_grids(x, torch.tensor(rot)[None].float(), torch.tensor(shift)[None].float())[0, 0].numpy()
        wrong = rotate_grids(x, torch.tensor(rot.T)[None].float())[0, 0].numpy()
        err = np.abs(out - ref).sum() / ref.sum()
        assert err < 0.08, err  # trilinear interpolation error on 0.35 Å voxels
        assert np.abs(wrong - ref).sum() / ref.sum() > 5 * err
        assert abs(out.sum() - ref.sum()) / ref.sum() < 0.01


def test_octahedral_augmentation_is_the_exact_grid_of_the_turned_or_mirrored_molecule(qm9):
    m = qm9[5000]
    pos = m.pos.astype(float)
    g = molecule_grid(pos, 32, 14.0)
    x = torch.from_numpy(promolecular_density(m.z, pos, g, blur=1.0)).double()[None, None].repeat(6, 1, 1, 1, 1)
    gen = torch.Generator().manual_seed(3)
    out = octahedral_batch(x, gen)
    refs = {}  # the grid of the molecule under each signed permutation P (atom offsets d -> P d)
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        for signs in np.ndindex(2, 2, 2):
            p = np.zeros((3, 3))
            for a in range(3):
                p[a, perm[a]] = -1.0 if signs[a] else 1.0
            moved = pos.mean(0) + (pos - pos.mean(0)) @ p.T
            refs[perm, signs] = promolecular_density(m.z, moved, g, blur=1.0)
    seen = set()
    for b in range(6):
        errs = {k: float(np.abs(out[b, 0].numpy() - r).sum() / r.sum()) for k, r in refs.items()}
        key = min(errs, key=errs.get)
        assert errs[key] < 1e-6, errs[key]  # exact: no resampling, unlike a general rotation (test above: < 8 %)
        seen.add(key)
    assert len(seen) > 1  # different samples get different symmetries
    both = octahedral_batch(torch.cat([x, 2 * x], 1), torch.Generator().manual_seed(4))
    assert torch.equal(both[:, 1], 2 * both[:, 0])  # channels of one sample move together (input with target)


def test_torch_rotations_are_proper_and_augmentation_keeps_the_charge():
    r = torch_rotations(500, torch.Generator().manual_seed(0))
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(500, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(500), atol=1e-5)
    assert (r[:, :, 2].mean(0).abs() < 0.1).all()
    x = torch.zeros(4, 1, 24, 24, 24)
    x[:, :, 8:16, 8:16, 8:16] = 1.0
    y = augment_batch(x, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(y.sum(dim=(1, 2, 3, 4)), x.sum(dim=(1, 2, 3, 4)), rtol=0.02)
    assert not torch.allclose(y[0], y[1])


def test_unet_conserves_the_electron_count_by_construction():
    net = UNet3d(2, widths=(8, 16, 32))
    x = torch.rand(3, 2, 24, 24, 24)
    d = net({"x": x})
    assert d.shape == (3, 1, 24, 24, 24)
    assert torch.allclose(d.sum(dim=(1, 2, 3, 4)), torch.zeros(3), atol=1e-3)
    free = UNet3d(2, widths=(8, 16, 32), conserve=False)
    free.load_state_dict(net.state_dict())
    assert free({"x": x}).sum(dim=(1, 2, 3, 4)).abs().max() > 1e-2


def test_hk_map_conserves_electrons_where_the_density_is_and_crops_hold_the_molecule():
    from elprop.models.hk import HKMap, random_crop
    torch.manual_seed(0)
    net = HKMap(1, widths=(8, 16))
    torch.nn.init.normal_(net.unet.out.weight, std=0.5)  # a non-trivial deformation (it starts at zero)
    g = molecule_grid(np.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]]), 24, 12.0)
    pro = torch.from_numpy(promolecular_density(np.array([6, 8]), np.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]]), g,
                                                blur=1.0))[None, None]
    x = pro.clone()
    rho = net({"x": x, "pro": pro})
    assert (rho - pro).abs().sum() > 1e-2 * pro.sum()
    assert torch.allclose(rho.sum(), pro.sum(), rtol=1e-5)  # ∫ρ_pred = ∫ρ_pro = N
    far = (pro < 1e-6 * pro.max())  # the correction goes where the electrons are, not into the vacuum
    free = HKMap(1, widths=(8, 16), conserve=False)
    free.load_state_dict(net.state_dict())
    corr = (rho - free({"x": x, "pro": pro})).detach().abs()
    assert corr.max() > 1e-3 and corr[far].max() <= 1e-5 * corr.max()
    batch = {"x": x.repeat(2, 1, 1, 1, 1), "pro": pro.repeat(2, 1, 1, 1, 1), "y": pro.repeat(2, 1, 1, 1, 1)}
    for seed in range(5):
        c = random_crop(batch, 16, torch.Generator().manual_seed(seed))
        assert c["x"].shape == (2, 1, 16, 16, 16) and torch.equal(c["x"], c["y"])
        assert c["pro"].sum() > 0.9 * pro.sum()  # the crop holds (nearly all of) the molecule
    net.crop = 16
    net.train()
    loss, metric = net.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and net.unet.stem.weight.grad is not None


def test_devices_and_mixed_precision_training(tmp_path):
    from elprop.core.dataset import InputError
    from elprop.train.device import autocast, resolve_device, to_device
    from elprop.train.loop import train_network
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(InputError):
            resolve_device("cuda")
    with pytest.raises(InputError):
        resolve_device("toaster")
    b = to_device({"x": torch.ones(2), "n": 3, "t": (torch.zeros(1),)}, "cpu")
    assert b["n"] == 3 and b["t"][0].shape == (1,)
    with autocast("cpu", True):
        assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype == torch.bfloat16
    with autocast("cpu", False):
        assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype == torch.float32

    class Grids:  # a toy volumetric data set: the target is the total charge of a random blob
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x = torch.rand(48, 1, 12, 12, 12, generator=g) ** 4
            self.y = self.x.sum(dim=(1, 2, 3, 4), keepdim=False)[:, None]
            self.y = ((self.y - self.y.mean()) / self.y.std()).numpy()

        def batch(self, idx):
            return {"x": self.x[torch.as_tensor(idx)]}
    data = Grids()
    torch.manual_seed(0)
    net = PropertyCNN(1, 1, widths=(8, 16), augment=False)
    _, hist = train_network(net, data, data.y, np.arange(40), np.arange(40, 48), tmp_path / "amp", epochs=8,
                            batch_size=8, lr=3e-3, progress=False, log=lambda *_: None, device="cpu", amp=True)
    assert float(hist[-1]["train_l1_scaled"]) < 0.8 * float(hist[0]["train_l1_scaled"])


def test_test_time_augmentation_is_reproducible_and_adds_rotation_spread():
    from elprop.train.estimator import _Rotated
    from elprop.train.loop import predict_scaled

    class Rep:
        x = torch.rand(6, 1, 16, 16, 16, generator=torch.Generator().manual_seed(3))

        def batch(self, idx):
            return {"x": self.x[torch.as_tensor(idx)]}
    torch.manual_seed(0)
    net = PropertyCNN(1, 2, widths=(8, 16))
    idx = np.arange(6)
    a, _ = predict_scaled(_Rotated(net, seed=1), Rep(), idx)
    b, _ = predict_scaled(_Rotated(net, seed=1), Rep(), idx)
    c, _ = predict_scaled(_Rotated(net, seed=2), Rep(), idx)
    plain, _ = predict_scaled(net, Rep(), idx)
    assert np.allclose(a, b) and not np.allclose(a, c) and not np.allclose(a, plain)


def test_cnn3d_training_lowers_the_loss(tmp_path, cli):
    store = tmp_path / "v.zarr"
    res = cli("density", "generate", "--kind", "promolecular", "--subset", "random:96:0", "--shape", "16",
              "--box", "16", "--out", store, "--workers", "0", "--no-progress")
    assert res.returncode == 0, res.stderr
    res = cli("train", "--model", "cnn3d", "--density-store", store, "--channels", "promolecular", "--targets",
              "U0_atom", "--dim", "16", "--layers", "2", "--epochs", "6", "--batch-size", "8", "--lr", "3e-3",
              "--runs-dir", tmp_path, "--name", "c", "--no-progress", "--device-memory", "8GiB")
    assert res.returncode == 0, res.stderr
    assert "largest batch in 8GiB" in res.stdout and "activations" in res.stdout
    import csv
    hist = list(csv.DictReader(open(tmp_path / "c" / "checkpoints" / "member_0" / "history.csv")))
    train = [float(h["train_l1_scaled"]) for h in hist]
    val = [float(h["val_l1_scaled"]) for h in hist]
    assert train[-1] < 0.95 * train[0] and min(val[1:]) < val[0]
    res = cli("train", "--model", "cnn3d", "--targets", "gap", "--runs-dir", tmp_path, "--name", "d")
    assert res.returncode == 2 and "--density-store" in res.stderr
    res = cli("train", "--model", "bondgraph", "--pool", "2", "--runs-dir", tmp_path, "--name", "e")
    assert res.returncode == 2 and "--pool" in res.stderr
    res = cli("train", "--model", "bondgraph", "--augment", "octahedral", "--runs-dir", tmp_path, "--name", "e")
    assert res.returncode == 2 and "--augment" in res.stderr
    res = cli("train", "--model", "cnn3d", "--density-store", store, "--no-augment", "--augment", "so3",
              "--runs-dir", tmp_path, "--name", "e")
    assert res.returncode == 2 and "contradicts" in res.stderr and "Traceback" not in res.stderr
    # pooled input, test-time augmentation: saved with the model, used again on load
    res = cli("train", "--model", "cnn3d", "--density-store", store, "--channels", "promolecular", "--targets",
              "U0_atom", "--dim", "16", "--layers", "2", "--epochs", "1", "--batch-size", "8", "--pool", "2",
              "--tta", "3", "--channels-last", "--runs-dir", tmp_path, "--name", "p", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "at 1x16³ (pooled to 8³)" in res.stdout
    from elprop.train.estimator import PropertyModel
    m = PropertyModel.load(tmp_path / "p" / "model")
    assert m.tta == 3 and m.nets[0].pool == 2 and m.nets[0].channels_last
    assert m.nets[0].stem.weight.is_contiguous(memory_format=torch.channels_last_3d)
    res = cli("train", "--model", "bondgraph", "--channels-last", "--runs-dir", tmp_path, "--name", "e")
    assert res.returncode == 2 and "--channels-last" in res.stderr


def test_channels_last_is_the_same_function_in_another_memory_layout():
    """`--channels-last` changes how the grids and weights lie in memory, not what the network computes: the
    same weights give the same outputs and gradients, and a state dict moves between the two layouts."""
    from elprop.models import build_model
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1)) ** 4
    for kind, arch in (("cnn3d", {"pool": 2}), ("hk-unet", {})):
        a = build_model(kind, [False] * 2, in_dim=1, dim=16, layers=2, **arch)
        if kind == "hk-unet":  # its output layer starts at zero; give it weights so the outputs differ from ρ_pro
            torch.nn.init.normal_(a.unet.out.weight, std=0.1)
        b = build_model(kind, [False] * 2, in_dim=1, dim=16, layers=2, channels_last=True, **arch)
        b.load_state_dict(a.state_dict())
        assert b.stem.weight.is_contiguous(memory_format=torch.channels_last_3d)
        batch = {"x": x, "pro": x.clone(), "y": 1.01 * x}
        oa, ob = a(batch), b(batch)
        oa, ob = (oa[0], ob[0]) if isinstance(oa, tuple) else (oa, ob)
        assert torch.allclose(oa, ob, atol=1e-5, rtol=1e-4)
        if kind == "hk-unet":
            assert (oa - batch["pro"]).abs().max() > 1e-4
        oa.square().sum().backward()
        ob.square().sum().backward()
        assert torch.allclose(a.stem.weight.grad, b.stem.weight.grad, atol=1e-4, rtol=1e-3)
        a.load_state_dict(b.state_dict())


def test_hk_map_trains_reports_baseline_and_writes_cubes(hk_store, tmp_path, cli):
    from elprop.density.cube import read_cube
    res = cli("train", "--model", "hk-unet", "--density-store", hk_store, "--dim", "16", "--layers", "2",
              "--epochs", "5", "--batch-size", "2", "--lr", "3e-3", "--runs-dir", tmp_path, "--name", "h",
              "--no-progress")
    assert res.returncode == 0, res.stderr
    import csv
    rows = list(csv.DictReader(open(tmp_path / "h" / "metrics.csv")))
    metrics = {(r["split"], r["metric"]) for r in rows}
    assert ("test", "NMAE") in metrics and ("test", "dipole error") in metrics
    for r in rows:  # the promolecular baseline is reported beside every figure
        assert float(r["promolecular"]) >= 0 and r["unit"] in ("%", "e", "D")
        if r["metric"] == "|electron count error|":  # conserved by construction: same as the baseline's
            assert abs(float(r["model"]) - float(r["promolecular"])) < 2e-3
    hist = list(csv.DictReader(open(tmp_path / "h" / "checkpoints" / "member_0" / "history.csv")))
    assert float(hist[-1]["train_l1_scaled"]) < float(hist[0]["train_l1_scaled"])
    assert list((tmp_path / "h" / "plots").glob("slice_record*.png"))
    res = cli("predict-density", "--model", tmp_path / "h" / "model", "CCO", "-o", tmp_path / "e.cube")
    assert res.returncode == 0, res.stderr
    vals, origin, axes, z, pos = read_cube(tmp_path / "e.cube")
    assert vals.shape == (16, 16, 16) and sorted(z) == [1] * 6 + [6, 6, 8]
    n = vals.sum() * abs(np.linalg.det(axes / 0.52917721092))
    assert abs(n - 26) < 0.1
    res = cli("predict-density", "--model", tmp_path / "h" / "model", "--density-store", hk_store, "--index", "2",
              "-o", tmp_path / "r.cube")
    assert res.returncode == 0 and (tmp_path / "r.dft.cube").exists()
    res = cli("predict-density", "--model", tmp_path / "h" / "model", "not_a_smiles((", "-o", tmp_path / "x.cube")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_properties_from_hk_predicted_densities(hk_store, tmp_path, cli):
    """The chain: an HK map's predictions written into the store as kind 'hk', then a cnn3d reads them."""
    import shutil
    store = tmp_path / "chain.zarr"
    shutil.copytree(hk_store, store)
    res = cli("train", "--model", "hk-unet", "--density-store", store, "--dim", "8", "--layers", "2", "--epochs",
              "1", "--batch-size", "2", "--crop", "12", "--runs-dir", tmp_path, "--name", "h", "--no-progress")
    assert res.returncode == 0, res.stderr
    from elprop.train.density_run import DensityModel
    assert DensityModel.load(tmp_path / "h" / "model").net.augment == "octahedral"  # the hk-unet default
    res = cli("train", "--model", "hk-unet", "--density-store", store, "--dim", "8", "--layers", "2", "--epochs",
              "1", "--batch-size", "2", "--augment", "so3", "--dipole-weight", "0.5", "--runs-dir", tmp_path,
              "--name", "h3", "--no-progress")
    assert res.returncode == 0, res.stderr
    h3 = DensityModel.load(tmp_path / "h3" / "model")
    assert h3.net.augment == "so3" and h3.net.dipole_weight == 0.5 and h3.config["dipole_weight"] == 0.5
    res = cli("train", "--model", "hk-unet", "--density-store", store, "--dipole-weight", "-1", "--runs-dir", tmp_path,
              "--name", "bad-dw")
    assert res.returncode == 2 and "--dipole-weight" in res.stderr
    res = cli("train", "--model", "hk-unet", "--density-store", store, "--dim", "8", "--layers", "3", "--crop",
              "10", "--runs-dir", tmp_path, "--name", "bad")
    assert res.returncode == 2 and "multiple of 4" in res.stderr
    res = cli("predict-density", "--model", tmp_path / "h" / "model", "--density-store", store, "--write-kind", "hk")
    assert res.returncode == 0, res.stderr
    from elprop.density.store import DensityStore
    st = DensityStore(store)
    assert "hk" in st.kinds and (st.status("hk") == 1).sum() == 10
    assert "hk-unet prediction" in st.kind_attrs("hk")["level_of_theory"]
    n = st.read(0, ["hk"])[0].sum() * st.grid(0).voxel_volume
    assert abs(n - st.read(0, ["promolecular"])[0].sum() * st.grid(0).voxel_volume) < 1e-3
    res = cli("predict-density", "--model", tmp_path / "h" / "model", "--density-store", store, "--write-kind", "hk")
    assert res.returncode == 0 and "wrote 0 predicted" in res.stdout  # kept on rerun
    res = cli("train", "--model", "cnn3d", "--density-store", store, "--channels", "hk", "--targets", "gap",
              "--dim", "8", "--layers", "2", "--epochs", "1", "--batch-size", "4", "--runs-dir", tmp_path, "--name",
              "c", "--no-progress")
    assert res.returncode == 0, res.stderr


def test_hk_dipole_term_measures_the_charge_centroid_shift():
    """The first-moment error is 0 for equal grids, the shift in voxels for a displaced blob, and pulls training
    towards the right centroid."""
    import torch

    from elprop.models.hk import HKMap, moment_error_per_sample
    n = 16
    r = torch.arange(n, dtype=torch.float32)
    def blob(cx):
        x, y, z = torch.meshgrid(r, r, r, indexing="ij")
        return torch.exp(-((x - cx) ** 2 + (y - 7.5) ** 2 + (z - 7.5) ** 2) / 4.0)[None, None]
    a, b = blob(7.5), blob(9.5)
    assert float(moment_error_per_sample(a, a)) == 0.0
    assert float(moment_error_per_sample(b, a)) == pytest.approx(2.0, rel=1e-3)
    net = HKMap(1, (4, 8), dipole_weight=1.0)
    batch = {"x": a, "pro": a, "y": b * a.sum() / b.sum()}
    loss, nmae = net.loss(batch)
    assert loss.item() == pytest.approx(nmae.item() + 2.0, rel=1e-3)  # the untrained map returns ρ_pro
    with pytest.raises(ValueError):
        HKMap(1, (4, 8), dipole_weight=-1)

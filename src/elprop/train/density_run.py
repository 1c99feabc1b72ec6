"""Learning the density itself (3D -> 3D): ``DensityModel`` (fit / predict / save / load) and its training run.

The data are the records of a density store that have the input channels, the promolecular density and the DFT
density. Metrics on held-out molecules, always beside the promolecular baseline (ρ_pred := ρ_pro):
- NMAE = ∫|ρ_pred − ρ_DFT| / ∫ρ_DFT, in %;
- the electron count ∫ρ_pred − N;
- the dipole moment from the grid density and the nuclei, against the same from the DFT grid, in D.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from elprop.core.cache import atomic_write, write_csv
from elprop.train.device import machine_description
from elprop.core.dataset import InputError
from elprop.represent.transforms import augment_mode
from elprop.density.store import DensityStore, open_store
from elprop.represent.hk import HKSet
from elprop.models.hk import DEFAULT_AUGMENT

EA_TO_DEBYE = 1 / 0.20819434  # e·Å -> D


class DensityModel:
    def __init__(self, channels=("promolecular",), widths=(16, 32, 64), seed: int = 0, conserve: bool = True,
                 crop: int = 0, augment: str | None = None, dipole_weight: float = 0.0):
        bad = [c for c in channels if c not in ("promolecular", "potential")]
        if bad:
            raise InputError(f"the HK map's inputs are promolecular and/or potential grids, not {', '.join(bad)}")
        self.config = {"model": "hk-unet", "channels": list(channels), "widths": [int(w) for w in widths],
                       "seed": seed, "conserve": conserve, "crop": int(crop),
                       "augment": augment_mode(augment or DEFAULT_AUGMENT), "dipole_weight": float(dipole_weight)}
        self.net = None

    def _new_net(self):
        from elprop.models.hk import HKMap
        return HKMap(len(self.config["channels"]), tuple(self.config["widths"]), conserve=self.config["conserve"],
                     crop=self.config.get("crop", 0), augment=self.config.get("augment", "so3"),
                     dipole_weight=self.config.get("dipole_weight", 0.0))

    def fit(self, store, split, out_dir, *, epochs=100, time_budget=None, batch_size=4, lr=1e-3, weight_decay=1e-5,
            ema=0.0, progress=True, log=print, device="cpu", amp=False, checkpointing=False, trainer=None):
        from elprop.train.loop import train_network
        st = open_store(store)
        self.config["grid"] = st.grid_params
        self.config["kinds"] = {k: st.kind_attrs(k)["params"] for k in st.kinds if k != "dft"}
        self.config["dft_level"] = st.kind_attrs("dft").get("level_of_theory", "")
        torch.manual_seed(self.config["seed"])
        self.net = self._new_net()
        self.net.checkpointing = checkpointing
        rep = HKSet(st, self.config["channels"])
        train_network(self.net, rep, None, np.asarray(split["train"]), np.asarray(split.get("val", [])),
                      Path(out_dir), epochs=epochs, time_budget=time_budget, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, ema=ema, seed=self.config["seed"], progress=progress, log=log,
                      device=device, amp=amp, **(trainer or {}))
        self.rank = getattr(self.net, "trainer_rank", 0)
        self.net.checkpointing = False
        return self

    def predict_store(self, store, idx, batch_size: int = 8) -> np.ndarray:
        """Predicted densities [M, n, n, n] (e/Å³) for records ``idx`` of a store."""
        from elprop.train.device import net_device, to_device
        rep = HKSet(open_store(store), self.config["channels"])
        self.net.eval()
        dev = net_device(self.net)
        out = []
        with torch.no_grad():
            for s in range(0, len(idx), batch_size):
                out.append(self.net(to_device(rep.batch(idx[s:s + batch_size]), dev))[:, 0].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,) + (int(self.config["grid"]["shape"]),) * 3)

    def input_grids(self, z, pos):
        """(grid, inputs [C, n, n, n], promolecular [n, n, n]) for a molecule, as the store would hold them."""
        from elprop.density.generate import compute_batch
        from elprop.density.grid import molecule_grid
        g = self.config["grid"]
        grid = molecule_grid(pos, int(g["shape"]), float(g["box_A"]))
        fields = {}
        for kind in set(self.config["channels"]) | {"promolecular"}:
            res = compute_batch(kind, self.config["kinds"][kind], [(0, z, pos, grid.center, grid.n, grid.spacing)])
            if not res[0][1]["ok"]:
                raise InputError(res[0][1].get("error", f"cannot compute the {kind} grid"))
            fields[kind] = res[0][1]["density"]
        return grid, np.stack([fields[c] for c in self.config["channels"]]), fields["promolecular"]

    def predict_molecule(self, z, pos):
        grid, x, pro = self.input_grids(z, pos)
        from elprop.train.device import net_device
        self.net.eval()
        dev = net_device(self.net)
        with torch.no_grad():
            rho = self.net({"x": torch.from_numpy(x)[None].to(dev), "pro": torch.from_numpy(pro)[None, None].to(dev)})
        return grid, rho[0, 0].cpu().numpy()

    # --- the estimator protocol: what `elprop predict` reports for a molecule -------------------------------
    representation = "density-map"

    @property
    def specs(self):
        """The quantities ``predict`` derives from a predicted density: its electron count and dipole moment."""
        from elprop.core.units import TargetSpec
        return [TargetSpec("electrons", "e", extensive=True), TargetSpec("dipole", "D")]

    def predict(self, data):
        """Predicted densities of molecules (a Dataset with 3D structures, or SMILES embedded with ETKDG + MMFF),
        reduced to ``specs``: the electron count ∫ρ and the dipole |μ| of nuclei plus ρ. No σ (NaN)."""
        from elprop.represent.points import structures
        from elprop.train.estimator import Prediction
        mols = structures(data)
        mean = np.full((len(mols), 2), np.nan)
        errors = {}
        for i, m in enumerate(mols):
            if isinstance(m, str):
                errors[i] = m
                continue
            try:
                grid, rho = self.predict_molecule(m.z, m.pos)
            except InputError as e:
                errors[i] = str(e)
                continue
            mean[i] = [float(rho.sum() * grid.voxel_volume), float(np.linalg.norm(grid_dipole(rho, grid, m.z, m.pos)))]
        return Prediction(mean, np.full_like(mean, np.nan), [""] * len(mols), errors)

    def save(self, path, card: str | None = None) -> Path:
        from elprop.train.saved import write_model_dir
        return write_model_dir(path, self.config, [self.net.state_dict()], card)

    @classmethod
    def load(cls, path) -> "DensityModel":
        from elprop.train.saved import read_config, read_members
        cfg = read_config(path)
        if cfg.get("model") != "hk-unet":
            raise InputError(f"{path}: a {cfg.get('model')!r} model, not a density model (hk-unet)")
        m = cls(cfg["channels"], cfg["widths"], cfg.get("seed", 0), cfg.get("conserve", True), cfg.get("crop", 0),
                cfg.get("augment", "so3"),  # models saved before the option trained with so3
                cfg.get("dipole_weight", 0.0))
        m.config.update({k: cfg[k] for k in ("grid", "kinds", "dft_level") if k in cfg})
        m.net = m._new_net()
        m.net.load_state_dict(read_members(path)[0])
        m.net.eval()
        return m


def grid_dipole(rho: np.ndarray, grid, z, pos) -> np.ndarray:
    """Dipole (D) of nuclei plus the electron density on a grid, about the grid centre."""
    pts = grid.points() - grid.center
    mu_e = -(rho.reshape(-1, 1).astype(np.float64) * pts).sum(0) * grid.voxel_volume
    return (mu_e + (np.asarray(z, float)[:, None] * (np.asarray(pos) - grid.center)).sum(0)) * EA_TO_DEBYE


def density_metrics(st: DensityStore, idx, pred: np.ndarray) -> list[dict]:
    """Per-molecule metrics of predicted densities and of the promolecular baseline against DFT."""
    rows = []
    for k, i in enumerate(idx):
        i = int(i)
        g = st.grid(i)
        z, pos = st.atoms(i)
        dft = st.read(i, ["dft"])[0].astype(np.float64)
        pro = st.read(i, ["promolecular"])[0].astype(np.float64)
        mu_dft = grid_dipole(dft, g, z, pos)
        row = {"record": i}
        for name, rho in (("model", pred[k].astype(np.float64)), ("promolecular", pro)):
            row[f"nmae_pct_{name}"] = 100 * np.abs(rho - dft).sum() / dft.sum()
            row[f"electrons_err_{name}"] = rho.sum() * g.voxel_volume - int(np.sum(z))
            row[f"dipole_err_D_{name}"] = float(np.linalg.norm(grid_dipole(rho, g, z, pos) - mu_dft))
        rows.append(row)
    return rows


def density_metric_rows(per_molecule: list[dict], split: str) -> list[dict]:
    """Per-molecule density metrics -> one row per metric (model, promolecular baseline, their ratio)."""
    rows = []
    m = per_molecule
    for key, unit in (("nmae_pct", "%"), ("electrons_err", "e"), ("dipole_err_D", "D")):
        a = np.array([r[f"{key}_model"] for r in m])
        b = np.array([r[f"{key}_promolecular"] for r in m])
        red = np.mean if key == "nmae_pct" else (lambda v: np.mean(np.abs(v)))
        rows.append({"split": split, "metric": {"nmae_pct": "NMAE", "electrons_err": "|electron count error|",
                                                "dipole_err_D": "dipole error"}[key], "unit": unit,
                     "n": len(m), "model": round(float(red(a)), 5), "promolecular": round(float(red(b)), 5),
                     "ratio": round(float(red(a) / red(b)), 4) if red(b) else float("nan")})
    return rows


def slice_figure(path, st: DensityStore, i: int, pred: np.ndarray, title: str = ""):
    """Central slice of the predicted, DFT and difference densities (and promolecular − DFT), side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    dft = st.read(i, ["dft"])[0]
    pro = st.read(i, ["promolecular"])[0]
    n = dft.shape[0]
    c = int(np.argmax(dft.sum(axis=(1, 2))))  # the x-plane that holds the most charge
    panels = [("predicted ρ", pred[c]), ("DFT ρ", dft[c]), ("predicted − DFT", pred[c] - dft[c]),
              ("promolecular − DFT", pro[c] - dft[c])]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    vmax = float(np.percentile(dft[c], 99.5))
    dmax = float(np.abs(pro[c] - dft[c]).max()) or 1.0
    extent = [0, n * st.grid(i).spacing] * 2
    for ax, (name, img) in zip(axes, panels):
        diff = "−" in name
        im = ax.imshow(img.T, origin="lower", extent=extent, cmap="RdBu_r" if diff else "viridis",
                       vmin=-dmax if diff else 0, vmax=dmax if diff else vmax)
        ax.set_title(name + " (e/Å³)")
        ax.set_xlabel("y (Å)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    # zoom on the molecule: the region where the DFT density exceeds 1e-3 of its peak, plus 1.5 Å
    h = st.grid(i).spacing
    mask = dft[c] > 1e-3 * dft[c].max()
    if mask.any():
        jj, kk = np.nonzero(mask)
        lo = max(0.0, min(jj.min(), kk.min()) * h - 1.5)
        hi = min(n * h, (max(jj.max(), kk.max()) + 1) * h + 1.5)
        for ax in axes:
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
    axes[0].set_ylabel("z (Å)")
    fig.suptitle((title or f"record {i}") + f"; plane x index {c}")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def hk_train_run(store, run_dir, *, channels=("promolecular",), widths=(16, 32, 64), split="random",
                 split_file=None, n_train=0.8, n_val=0.1, seed=0, epochs=100, time_budget=None, batch_size=4,
                 lr=1e-3, weight_decay=1e-5, ema=0.0, crop=0, augment=None, device="cpu", amp=False,
                 checkpointing=False, progress=True, log=print, trainer=None, dipole_weight=0.0):
    """Train the HK map on a store and write ``run_dir`` like a property run; returns (model, metric rows).
    ``augment``: so3, octahedral or none (None: the HK map's default, octahedral)."""
    from elprop.data.splits import load_split, make_split, save_split
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    augment = augment_mode(augment or DEFAULT_AUGMENT)
    st = open_store(store)
    rep = HKSet(st, channels)
    ok = np.nonzero(rep.valid)[0]
    if len(ok) < 3:
        raise InputError(f"{store}: only {len(ok)} records have promolecular and DFT grids; need at least 3")
    split_path = run_dir / "split.json"
    # split files hold record indices of the store, for the HK map as for every family; each must have the grids
    if split_path.exists() or split == "file":
        src = split_path if split_path.exists() else split_file
        sp = load_split(src, len(st))
        for k, v in sp.items():
            bad = np.setdiff1d(v, ok)
            if len(bad):
                raise InputError(f"{src}: '{k}' holds record {int(bad[0])}, which lacks finished input, "
                                 f"promolecular or DFT grids in {st.path}")
        if not split_path.exists():
            save_split(sp, split_path)
    else:
        smiles = np.asarray(st.root["smiles"][:], dtype=object)[ok]
        local = make_split(split, len(ok), smiles, n_train, n_val, seed)
        sp = {k: ok[v] for k, v in local.items()}  # record indices of the store
        save_split(sp, split_path)
    config = dict(model="hk-unet", channels=list(channels), widths=list(widths), split=split, seed=seed,
                  n_train=len(sp["train"]), n_val=len(sp.get("val", [])), n_test=len(sp.get("test", [])),
                  epochs=epochs, time_budget_s=time_budget, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                  ema=ema, crop=crop, augment=augment, dipole_weight=dipole_weight, device=str(device), amp=amp,
                  gradient_checkpointing=checkpointing,
                  data=str(st.path), machine=machine_description(device))
    atomic_write(run_dir / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(config, indent=1)))
    model = DensityModel(channels, widths, seed, crop=crop, augment=augment, dipole_weight=dipole_weight)
    t0 = time.time()
    model.fit(st, sp, run_dir / "checkpoints" / "member_0", epochs=epochs, time_budget=time_budget,
              batch_size=batch_size, lr=lr, weight_decay=weight_decay, ema=ema, progress=progress, log=log,
              device=device, amp=amp, checkpointing=checkpointing, trainer=trainer)
    if model.rank != 0:  # DDP: process 0 evaluates and saves
        return model, []
    train_s = time.time() - t0
    rows, per_mol = [], []
    for part in ("val", "test"):
        idx = np.asarray(sp.get(part, []), dtype=np.int64)
        if not len(idx):
            continue
        pred = model.predict_store(st, idx)
        m = density_metrics(st, idx, pred)
        per_mol += [dict(r, split=part) for r in m]
        rows += density_metric_rows(m, part)
        if part == "test":
            slice_figure(run_dir / "plots" / f"slice_record{int(idx[0])}.png", st, int(idx[0]), pred[0],
                         f"record {int(idx[0])} ({st.root['smiles'][int(idx[0])]}), test")
    write_csv(run_dir / "metrics.csv", rows)
    write_csv(run_dir / "per_molecule.csv", per_mol)
    card = "\n".join([f"# hk-unet ({', '.join(channels)} -> DFT density)", "",
                      f"- data: {st.path} ({config['n_train']} train / {config['n_val']} val / {config['n_test']} test "
                      f"records), DFT: {model.config.get('dft_level', '')}",
                      f"- U-Net widths {list(widths)}, electron count conserved by construction, "
                      f"augmentation {augment}, training crops {crop or 'off'}",
                      f"- training: {train_s:.0f} s, batch {batch_size}, lr {lr}, seed {seed}", "",
                      "| split | metric | unit | model | promolecular | ratio |", "|---|---|---|---|---|---|"]
                     + [f"| {r['split']} | {r['metric']} | {r['unit']} | {r['model']} | {r['promolecular']} | "
                        f"{r['ratio']} |" for r in rows]) + "\n"
    model.save(run_dir / "model", card=card)
    return model, rows

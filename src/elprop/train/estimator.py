"""``PropertyModel``: the estimator behind ``elprop train/evaluate/predict`` (fit, predict, save, load).

A saved model is a directory: ``config.json`` (architecture, targets with units, feature set, target scaler,
training-domain facts), ``member_<k>.safetensors`` (one per ensemble member) and ``card.md``. No pickle.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elprop.core.dataset import Dataset, InputError
from elprop.core.units import resolve_targets, specs_from_config
from elprop.models import build_model, family
from elprop.train.scaling import TargetScaler


class PropertyModel:
    def __init__(self, model: str = "bondgraph", targets=("homo", "lumo", "gap"), features: str = "extended",
                 dim: int = 128, layers: int = 4, ensemble: int = 1, seed: int = 0,
                 dropout: float = 0.0, channels=None, arch: dict | None = None, ensemble_mode: str = "deep"):
        family(model)  # an InputError naming the known families for an unknown one
        if ensemble_mode not in ("deep", "snapshot"):
            raise InputError(f"unknown ensemble mode {ensemble_mode!r}; known: deep, snapshot")
        self.specs = resolve_targets(targets)  # names or TargetSpecs; the specs travel with the model
        from elprop.chem.features import FEATURE_SETS
        if model == "multirep":  # it reads every atom-feature set, side by side
            features = "multi"
        if features not in FEATURE_SETS:
            raise InputError(f"unknown feature set {features!r}; known: {', '.join(FEATURE_SETS)}")
        self.config = {"model": model, "targets": [t.name for t in self.specs],
                       "target_specs": [t.to_dict() for t in self.specs], "features": features, "dim": dim,
                       "layers": layers, "ensemble": ensemble, "seed": seed, "dropout": dropout,
                       "ensemble_mode": ensemble_mode}
        if self.representation == "volume":
            if not channels:
                raise InputError(f"model {model!r} needs input channels (density kinds, e.g. dft,promolecular)")
            self.config["channels"] = list(channels)
        if arch:  # family-specific architecture options (e.g. cnn3d: pool, augment)
            self.config["arch"] = dict(arch)
        self.tta = 0  # volumetric models: average predictions over this many random rotations (0: off)
        self.nets: list[torch.nn.Module] = []
        self.scaler: TargetScaler | None = None
        self.domain: dict = {}
        self.applicability = None  # train.domain.Domain: rare substructures and nearest-neighbour similarity
        self.ood_sigma = None  # per target: σ added (in quadrature) for molecules outside the domain
        self.sigma_scale = np.ones(len(self.config["targets"]))
        self.sigma_calibrated = False
        self.rank = 0
        self.in_dim = None  # the representation's feature width, set by fit and saved

    # --- representation ----------------------------------------------------------------------------
    @property
    def representation(self) -> str:
        return family(self.config["model"]).representation

    def represent(self, data):
        """Dataset or list of SMILES -> this family's representation (bad molecules flagged, not raised)."""
        from elprop.represent import represent
        return represent(self.representation, data, features=self.config["features"],
                         geometry=self.config.get("arch", {}).get("geometry"), channels=self.config.get("channels"),
                         grid_facts={k: self.config[k] for k in ("grid", "kinds") if k in self.config})

    def _new_net(self, in_dim):
        ext = [t.extensive for t in self.specs]
        return build_model(self.config["model"], ext, in_dim=in_dim, dim=self.config["dim"],
                           layers=self.config["layers"], dropout=self.config.get("dropout", 0.0),
                           **self.config.get("arch", {}))

    def _in_dim(self, rep):
        """The representation's feature width (graph: atom features; volume: channels; points: none)."""
        if getattr(rep, "in_dim", None) is not None:
            return rep.in_dim
        return rep.x.shape[-1] if self.representation == "graph" else None

    # --- fit ---------------------------------------------------------------------------------------
    def fit(self, ds: Dataset, split: dict, out_dir, *, epochs=100, time_budget=None, batch_size=128, lr=1e-3,
            weight_decay=1e-5, ema=0.0, progress=True, log=print, rep=None, device="cpu", amp=False,
            checkpointing=False, target_weights=None, trainer=None):
        """Train on ``split['train']`` (validation on ``split['val']``); ``rep`` is ``self.represent(ds)`` if the
        caller already has it. ``target_weights``: one loss weight per target (default: equal). ``trainer``:
        options of the Lightning Trainer (devices, num_nodes, strategy, precision; ``train_lightning``)."""
        torch.manual_seed(self.config["seed"])
        rep = self.represent(ds) if rep is None else rep
        y = np.column_stack([ds.target(t) for t in self.config["targets"]])
        valid = rep.valid & np.isfinite(y).any(1)
        tr = np.array([i for i in split["train"] if valid[i]], dtype=np.int64)
        va = np.array([i for i in split.get("val", []) if valid[i]], dtype=np.int64)
        if len(tr) == 0:
            raise InputError("no trainable molecules in the training split (all invalid or without targets)")
        init = getattr(self, "init_states", None)  # fine-tuning: the saved model's weights and target scaler
        if not init or self.scaler is None:
            self.scaler = TargetScaler.fit(y[tr], rep.counts[tr], [t.extensive for t in self.specs])
        if target_weights is None and any(t.weight != 1.0 for t in self.specs):
            target_weights = [t.weight for t in self.specs]
        y_s = self.scaler.transform(y, rep.counts)
        self.domain = _domain(ds, rep, tr)
        self.in_dim = self._in_dim(rep)
        self.nets = []
        if self.config.get("ensemble_mode") == "snapshot" and self.config["ensemble"] > 1:
            self._fit_snapshots(rep, y_s, tr, va, out_dir, epochs=epochs, time_budget=time_budget,
                                batch_size=batch_size, lr=lr, weight_decay=weight_decay, ema=ema, progress=progress,
                                log=log, device=device, amp=amp, target_weights=target_weights, trainer=trainer)
            members = 0
        else:
            members = self.config["ensemble"]
        per_member = None if time_budget is None else time_budget / self.config["ensemble"]
        for k in range(members):
            torch.manual_seed(self.config["seed"] + k)
            net = self._new_net(self.in_dim)
            if init:
                net.load_state_dict(init[k % len(init)])
            if hasattr(net, "checkpointing"):
                net.checkpointing = checkpointing
            if self.config["ensemble"] > 1:
                log(f"ensemble member {k + 1}/{self.config['ensemble']}")
            from elprop.train.loop import train_network
            train_network(net, rep, y_s, tr, va, Path(out_dir) / f"member_{k}", epochs=epochs,
                          time_budget=per_member, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                          ema=ema, seed=self.config["seed"] + k, progress=progress, log=log, device=device,
                          amp=amp, target_weights=target_weights, **(trainer or {}))
            self.rank = getattr(net, "trainer_rank", 0)  # under DDP, only process 0 goes on to evaluate and save
            if hasattr(net, "checkpointing"):
                net.checkpointing = False
            self.nets.append(net)
        if self.rank != 0:
            return self
        if len(va):
            self.calibrate(rep, va, y[va])
        else:
            log("warning: no validation molecules, so σ stays uncalibrated (the variance head's training-set "
                "scale, usually too small); give a validation split (--n-val) to calibrate it")
        self.sigma_calibrated = bool(len(va))
        self.fit_applicability(ds, tr, va)
        return self

    def fit_applicability(self, ds: Dataset, tr, va, log=print):
        """The applicability domain from the training molecules' graphs, thresholds from the validation ones.
        A fine-tuned model keeps its base model's domain and thresholds and adds the new training molecules
        (``self.new_rows``: the rows that are not replayed from the base model's own training data)."""
        from elprop.train.domain import Domain
        smi = np.asarray(ds.smiles, dtype=object)
        base = getattr(self, "base_applicability", None)
        if base is not None:
            new = np.unique(np.asarray(tr)[np.isin(tr, getattr(self, "new_rows", tr))])
            self.applicability = base.extended([x for x in smi[new] if x])
            return
        if not all(smi[tr]):
            log("note: some training molecules have no SMILES; the applicability domain is not fitted")
            self.applicability = None
            return
        self.applicability = Domain.fit(smi[tr], [x for x in smi[va] if x], seed=self.config["seed"])

    def _fit_snapshots(self, rep, y_s, tr, va, out_dir, *, epochs, time_budget, log, trainer=None, **options):
        """A snapshot ensemble: one training run whose learning rate restarts ``ensemble`` times; the weights at
        the end of each cycle are the members (the cost of one model instead of K)."""
        from elprop.train.loop import train_network
        k = self.config["ensemble"]
        if time_budget is None and epochs % k:
            raise InputError(f"a snapshot ensemble of {k} needs --epochs divisible by {k} (one cycle per member)")
        torch.manual_seed(self.config["seed"])
        net = self._new_net(self.in_dim)
        init = getattr(self, "init_states", None)
        if init:
            net.load_state_dict(init[0])
        log(f"snapshot ensemble: {k} learning-rate cycles, one member at the end of each")
        out = Path(out_dir) / "snapshots"
        train_network(net, rep, y_s, tr, va, out, epochs=epochs, time_budget=time_budget, seed=self.config["seed"],
                      log=log, cycles=k, **options, **(trainer or {}))
        self.rank = getattr(net, "trainer_rank", 0)
        for c in range(k):
            path = out / f"snapshot_{c}.pt"
            if not path.exists():  # a budget that ended early: fewer cycles completed
                continue
            m = self._new_net(self.in_dim)
            m.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
            m.to(options.get("device", "cpu"))
            self.nets.append(m)
        if not self.nets:
            self.nets.append(net)

    def calibrate(self, rep, idx, y):
        """Rescale each target's σ so that held-out errors match it: s² = mean(((y - μ) / σ)²) over molecules
        ``idx`` (the validation set). The variance head learns from training residuals, which are smaller than
        held-out errors, so without this the σ would be too small."""
        self.sigma_scale = np.ones(len(self.config["targets"]))
        mean, std = self.predict_rep(rep, idx)
        z2 = ((np.asarray(y) - mean) / std) ** 2
        for k in range(z2.shape[1]):
            ok = np.isfinite(z2[:, k])
            if ok.sum() >= 10:
                self.sigma_scale[k] = float(np.sqrt(z2[ok, k].mean()))
        return self.sigma_scale

    # --- predict -----------------------------------------------------------------------------------
    def predict_rep(self, rep, idx=None):
        """(mean [M,T], std [M,T]) in elprop units for rows ``idx`` of a representation (NaN where invalid)."""
        mean, std, _ = self.predict_parts(rep, idx)
        return mean, std

    def predict_parts(self, rep, idx=None):
        """(mean, std, epistemic std) [M,T]: std is the calibrated total σ (the members' mean variance plus their
        spread); the epistemic part is the spread between ensemble members alone, on the same calibrated scale
        (zero for a single member)."""
        if not self.nets:
            raise RuntimeError("model is not fitted")
        idx = np.arange(len(rep)) if idx is None else np.asarray(idx)
        ok = idx[rep.valid[idx]]
        t = len(self.config["targets"])
        mean = np.full((len(idx), t), np.nan)
        std = np.full((len(idx), t), np.nan)
        epi = np.full((len(idx), t), np.nan)
        if len(ok):
            mus, vars_ = zip(*(self._predict_net(net, rep, ok) for net in self.nets))
            spread = np.var(mus, 0) if len(mus) > 1 else np.zeros_like(mus[0])
            mu_s, var_s = np.mean(mus, 0), np.mean(vars_, 0) + spread
            y, var = self.scaler.inverse(mu_s, rep.counts[ok], var_s)
            _, var_e = self.scaler.inverse(mu_s, rep.counts[ok], spread)
            pos = np.nonzero(rep.valid[idx])[0]  # rows of idx that hold the valid molecules ok
            mean[pos], std[pos] = y, np.sqrt(var) * self.sigma_scale
            epi[pos] = np.sqrt(var_e) * self.sigma_scale
        return mean, std, epi

    def representation_weights(self, data, batch_size: int = 256):
        """For a multi-representation model: (representation names, α [M, K]), each molecule's attention weight
        on each representation, averaged over the ensemble members (NaN rows for invalid molecules); None for
        other families."""
        if not self.nets or getattr(self.nets[0], "combine", None) != "attention":
            return None  # not a multirep model, or one that concatenates or averages (fixed, uniform weights)
        from elprop.train.device import net_device, to_device
        rep = data if hasattr(data, "batch") else self.represent(data)
        ok = np.flatnonzero(rep.valid)
        out = np.full((len(rep), len(self.nets[0].reps)), np.nan)
        if len(ok):
            acc = np.zeros((len(ok), out.shape[1]))
            for net in self.nets:
                net.eval()
                dev = net_device(net)
                with torch.no_grad():
                    parts = [net.representation_weights(to_device(rep.batch(ok[s:s + batch_size]), dev)).cpu().numpy()
                             for s in range(0, len(ok), batch_size)]
                acc += np.concatenate(parts)
            out[ok] = acc / len(self.nets)
        return list(self.nets[0].reps), out

    def _predict_net(self, net, rep, idx):
        from elprop.train.loop import predict_scaled
        if not self.tta:
            return predict_scaled(net, rep, idx)
        # test-time augmentation: the mean over random rotations; their spread joins the variance
        runs = [predict_scaled(_Rotated(net, seed=r), rep, idx) for r in range(self.tta)]
        mus = np.stack([m for m, _ in runs])
        return mus.mean(0), np.mean([v for _, v in runs], 0) + mus.var(0)

    def predict(self, data) -> Prediction:
        """Predict a Dataset or a list of SMILES, with the domain checks: molecules with elements never seen in
        training are errors (NaN rows), molecules beyond the training sizes get a warning in ``flags``."""
        rep = self.represent(data)
        self._check_elements(rep, data)
        mean, std, epi = self.predict_parts(rep)
        smiles = list(data.smiles) if isinstance(data, Dataset) else [str(x) for x in data]
        dom = self.domain_scores(smiles, rep)
        flags = [("; ".join(f for f in (a, b) if f)) for a, b in zip(self.ood_flags(rep), dom["flags"])]
        if self.ood_sigma is not None:  # outside the domain, the error model learned from out-of-domain labels
            out = np.array([bool(f) for f in flags])
            std[out] = np.sqrt(std[out] ** 2 + np.asarray(self.ood_sigma)[None, :] ** 2)
        weights = self.representation_weights(rep)  # multirep: each molecule's attention over its representations
        return Prediction(mean, std, flags, dict(rep.errors), rep, epi, dom["score"], dom["nn_similarity"], weights)

    def fit_ood_sigma(self, smiles, y, log=print):
        """σ for molecules outside the domain: the RMS error of this model on the labelled molecules ``smiles``
        (targets ``y`` [n, T], NaN where missing) that its domain flags. Fitted before fine-tuning on new labels,
        from the errors the model made on them while they were new; it is added in quadrature to σ wherever the
        warning column is not empty."""
        pred = self.predict(list(smiles))
        out = np.array([bool(f) for f in pred.flags])
        err2 = (pred.mean - np.asarray(y)) ** 2
        sig = np.full(len(self.specs), np.nan)
        for k in range(len(self.specs)):
            ok = out & np.isfinite(err2[:, k])
            if ok.sum() >= 5:
                sig[k] = float(np.sqrt(err2[ok, k].mean()))
        if np.isfinite(sig).any():
            prev = np.asarray(self.ood_sigma, dtype=float) if self.ood_sigma is not None else np.zeros(len(sig))
            self.ood_sigma = np.where(np.isfinite(sig), sig, prev)
            log(f"out-of-domain σ from {int(out.sum())} flagged new molecules: " +
                ", ".join(f"{t.name} {v:.3f} {t.unit}" for t, v in zip(self.specs, self.ood_sigma)))
        return self.ood_sigma

    def domain_scores(self, smiles, rep=None) -> dict:
        """The applicability-domain score, nearest-neighbour similarity and warning per molecule (NaN and ""
        where the model has no domain, or the molecule no readable SMILES or no prediction)."""
        n = len(smiles)
        if self.applicability is None:
            return {"score": np.full(n, np.nan), "nn_similarity": np.full(n, np.nan), "flags": [""] * n}
        dom = self.applicability.score(smiles)
        if rep is not None:
            dom["flags"] = [f if rep.valid[i] else "" for i, f in enumerate(dom["flags"])]
        return dom

    def _check_elements(self, rep, data):
        """Mark molecules with elements absent from the training data as invalid, with an error naming them."""
        from elprop.core.dataset import SYMBOLS
        seen = set(self.domain.get("elements", []))
        if not seen:
            return
        for i in range(len(rep)):
            if not rep.valid[i]:
                continue
            zs, name = _elements_of(data, i)
            bad = sorted(zs - seen)
            if bad:
                rep.valid[i] = False
                rep.errors[i] = (f"{name}: element(s) {', '.join(SYMBOLS[z] for z in bad)} never seen in training "
                                 f"(model knows {', '.join(SYMBOLS[z] for z in sorted(seen))})")

    def ood_flags(self, rep) -> list[str]:
        """A warning per molecule that lies outside the training domain (empty string if inside)."""
        out = []
        max_heavy = self.domain.get("max_heavy_atoms")
        max_atoms = self.domain.get("max_atoms")
        for i in range(len(rep)):
            msg = []
            if rep.valid[i]:
                heavy = int(rep.counts[i, 1:].sum())
                total = int(rep.counts[i].sum())
                if max_heavy and heavy > max_heavy:
                    msg.append(f"{heavy} heavy atoms > {max_heavy} seen in training")
                elif max_atoms and total > max_atoms:
                    msg.append(f"{total} atoms > {max_atoms} seen in training")
            out.append("; ".join(msg))
        return out

    # --- save / load -------------------------------------------------------------------------------
    def save(self, path, card: str | None = None, extra: dict | None = None) -> Path:
        from elprop.train.saved import write_model_dir
        cfg = dict(self.config, units={t.name: t.unit for t in self.specs}, scaler=self.scaler.to_dict(),
                   sigma_scale=[float(v) for v in self.sigma_scale], sigma_calibrated=self.sigma_calibrated,
                   tta=int(self.tta), domain=self.domain, in_dim=self.in_dim)
        cfg.update(extra or {})
        if self.ood_sigma is not None:
            cfg["ood_sigma"] = [float(v) for v in self.ood_sigma]
        arrays = None
        if self.applicability is not None:
            cfg["applicability"] = self.applicability.to_config()
            arrays = self.applicability.arrays()
        return write_model_dir(path, cfg, [net.state_dict() for net in self.nets], card, arrays=arrays)

    @classmethod
    def load(cls, path) -> "PropertyModel":
        from elprop.train.saved import read_config, read_members
        path = Path(path)
        cfg = read_config(path)
        m = cls(cfg["model"], specs_from_config(cfg), cfg["features"], cfg["dim"], cfg["layers"], cfg["ensemble"],
                cfg.get("seed", 0), cfg.get("dropout", 0.0), cfg.get("channels"), cfg.get("arch"),
                cfg.get("ensemble_mode", "deep"))
        m.scaler = TargetScaler.from_dict(cfg["scaler"])
        m.domain = cfg.get("domain", {})
        m.sigma_scale = np.asarray(cfg.get("sigma_scale", np.ones(len(m.config["targets"]))), dtype=np.float64)
        m.saved_config = cfg
        m.sigma_calibrated = bool(cfg.get("sigma_calibrated", "sigma_scale" in cfg))
        m.tta = int(cfg.get("tta", 0))
        m.ood_sigma = np.asarray(cfg["ood_sigma"], dtype=float) if cfg.get("ood_sigma") is not None else None
        for k in ("grid", "kinds"):  # volumetric models: the store's grid and kind parameters
            if k in cfg:
                m.config[k] = cfg[k]
        m.in_dim = cfg.get("in_dim")
        if "applicability" in cfg and (path / "domain.safetensors").exists():
            from safetensors.numpy import load_file

            from elprop.train.domain import Domain
            m.applicability = Domain.from_saved(cfg["applicability"], load_file(path / "domain.safetensors"))
        for sd in read_members(path):
            net = m._new_net(m.in_dim)
            net.load_state_dict(sd)
            net.eval()
            m.nets.append(net)
        return m


@dataclass
class Prediction:
    """Predictions in the targets' units: ``mean`` and ``std`` [molecules, targets] (NaN rows where ``errors``
    names the problem), ``flags`` one warning per molecule ("" inside the training domain: size, rare
    substructures, distance to the nearest training molecule), the representation they came from, and the
    epistemic part of σ and the domain score."""
    mean: np.ndarray
    std: np.ndarray
    flags: list
    errors: dict
    rep: object = None
    epistemic: np.ndarray | None = None  # the ensemble members' spread [molecules, targets]
    domain_score: np.ndarray | None = None  # larger: farther from the training data (train.domain)
    nn_similarity: np.ndarray | None = None  # Tanimoto similarity to the nearest training molecule
    rep_weights: tuple | None = None  # multirep: (representation names, attention weights [molecules, K])

    def __iter__(self):  # mean, std, flags = model.predict(...)
        return iter((self.mean, self.std, self.flags))


def _elements_of(data, i):
    """(set of atomic numbers, display name) of molecule i of a Dataset or a list of SMILES."""
    if isinstance(data, Dataset):
        a, b = data.offsets[i], data.offsets[i + 1]
        if b > a:
            return {int(z) for z in data.z[a:b]}, str(data.names[i] or data.smiles[i])
        smi = str(data.smiles[i])
    else:
        smi = str(data[i])
    from rdkit import Chem
    mol = Chem.MolFromSmiles(smi)
    return ({a.GetAtomicNum() for a in mol.GetAtoms()} if mol is not None else set()), smi


class _Rotated(torch.nn.Module):
    """A volumetric network that sees its input grids turned by a fixed random rotation (and sub-voxel shift),
    drawn per sample from a generator seeded with ``seed``: one member of test-time augmentation."""

    def __init__(self, net, seed: int):
        super().__init__()
        self.net, self.seed = net, seed

    def forward(self, batch):
        from elprop.represent.transforms import augment_batch
        gen = torch.Generator().manual_seed(1_000_003 * self.seed + batch["x"].shape[0])
        x = augment_batch(batch["x"], getattr(self.net, "max_shift", 0.5), generator=gen)
        return self.net(dict(batch, x=x))


def _domain(ds: Dataset, rep, tr) -> dict:
    heavy = rep.counts[tr, 1:].sum(1)
    total = rep.counts[tr].sum(1)
    from elprop.represent.graph import COUNT_Z
    seen = [COUNT_Z[j] for j in range(len(COUNT_Z)) if rep.counts[tr, j].sum() > 0]
    return {"max_heavy_atoms": int(heavy.max()), "max_atoms": int(total.max()), "elements": seen,
            "n_train": int(len(tr))}

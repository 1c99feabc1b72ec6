"""The closed design loop: propose with the surrogate, verify with DFT, learn from every verification, repeat.

One round:
  1. **pool**: molecules scored by the acquisition under the current surrogate (mean and σ) — from the genetic
     algorithm (``ga``), from random walks of the generator (``random``, scored by nothing), or a given library
     (``library``);
  2. **batch**: the best-scoring molecules not yet verified, kept apart by a fingerprint-similarity cap;
  3. **verify**: the batch is labelled by the oracle (``elprop label``: DFT at the QM9 level, or GFN2-xTB as a
     named stand-in), Dask-parallel and resumable;
  4. **learn**: the base surrogate is fine-tuned on every verified label so far (``elprop train --init-model``
     with replay), and that model scores the next round; after the last round it is the run's final model.

Everything lives in ``--out``: ``config.json``; ``rounds/NN/pool.csv`` and ``batch.csv``; ``labels/`` (the
oracle's folder, shared by all rounds: a molecule is never computed twice); ``models/NN/`` (the surrogate after
round NN); ``proposals.csv`` (every proposal with its prediction ± σ, its label, its hit flag and its round);
``report.html`` and ``enriched.csv``. Each step writes its file atomically when done, so a rerun after a kill
continues at the first missing one.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from elprop.core.cache import atomic_write
from elprop.core.dataset import InputError
from elprop.design.objective import ACQUISITIONS, Goal
from elprop.design.space import SearchSpace, inchikey

GENERATORS = ("ga", "random", "library")


@dataclass
class DesignConfig:
    model: str  # the base surrogate (a saved model folder)
    rounds: int = 4
    batch: int = 12
    generator: str = "ga"
    library: str | None = None
    finetune: bool = True
    oracle: str = "dft"  # or "xtb", the stand-in
    seed: int = 0
    population: int = 100
    seed_pool: int = 2000
    generations: int = 6
    offspring: int = 200
    max_similarity: float = 0.7
    novel_only: bool = False
    novelty_reference: str = "qm9"
    finetune_epochs: int = 10
    finetune_lr: float = 3e-4
    finetune_new_fraction: float = 0.0  # verified molecules repeated to about this share of a fine-tuning epoch
    replay: int = 2000
    workers: int = 2
    scheduler: str | None = None
    label_opt: str = "xtb"
    label_seed: int = 0  # the oracle's conformer seed: part of the label's definition, the same for every --seed
    labels_dir: str | None = None  # the oracle's folder (default: OUT/labels); runs may share one
    gp: bool = False  # correct the surrogate by a GP on fingerprints over its residuals on verified molecules
    calibrate: bool | None = None  # scale σ by the RMS z-score of verified proposals (None: on in a new run)
    prescreen: str | None = None  # "xtb", "dft:BASIS" or a cascade "xtb,dft:6-31g": cheap levels + Δ-models on the
    #                               surrogate's best candidates (multifidelity.py)
    prescreen_top: int | str = 100  # candidates per round sent to each prescreen stage ("100,36")
    prescreen_reference: int | str = 10000  # QM9 molecules that train each stage's Δ-model ("10000,500")

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


# settings that may change between a run and its resume without changing what was computed
RESUMABLE = ("rounds", "workers", "scheduler", "labels_dir")
# settings added later, with the value that reproduces runs made before them (their config lacks the key)
LEGACY = {"calibrate": False, "finetune_new_fraction": 0.0, "prescreen": None, "prescreen_top": 100,
          "prescreen_reference": 10000, "label_seed": 0}


def _per_stage(values: list[int]) -> int | str:
    return values[0] if len(values) == 1 else ",".join(map(str, values))


class DesignRun:
    def __init__(self, out, cfg: DesignConfig, goal: Goal, space: SearchSpace, log=print, progress: bool = True):
        self.out, self.cfg, self.goal, self.space, self.log, self.progress = Path(out), cfg, goal, space, log, progress
        if cfg.generator not in GENERATORS:
            raise InputError(f"--generator {cfg.generator!r}: one of {', '.join(GENERATORS)}")
        if cfg.generator == "library" and not cfg.library:
            raise InputError("--generator library needs --library FILE")
        if cfg.rounds < 1 or cfg.batch < 1:
            raise InputError("--rounds and --batch must be at least 1")
        from elprop.design.multifidelity import parse_prescreen, stage_numbers
        self.stages = parse_prescreen(cfg.prescreen)
        n = len(self.stages)
        self.stage_top = stage_numbers(cfg.prescreen_top, n, [100] + [3 * cfg.batch] * n, "--prescreen-top")
        self.stage_reference = stage_numbers(cfg.prescreen_reference, n,
                                             [10000 if st.method == "xtb" else 500 for st in self.stages],
                                             "--prescreen-reference")
        if any(t < cfg.batch for t in self.stage_top):
            raise InputError(f"--prescreen-top {cfg.prescreen_top}: every stage needs at least --batch {cfg.batch}")
        # what the run's config records: the numbers in use (one stage: a plain number, as before cascades)
        cfg.prescreen_top = _per_stage(self.stage_top) if n else LEGACY["prescreen_top"]
        cfg.prescreen_reference = _per_stage(self.stage_reference) if n else LEGACY["prescreen_reference"]
        self._delta = {}
        self._models = {}
        self._gps = {}
        self._scales = None  # (number of labels, σ factor per target)
        self._novel_ref = None
        self._verified_set = None  # SMILES already sent to the oracle (never proposed again)
        self.labels_dir = Path(cfg.labels_dir) if cfg.labels_dir else self.out / "labels"

    # --- files -------------------------------------------------------------------------------------------------
    def round_dir(self, k: int) -> Path:
        return self.out / "rounds" / f"{k:02d}"

    def model_dir(self, k: int) -> Path:
        """The surrogate that proposes round k: the base model, or the one fine-tuned after round k-1."""
        if k == 1 or not self.cfg.finetune:
            return Path(self.cfg.model)
        return self.out / "models" / f"{k - 1:02d}" / "model"

    def open(self) -> None:
        """Create the folder, or check that it holds a run of the same settings (a resume)."""
        path = self.out / "config.json"
        old = json.loads(path.read_text()) if path.exists() else None
        if old is not None and "space" in old:  # a resumed run keeps the defaults it started with
            self.space = self.space.resumed(old["space"])
        if old is not None and self.goal.acquisition_auto and old.get("goal", {}).get("acquisition") in ACQUISITIONS:
            self.goal = dataclasses.replace(self.goal, acquisition=old["goal"]["acquisition"])
        config = {"design": self.cfg.to_dict(), "goal": self.goal.to_dict(), "space": self.space.to_dict()}
        if self.cfg.calibrate is None:  # on in a new run; a resumed run keeps what it did
            self.cfg.calibrate = True if old is None else bool(old["design"].get("calibrate", LEGACY["calibrate"]))
        config["design"] = self.cfg.to_dict()
        if old is not None:
            diff = [k for k in ("goal", "space") if old.get(k) != json.loads(json.dumps(config[k]))]
            diff += [f"--{k.replace('_', '-')}" for k, v in config["design"].items()
                     if k not in RESUMABLE and old["design"].get(k, LEGACY.get(k)) != v]
            if diff:
                raise InputError(f"{self.out} holds a design run with other settings ({', '.join(diff)} differ); "
                                 "use a new --out, or the same options to resume")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=1)))

    # --- the surrogate -----------------------------------------------------------------------------------------
    def surrogate(self, k: int):
        from elprop.train.saved import load_model
        d = self.model_dir(k)
        if d not in self._models:
            self._models = {d: load_model(d)}  # one model in memory at a time
        return self._models[d]

    def predict(self, model, smiles: list[str]) -> pd.DataFrame:
        """Mean, σ and epistemic σ of the goal's targets, the domain warning and similarity, per molecule."""
        pred = model.predict(list(smiles))
        df = pd.DataFrame({"smiles": list(smiles)})
        for t in self.goal.targets:
            k = model.config["targets"].index(t)
            df[f"{t}_pred"] = pred.mean[:, k]
            df[f"{t}_std"] = pred.std[:, k]
            df[f"{t}_epistemic"] = pred.epistemic[:, k] if pred.epistemic is not None else 0.0
        df["warning"] = list(pred.flags)
        df["nn_similarity"] = pred.nn_similarity if pred.nn_similarity is not None else np.nan
        if self.cfg.gp and len(df):
            for t, gp in self.residual_gps(model).items():
                shift, shrink = gp.predict(list(smiles))
                df[f"{t}_pred"] += shift
                df[f"{t}_std"] *= np.sqrt(shrink)
                df[f"{t}_gp_shift"] = shift
        if self.cfg.calibrate:
            for t, scale in self.sigma_scales().items():
                df[f"{t}_std_raw"] = df[f"{t}_std"]
                df[f"{t}_std"] = df[f"{t}_std"] * scale
                df[f"{t}_sigma_scale"] = scale
        return df

    def sigma_scales(self) -> dict:
        """Per goal target, the factor σ is multiplied by: the RMS of (prediction - label) / σ over every verified
        proposal, with the prediction and σ it had when proposed (out of sample for the surrogate of its round),
        at least 1 (σ is never made smaller than the model's own), and 1 before 5 such labels exist."""
        lab = self.labels()
        key = len(lab)
        if self._scales is None or self._scales[0] != key:
            scales = {t: 1.0 for t in self.goal.targets}
            if len(lab):
                prop = pd.concat(self.batches(), ignore_index=True).merge(
                    lab[["name"] + [f"{t}_label" for t in self.goal.targets]], on="name")
                for t in self.goal.targets:
                    sd = prop[f"{t}_std_raw"].fillna(prop[f"{t}_std"]) if f"{t}_std_raw" in prop else prop[f"{t}_std"]
                    mu = prop[f"{t}_pred"]  # the surrogate's own, where a prescreen replaced it in the batch
                    if f"{t}_surrogate_pred" in prop:
                        mu = prop[f"{t}_surrogate_pred"].fillna(mu)
                    z = ((mu - prop[f"{t}_label"]) / sd).to_numpy(dtype=float)
                    z = z[np.isfinite(z)]
                    if len(z) >= 5:
                        scales[t] = max(1.0, float(np.sqrt(np.mean(z ** 2))))
            self._scales = (key, scales)
        return self._scales[1]

    def residual_gps(self, model) -> dict:
        """Per goal target, the GP over ``model``'s residuals on the verified molecules (refitted when either
        changes)."""
        from elprop.design.gp import ResidualGP
        lab = self.labels()
        lab = lab[lab["ok"]]
        key = (id(model), len(lab))
        if key not in self._gps:
            gps = {}
            if len(lab):
                pred = model.predict(lab["smiles"].tolist())
                for t in self.goal.targets:
                    k = model.config["targets"].index(t)
                    gps[t] = ResidualGP().fit(lab["smiles"].tolist(), lab[f"{t}_label"].to_numpy() - pred.mean[:, k])
            self._gps = {key: gps}
        return self._gps[key]

    def acquisition(self, df: pd.DataFrame, best: dict) -> np.ndarray:
        mean = {t: df[f"{t}_pred"].to_numpy() for t in self.goal.targets}
        std = {t: df[f"{t}_std"].to_numpy() for t in self.goal.targets}
        s = self.goal.scores(mean, std, best)
        return np.where(np.isfinite(s), s, -np.inf)

    # --- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        self.open()
        t0 = time.time()
        for k in range(1, self.cfg.rounds + 1):
            self.round(k)
        summary = self.finish()
        summary["wall_s"] = round(time.time() - t0, 1)
        return summary

    def round(self, k: int) -> None:
        d = self.round_dir(k)
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "batch.csv").exists():
            pool = self.pool(k)
            if self.cfg.prescreen:
                pool = self.prescreen(k, pool)
            batch = self.select(pool, k)
            _write_csv(d / "batch.csv", batch)
            self.log(f"round {k}: batch of {len(batch)} chosen from {len(pool)} molecules")
        batch = pd.read_csv(d / "batch.csv")
        self.verify(batch, k)
        # after the last round too: models/NN is the surrogate that knows every label. A model k only serves to
        # propose round k+1, so a resumed run whose round k+1 is already chosen (its state restored on a fresh
        # machine, say) does not train it again
        if self.cfg.finetune and (k == self.cfg.rounds or not (self.round_dir(k + 1) / "batch.csv").exists()):
            self.learn(k)
        self.assemble()

    def pool(self, k: int) -> pd.DataFrame:
        d = self.round_dir(k)
        if (d / "pool.csv").exists():
            return pd.read_csv(d / "pool.csv", keep_default_na=False, na_values=[""])
        rng = np.random.default_rng([self.cfg.seed, k])
        model = self.surrogate(k)
        best = self.best_verified()
        from elprop.design.generate import Operators, random_molecules, run_ga
        ops = Operators(self.space, rng)
        if self.cfg.generator == "library":
            smiles = self.library()
            df = self.predict(model, smiles)
            df["score"] = self.acquisition(df, best)
        elif self.cfg.generator == "random":
            smiles = random_molecules(self.seeds(rng), ops, max(self.cfg.offspring, 5 * self.cfg.batch))
            smiles = [s for s in smiles if self.allowed(s)]
            df = self.predict(model, smiles)
            df["score"] = rng.random(len(df))  # no surrogate in the choice: a random batch
        else:
            seeds = self.seeds(rng)
            seed_df = self.predict(model, seeds)
            for o in self.goal.objectives:  # before any verification, EI improves on the seeds' best prediction
                if o.kind in ("max", "min") and o.target not in best:
                    y = seed_df[f"{o.target}_pred"]
                    best[o.target] = float(y.max() if o.kind == "max" else y.min())
            seed_df["score"] = self.acquisition(seed_df, best)
            start = seed_df.sort_values("score", ascending=False)["smiles"].tolist()[:self.cfg.population]
            start += [s for s in self.labels()["smiles"] if s not in start]  # verified molecules breed too
            bar = None
            if self.progress:
                from tqdm import tqdm
                bar = tqdm(total=self.cfg.generations, desc=f"round {k}: genetic algorithm", unit="gen")
            frames = []

            def fitness(smiles):
                ok = [s for s in smiles if self.allowed(s)]
                f = self.predict(model, ok) if ok else pd.DataFrame({"smiles": []})
                f["score"] = self.acquisition(f, best) if len(f) else []
                frames.append(f)
                sc = dict(zip(f["smiles"], f["score"]))
                return np.array([sc.get(s, -np.inf) for s in smiles])
            run_ga(start, fitness, ops, generations=self.cfg.generations, offspring=self.cfg.offspring,
                   keep=self.cfg.population, progress=(lambda g, n, m: bar.update(1)) if bar else None)
            if bar is not None:
                bar.close()
            df = pd.concat(frames, ignore_index=True).drop_duplicates("smiles")
        df = df[[self.allowed(s) for s in df["smiles"]]].reset_index(drop=True)
        df["round"] = k
        _write_csv(d / "pool.csv", df)
        return df

    def allowed(self, smiles: str) -> bool:
        """Inside the space, not verified before, and (with --novel-only) not in the novelty reference."""
        if self._verified_set is None:
            self._verified_set = set(self.labels()["smiles"])
        if smiles in self._verified_set:
            return False
        return not self.cfg.novel_only or self.novel(smiles)

    def novel(self, smiles: str) -> bool:
        ref = self.novelty_reference()
        return ref is None or inchikey(smiles) not in ref

    def novelty_reference(self) -> set | None:
        if self._novel_ref is None:
            r = self.cfg.novelty_reference
            if r == "none":
                return None
            if r == "qm9":
                from elprop.data.qm9 import qm9_inchikeys
                self._novel_ref = qm9_inchikeys()
            else:
                self._novel_ref = {inchikey(s) for s in _read_smiles(r)}
        return self._novel_ref

    def seeds(self, rng) -> list[str]:
        """The molecules the generator starts from: a seeded sample of QM9 inside the space."""
        from elprop.data.load import DataSpec, load_data
        ds = load_data(DataSpec("qm9"))
        heavy = np.add.reduceat((ds.z > 1).astype(int), ds.offsets[:-1])
        fits = np.flatnonzero((heavy <= self.space.max_heavy) & (heavy >= self.space.min_heavy))
        idx = rng.choice(fits, min(self.cfg.seed_pool, len(fits)), replace=False)
        out = []
        for i in idx:
            c = self.space.canonical(str(ds.smiles[i]))
            if c is not None:
                out.append(c)
        if not out:
            raise InputError("no QM9 molecule lies inside the search space; widen --elements or --max-heavy")
        return out

    def library(self) -> list[str]:
        smiles = []
        for s in _read_smiles(self.cfg.library):
            c = self.space.canonical(s)
            if c is not None:
                smiles.append(c)
        smiles = list(dict.fromkeys(smiles))
        if not smiles:
            raise InputError(f"{self.cfg.library}: no molecule of the library lies inside the search space")
        return smiles

    def select(self, pool: pd.DataFrame, k: int, n: int | None = None) -> pd.DataFrame:
        """The batch (or ``n`` molecules): by score, skipping molecules too similar (Tanimoto) to one already
        chosen."""
        from rdkit import Chem, DataStructs
        from rdkit.Chem import rdFingerprintGenerator
        gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
        order = pool.sort_values("score", ascending=False, kind="stable")
        chosen, fps = [], []
        for i, row in order.iterrows():
            if len(chosen) >= (n or self.cfg.batch):
                break
            if not self.allowed(row["smiles"]):
                continue
            fp = gen.GetFingerprint(Chem.MolFromSmiles(row["smiles"]))
            if fps and max(DataStructs.BulkTanimotoSimilarity(fp, fps)) > self.cfg.max_similarity:
                continue
            chosen.append(i)
            fps.append(fp)
        batch = pool.loc[chosen].copy()
        if n is None:
            batch["name"] = [f"r{k:02d}_{j:03d}" for j in range(len(batch))]
        return batch.reset_index(drop=True)

    # --- the multi-fidelity prescreen --------------------------------------------------------------------------
    def prescreen(self, k: int, pool: pd.DataFrame) -> pd.DataFrame:
        """Each stage of ``--prescreen`` in turn: the best ``top`` candidates so far (kept apart like a batch) get
        the stage's level + Δ-model estimates in place of the earlier ones (the surrogate's stay as
        ``T_surrogate_pred`` and ``T_surrogate_std``, each stage's raw values as ``T_PREFIX``), and are scored
        again; the next stage, or the batch, chooses among them. ``rounds/NN/prescreen.csv`` (the last stage)
        and ``rounds/NN/prescreen-PREFIX.csv`` (the stages before it)."""
        from elprop.design.multifidelity import read_results
        d = self.round_dir(k)
        cand = pool
        for i, (st, top) in enumerate(zip(self.stages, self.stage_top)):
            last = i == len(self.stages) - 1
            f = d / ("prescreen.csv" if last else f"prescreen-{st.prefix}.csv")
            if f.exists():
                cand = pd.read_csv(f, keep_default_na=False, na_values=[""])
                continue
            n_before = len(cand)
            cand = self.select(cand, k, n=top)
            by = "the surrogate's" if i == 0 else f"the {self.stages[i - 1].label} estimates'"
            self.log(f"round {k}: prescreening {by} best {len(cand)} of {n_before} with {st.label}")
            self.stage_label(st, cand["smiles"].tolist())
            vals = read_results(self.out / st.folder, cand["smiles"], st.prefix)
            est = self.delta_estimates(i, cand["smiles"], vals)
            for t, (mean, std) in est.items():
                if i == 0:
                    cand[f"{t}_surrogate_pred"], cand[f"{t}_surrogate_std"] = cand[f"{t}_pred"], cand[f"{t}_std"]
                cand[f"{t}_{st.prefix}"] = vals[f"{st.prefix}_{t}"].to_numpy()
                cand[f"{t}_pred"], cand[f"{t}_std"] = mean, std
            if i == 0:
                cand["surrogate_score"] = cand["score"]
            cand["score"] = self.acquisition(cand, self.best_verified())
            ok = np.all([np.isfinite(cand[f"{t}_pred"]) for t in est], axis=0) if est else np.ones(len(cand), bool)
            cand.loc[~ok, "score"] = -np.inf  # the stage's calculation failed: not proposed
            _write_csv(f, cand)
        return cand

    def stage_label(self, stage, smiles: list[str]) -> None:
        self.run_oracle(smiles, [f"x{j:04d}" for j in range(len(smiles))], self.out / stage.folder, stage.method,
                        stage.settings())

    def delta_model(self, i: int):
        if i not in self._delta:
            from elprop.design.multifidelity import DeltaModel, qm9_reference
            st = self.stages[i]
            ref = qm9_reference(st, self.stage_reference[i], workers=self.cfg.workers, progress=self.progress,
                                log=self.log)
            self._delta[i] = DeltaModel(self.goal.targets, seed=self.cfg.seed, prefix=st.prefix).fit(ref)
        return self._delta[i]

    def delta_estimates(self, i: int, smiles, vals: pd.DataFrame) -> dict:
        """Per goal target that stage ``i`` gives: (mean, σ) at the DFT level; σ from the verified candidates'
        errors once there are enough of them with this stage's values (``multifidelity.verified_sigma``)."""
        from elprop.design.multifidelity import read_results, verified_sigma
        st = self.stages[i]
        dm = self.delta_model(i)
        raw = dm.predict(list(smiles), vals)
        lab = self.labels()
        lab = lab[lab["ok"]]
        lab_est = dm.predict(lab["smiles"].tolist(), read_results(self.out / st.folder, lab["smiles"], st.prefix)) \
            if len(lab) else {}
        out = {}
        for t, v in raw.items():
            sd = verified_sigma(lab_est[t], lab[f"{t}_label"].to_numpy(float)) if len(lab) else None
            out[t] = (v, np.full(len(v), dm.rms[t] if sd is None else sd))
        return out

    def run_oracle(self, smiles: list[str], names: list[str], folder: Path, method: str,
                   settings: dict | None = None) -> None:
        """``elprop label`` (method dft or xtb; ``settings``: DFTSettings as a dict, default the QM9 level) of
        ``smiles`` into ``folder``, at the run's geometry route, seed and workers; molecules the folder already
        holds are not computed again."""
        from elprop.core.dataset import Dataset, Molecule
        from elprop.density.dft import DFTSettings
        from elprop.label.run import label_items, molecule_items
        settings = DFTSettings(**(settings or {}))
        ds = Dataset.from_molecules([Molecule(np.zeros(0, int), smiles=s, name=n) for s, n in zip(smiles, names)], [])
        label_items(molecule_items(ds, settings), folder, settings, opt=self.cfg.label_opt, seed=self.cfg.label_seed,
                    workers=self.cfg.workers, scheduler=self.cfg.scheduler, progress=self.progress, log=self.log,
                    method=method)

    def verify(self, batch: pd.DataFrame, k: int) -> None:
        if not len(batch):
            return
        what = "GFN2-xTB, a stand-in oracle" if self.cfg.oracle == "xtb" else "DFT"
        self.log(f"round {k}: verifying {len(batch)} molecules ({what})")
        self.run_oracle(batch["smiles"].tolist(), batch["name"].tolist(), self.labels_dir, self.cfg.oracle)
        from elprop.label.run import assemble_all
        assemble_all(self.labels_dir)  # labels.csv: every molecule of the folder, not only this batch
        self._verified_set = None  # the batch just verified joins the set on the next call

    def labels(self, upto: int | None = None) -> pd.DataFrame:
        """The oracle's results for this run's proposals so far (``upto``: of rounds ≤ upto only): name, smiles,
        ok, and each goal target's label (read by the molecule's key, so a labels folder shared with other runs is
        fine)."""
        from elprop.label.run import item_key
        rows = []
        for b in self.batches(upto):
            for name, smi in zip(b["name"], b["smiles"]):
                p = self.labels_dir / "results" / f"{item_key(smi)}.json"
                if not p.exists():
                    continue
                r = json.loads(p.read_text())
                row = {"name": name, "smiles": smi, "ok": bool(r.get("ok")), "error": r.get("error", ""),
                       "label_s": r.get("wall_s"), "_result": r}
                for t in self.goal.targets:
                    row[f"{t}_label"] = float(r[t]) if r.get("ok") and r.get(t) is not None else np.nan
                rows.append(row)
        cols = ["name", "smiles", "ok", "error", "label_s", "_result"] + [f"{t}_label" for t in self.goal.targets]
        return pd.DataFrame(rows, columns=cols)

    def batches(self, upto: int | None = None) -> list[pd.DataFrame]:
        out = []
        for d in sorted((self.out / "rounds").glob("[0-9][0-9]")):
            if (d / "batch.csv").exists() and (upto is None or int(d.name) <= upto):
                out.append(pd.read_csv(d / "batch.csv", keep_default_na=False, na_values=[""]))
        return out

    def best_verified(self) -> dict:
        """The best verified value of each max/min objective among molecules meeting every constraint (the
        incumbent of expected improvement)."""
        lab = self.labels()
        lab = lab[lab["ok"]]
        out = {}
        for o in self.goal.objectives:
            if o.kind not in ("max", "min") or not len(lab):
                continue
            ok = np.ones(len(lab), bool)
            for c in self.goal.constraints:
                ok &= c.holds(lab[f"{c.target}_label"].to_numpy())
            y = lab[f"{o.target}_label"].to_numpy()
            y = y[ok & np.isfinite(y)]
            if len(y):
                out[o.target] = float(y.max() if o.kind == "max" else y.min())
        return out

    def learn(self, k: int) -> None:
        """Fine-tune the base surrogate on every verified label so far (models/k)."""
        run = self.out / "models" / f"{k:02d}"
        if (run / "model" / "config.json").exists():
            return
        from elprop.core.units import TARGETS
        lab = self.labels(upto=k)
        lab = lab[lab["ok"]]
        rows = []
        for name, smi, r in zip(lab["name"], lab["smiles"], lab["_result"]):
            row = {"name": name, "smiles": smi}
            for c in ("homo", "lumo", "gap", "mu", "alpha"):
                if r.get(c) is not None:
                    row[f"{c} [{TARGETS[c].unit}]"] = r[c]
            rows.append(row)
        data = self.out / "models" / f"train_{k:02d}.csv"
        data.parent.mkdir(parents=True, exist_ok=True)
        _write_csv(data, pd.DataFrame(rows))
        self.log(f"round {k}: fine-tuning the surrogate on {len(lab)} verified molecules")
        cmd = [sys.executable, "-m", "elprop.cli.main", "train", "--init-model", str(self.cfg.model), "--data",
               str(data), "--n-train", "0.8", "--n-val", "0.2", "--replay", str(self.cfg.replay), "--epochs",
               str(self.cfg.finetune_epochs), "--lr", str(self.cfg.finetune_lr), "--seed", str(self.cfg.seed),
               "--out", str(run), "--allow-missing", "--new-fraction", str(self.cfg.finetune_new_fraction)] \
            + ([] if self.progress else ["--no-progress"])
        r = subprocess.run(cmd, capture_output=True, text=True)
        (run.parent / f"train_{k:02d}.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"fine-tuning after round {k} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")

    # --- results -----------------------------------------------------------------------------------------------
    def proposals(self) -> pd.DataFrame:
        """Every proposal of every round so far, with its prediction at proposal time, label and hit flag."""
        frames = self.batches()
        if not frames:
            return pd.DataFrame()
        prop = pd.concat(frames, ignore_index=True)
        lab = self.labels().drop(columns=["smiles", "_result"])
        prop = prop.merge(lab, on="name", how="left")
        prop["verified"] = prop["ok"].fillna(False).astype(bool)
        y = {t: prop[f"{t}_label"].to_numpy(dtype=float) for t in self.goal.targets}
        prop["hit"] = self.goal.hits(y) & prop["verified"].to_numpy()
        prop["value"] = self.goal.value(y)
        ref = self.novelty_reference()
        prop["novel"] = [None if ref is None else inchikey(s) not in ref for s in prop["smiles"]]
        return prop

    def assemble(self) -> pd.DataFrame:
        prop = self.proposals()
        if len(prop):
            _write_csv(self.out / "proposals.csv", prop)
        return prop

    def finish(self) -> dict:
        from elprop.design.report import enriched_substructures, write_report
        prop = self.assemble()
        enr = enriched_substructures(prop) if len(prop) else pd.DataFrame()
        if len(enr):
            _write_csv(self.out / "enriched.csv", enr)
        after = self.after_predictions(prop)
        write_report(self.out / "report.html", prop, self.goal, self.cfg, self.space, enr, after)
        return summarize(prop)

    def after_predictions(self, prop: pd.DataFrame) -> pd.DataFrame | None:
        """The final surrogate's predictions (fine-tuned on every verified label) for every verified proposal: how
        well it absorbed them (in sample; the per-round errors at proposal time are the out-of-sample view)."""
        if not self.cfg.finetune or not len(prop):
            return None
        final = self.out / "models" / f"{self.cfg.rounds:02d}" / "model"
        if not final.exists():
            return None
        from elprop.train.saved import load_model
        return self.predict(load_model(final), prop["smiles"].tolist())


def summarize(prop: pd.DataFrame) -> dict:
    """Hit rates per round and overall, hits per oracle call, the best value, novelty and diversity of hits."""
    if not len(prop):
        return {"rounds": [], "calls": 0, "hits": 0}
    rounds = []
    for k, g in prop.groupby("round"):
        rounds.append({"round": int(k), "calls": int(len(g)), "verified": int(g["verified"].sum()),
                       "hits": int(g["hit"].sum()), "hit_rate": float(g["hit"].mean())})
    hits = prop[prop["hit"]]
    return {"rounds": rounds, "calls": int(len(prop)), "verified": int(prop["verified"].sum()),
            "hits": int(len(hits)), "hit_rate": float(prop["hit"].mean()), "hits_per_call": float(len(hits) /
                                                                                                  len(prop)),
            "best_value": float(np.max(prop["value"])) if np.isfinite(prop["value"]).any() else None,
            "novel_hits": None if prop["novel"].isna().all() else int(hits["novel"].fillna(False).sum()),
            "hit_diversity": diversity(hits["smiles"].tolist()),
            "top10_auc": top_k_auc(prop["value"].to_numpy(), 10)}


def diversity(smiles: list[str]) -> float | None:
    """Mean pairwise Tanimoto distance (Morgan radius 2, 2,048 bits); None below two molecules."""
    if len(smiles) < 2:
        return None
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    d = [1 - x for i, f in enumerate(fps) for x in DataStructs.BulkTanimotoSimilarity(f, fps[i + 1:])]
    return float(np.mean(d))


def top_k_auc(values: np.ndarray, k: int = 10) -> float | None:
    """PMO-style area under the curve of the mean of the top-k values against oracle calls (Gao et al., NeurIPS
    2022), normalised by the number of calls; infeasible calls count as the worst feasible value seen."""
    v = np.asarray(values, dtype=float)
    if not np.isfinite(v).any():
        return None
    floor = np.nanmin(v[np.isfinite(v)])
    v = np.where(np.isfinite(v), v, floor)
    curve = [np.mean(np.sort(v[:i + 1])[::-1][:k]) for i in range(len(v))]
    return float(np.mean(curve))


def _read_smiles(path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if p.suffix.lower() == ".csv":
        df = pd.read_csv(p)
        col = next((c for c in df.columns if c.lower() == "smiles"), None)
        if col is None:
            raise InputError(f"{p}: no 'smiles' column")
        out = df[col].dropna().astype(str).tolist()
    else:
        out = [ln.split()[0] for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not out:
        raise InputError(f"{p}: no molecules")
    return out


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))

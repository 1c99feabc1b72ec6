"""Multi-fidelity prescreen for the design loop: cheap calculations on the surrogate's best candidates, lifted to
the DFT level by a Δ-model, with σ learned from every DFT verification.

Why: on design proposals (conjugated, strained, heteroatom-rich molecules far from QM9's bulk) the graph surrogate's
gap error is 0.3-0.5 eV, as wide as a 0.5 eV target window. A GFN2-xTB calculation costs seconds, and its orbital
energies carry most of the electronic structure that the surrogate has to extrapolate; what xTB gets wrong is
systematic and learnable. A small-basis DFT single point (``dft:6-31g``: B3LYP/6-31G, density fitting, a coarse
XC grid) costs more but differs from the QM9 level only by the basis. So each round,
for each **stage** of ``--prescreen`` in turn (``xtb``, ``dft:BASIS``, or a cascade such as ``xtb,dft:6-31g``):

1. the current estimates (at first the surrogate's mean, σ and acquisition) rank the candidates, and the stage's
   ``top`` best, kept apart by fingerprint similarity, get the stage's calculation (``elprop label --method xtb``
   or ``elprop label`` at the stage's level: the same seeded ETKDG + MMFF + xTB geometry that the DFT label will
   use; resumable, Dask-parallel, in ``OUT/prescreen`` for xTB and ``OUT/prescreen-dft-BASIS`` for DFT);
2. the stage's **Δ-model** adds to each value (HOMO, LUMO, gap, μ) a LightGBM correction learned on QM9 molecules
   (their B3LYP/6-31G(2df,p) value minus the stage's value at the QM9 geometry), from Morgan count fingerprints
   and the stage's values;
3. σ is the Δ-model's RMS error on held-out QM9 molecules until enough candidates are verified, then the RMS of
   their label − estimate (``verified_sigma``: the error on this run's own chemistry); the mean is not shifted;
4. the acquisition scores the candidates again with these means and σ; the next stage (or the batch) chooses
   among them.

Targets a stage does not give keep the earlier estimate. Each stage's reference set is computed once per machine
and cached (``qm9_reference``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from elprop.core.cache import atomic_write, cache_dir

XTB_TARGETS = ("homo", "lumo", "gap", "mu")  # what a prescreen stage gives in elprop's units (eV, D)
MIN_RECAL = 6  # verified candidates needed before their RMS error replaces the Δ-model's QM9 σ
FP_BITS = 1024


@dataclass(frozen=True)
class Stage:
    """One fidelity of the prescreen: ``xtb`` (GFN2-xTB) or ``dft:BASIS`` (B3LYP/BASIS single point)."""
    name: str
    method: str  # "xtb" or "dft" (elprop label's method)
    basis: str = ""

    @property
    def prefix(self) -> str:
        """Column prefix of its values (xtb_gap, dft_6_31g_gap ...)."""
        return "xtb" if self.method == "xtb" else "dft_" + "".join(c if c.isalnum() else "_" for c in self.basis)

    @property
    def folder(self) -> str:
        """Its labels folder inside the design run (xTB keeps the name ``prescreen`` of runs made before cascades)."""
        return "prescreen" if self.method == "xtb" else "prescreen-" + self.prefix.replace("_", "-")

    @property
    def label(self) -> str:
        return "GFN2-xTB" if self.method == "xtb" else f"B3LYP/{self.basis}"

    def settings(self) -> dict:
        """DFTSettings of the stage (xTB: the defaults, which only name charge and spin)."""
        from elprop.density.dft import DFTSettings
        if self.method == "xtb":
            return DFTSettings().to_dict()
        return DFTSettings(basis=self.basis, grid_level=1).to_dict()


def parse_prescreen(spec: str | None) -> list[Stage]:
    """``None``/``none`` (no prescreen), ``xtb``, ``dft:BASIS``, or stages joined by commas, cheapest first."""
    from elprop.core.dataset import InputError
    if spec in (None, "", "none"):
        return []
    stages = []
    for part in str(spec).split(","):
        part = part.strip().lower()
        if part == "xtb":
            stages.append(Stage("xtb", "xtb"))
        elif part.startswith("dft:") and len(part) > 4:
            basis = part[4:]
            try:
                from pyscf import gto
                gto.basis.load(basis, "C")
            except Exception:  # noqa: BLE001 - PySCF raises several kinds for an unknown basis name
                raise InputError(f"--prescreen {spec!r}: PySCF knows no basis {basis!r}") from None
            stages.append(Stage(part, "dft", basis))
        else:
            raise InputError(f"--prescreen {spec!r}: stages are 'xtb' or 'dft:BASIS' (e.g. dft:6-31g), joined by commas")
    if len({s.name for s in stages}) < len(stages):
        raise InputError(f"--prescreen {spec!r}: a stage appears twice")
    return stages


def stage_numbers(spec, n_stages: int, defaults: list[int], what: str) -> list[int]:
    """One positive integer per stage from ``spec`` (an int, 'N,M,...', or None); missing ones from ``defaults``."""
    from elprop.core.dataset import InputError
    if spec is None or n_stages == 0:  # no prescreen: a stored default (a resumed run's config) means nothing
        return list(defaults[:n_stages])
    try:
        vals = [int(x) for x in str(spec).split(",") if str(x).strip()]
    except ValueError:
        raise InputError(f"{what} {spec!r}: whole numbers, one per prescreen stage, joined by commas") from None
    if len(vals) > n_stages or any(v < 1 for v in vals):
        raise InputError(f"{what} {spec!r}: at most one positive number per prescreen stage ({n_stages})")
    return vals + defaults[len(vals):n_stages]


def level_values(r: dict) -> dict:
    """HOMO, LUMO, gap [eV] and |μ| [D] from ``xtb_single_point``'s or ``run_scf``'s result (or a label result)."""
    if "homo_eV" in r:
        mu = np.linalg.norm(np.asarray(r["dipole_D"], dtype=float))
        return {"homo": r["homo_eV"], "lumo": r["lumo_eV"], "gap": r["lumo_eV"] - r["homo_eV"], "mu": float(mu)}
    return {t: (float(r[t]) if r.get(t) is not None else np.nan) for t in XTB_TARGETS}


def _chunk(stage: Stage, args):
    from elprop.density.dft import DFTSettings, run_scf
    from elprop.label.compute import xtb_single_point
    rows = []
    for name, z, pos in args:
        try:
            if stage.method == "xtb":
                res = xtb_single_point(z, pos)
            else:
                res = run_scf(z, pos, DFTSettings(**stage.settings()), attempts=[{"name": "diis"},
                                                                                 {"name": "level_shift",
                                                                                  "level_shift": 0.5}])
                if not res["ok"]:
                    raise RuntimeError("SCF did not converge")
            rows.append({"name": name, **{f"{stage.prefix}_{t}": v for t, v in level_values(res).items()}})
        except Exception as e:  # noqa: BLE001 - an SCF failure drops the molecule, not the reference set
            rows.append({"name": name, "error": f"{type(e).__name__}: {e}"})
    return rows


def qm9_reference(stage: Stage, n: int, seed: int = 11, workers: int = 2, progress: bool = True,
                  log=print) -> pd.DataFrame:
    """The stage's single points of ``n`` seeded QM9 molecules at their QM9 (B3LYP) geometries, beside QM9's
    labels: name, smiles, PREFIX_homo/lumo/gap/mu, homo/lumo/gap/mu. Computed in chunks (500 molecules for xTB,
    20 for DFT) that are each saved as they finish (a killed run resumes), then cached as one file. xTB: about
    30-60 ms per molecule and core."""
    from importlib import metadata

    from elprop.data.load import DataSpec, load_data
    key = f"qm9{stage.prefix.replace('_', '-')}-{metadata.version('qm9pack')}-{n}-seed{seed}"
    final = cache_dir() / f"{key}.csv"
    if final.exists():
        return pd.read_csv(final)
    ds = load_data(DataSpec("qm9", limit=n, seed=seed))
    parts = cache_dir() / key
    parts.mkdir(parents=True, exist_ok=True)
    o = ds.offsets
    size = 500 if stage.method == "xtb" else 20
    chunks = [list(range(s, min(s + size, len(ds)))) for s in range(0, len(ds), size)]
    todo = [(j, c) for j, c in enumerate(chunks) if not (parts / f"{j:04d}.csv").exists()]
    if todo:
        log(f"Δ-model reference: {stage.label} on {len(ds)} QM9 molecules ({len(todo)} of {len(chunks)} chunks "
            "to do)")
        t0 = time.time()
        jobs = [[(str(ds.names[i]), ds.z[o[i]:o[i + 1]], ds.pos[o[i]:o[i + 1]]) for i in c] for _, c in todo]
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), desc=f"{stage.label} reference", unit="chunk")

        def save(j, rows):
            atomic_write(parts / f"{j:04d}.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
            if bar is not None:
                bar.update(1)
        if workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            from functools import partial
            # spawned, not forked: a fork after tblite or torch has started its OpenMP threads in this process
            # hangs the workers on a lock copied in its held state
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
                for (j, _), rows in zip(todo, ex.map(partial(_chunk, stage), jobs)):
                    save(j, rows)
        else:
            for (j, _), job in zip(todo, jobs):
                save(j, _chunk(stage, job))
        if bar is not None:
            bar.close()
        log(f"Δ-model reference done in {time.time() - t0:.0f} s")
    df = pd.concat([pd.read_csv(parts / f"{j:04d}.csv") for j in range(len(chunks))], ignore_index=True)
    lab = pd.DataFrame({"name": [str(x) for x in ds.names], "smiles": list(ds.smiles)})
    for t in XTB_TARGETS:
        lab[t] = ds.y[:, ds.target_names.index(t)]
    df = lab.merge(df, on="name")
    if "error" in df:
        df = df[df["error"].isna()].drop(columns=["error"])
    atomic_write(final, lambda tmp: df.to_csv(tmp, index=False))
    return df


def qm9_xtb_reference(n: int = 10000, seed: int = 11, workers: int = 2, progress: bool = True, log=print) -> pd.DataFrame:
    """``qm9_reference`` of the GFN2-xTB stage (columns xtb_homo/lumo/gap/mu)."""
    return qm9_reference(Stage("xtb", "xtb"), n, seed, workers, progress, log)


def fingerprints(smiles) -> np.ndarray:
    """Morgan radius-2 count fingerprints (FP_BITS), the Δ-model's structural features."""
    from elprop.design.gp import fingerprints as morgan_counts
    return morgan_counts(list(smiles), radius=2, size=FP_BITS).astype(np.float32)


class DeltaModel:
    """Per target, DFT ≈ value + LightGBM(fingerprint, values), where the values are a cheaper level's (columns
    ``PREFIX_homo/lumo/gap/mu``; ``prefix`` xtb by default), trained on QM9 (80 %), with its RMS error on the
    other 20 % as the σ it has before any candidate is verified."""

    def __init__(self, targets, seed: int = 0, prefix: str = "xtb"):
        self.targets = [t for t in targets if t in XTB_TARGETS]
        self.seed, self.prefix = seed, prefix
        self.models, self.rms = {}, {}

    def features(self, smiles, vals: pd.DataFrame) -> np.ndarray:
        cols = [f"{self.prefix}_{t}" for t in XTB_TARGETS]
        return np.hstack([fingerprints(list(smiles)), vals[cols].to_numpy(np.float32)])

    def fit(self, ref: pd.DataFrame) -> "DeltaModel":
        import lightgbm as lgb
        X = self.features(ref["smiles"], ref)
        perm = np.random.default_rng(self.seed).permutation(len(ref))
        cut = int(0.8 * len(ref))
        tr, ho = perm[:cut], perm[cut:]
        small = len(tr) < 2000  # a DFT reference of hundreds: fewer, shallower trees
        for t in self.targets:
            d = (ref[t] - ref[f"{self.prefix}_{t}"]).to_numpy()
            m = lgb.LGBMRegressor(n_estimators=300 if small else 800, learning_rate=0.05,
                                  num_leaves=15 if small else 63, subsample=0.8, subsample_freq=1,
                                  colsample_bytree=0.5, random_state=self.seed, n_jobs=2, verbose=-1)
            m.fit(X[tr], d[tr])
            self.models[t] = m
            self.rms[t] = float(np.sqrt(np.mean((m.predict(X[ho]) - d[ho]) ** 2))) if len(ho) else float("nan")
        return self

    def predict(self, smiles, vals: pd.DataFrame) -> dict:
        """Per target, the DFT-level estimate value + Δ for each molecule (NaN where the cheap level failed)."""
        X = self.features(smiles, vals)
        return {t: vals[f"{self.prefix}_{t}"].to_numpy(float) + self.models[t].predict(X) for t in self.targets}


def verified_sigma(est: np.ndarray, label: np.ndarray) -> float | None:
    """The RMS of label − estimate over the verified candidates (each estimate the Δ-model's, which never saw
    them): σ for the next candidates, in place of the Δ-model's error on QM9. None with fewer than MIN_RECAL.

    Only σ is learned from the verifications, not the mean. Shifting every estimate by the verified ones' mean
    offset, or by a Tanimoto-kernel GP over their residuals, was tried on the verified proposals of earlier design
    runs (fit on rounds ≤ k of every method, test on round k + 1): both did worse than the Δ-model alone (fraction
    within 0.25 eV 0.49/0.43/0.64 and 0.57/0.50/0.64 against 0.65/0.50/0.70), because each round's chemistry
    carries its own bias. A line fitted on them was worse still, flattening the candidates onto the labels' mean."""
    ok = np.isfinite(est) & np.isfinite(label)
    r = (label - est)[ok]
    if len(r) < MIN_RECAL:
        return None
    return float(np.sqrt(np.mean(r ** 2)))


def read_results(folder: Path, smiles, prefix: str = "xtb") -> pd.DataFrame:
    """A prescreen stage's values of ``smiles`` from its labels folder (columns PREFIX_homo/lumo/gap/mu; NaN where
    missing or failed)."""
    import json

    from elprop.label.run import item_key
    rows = []
    for s in smiles:
        p = Path(folder) / "results" / f"{item_key(s)}.json"
        r = json.loads(p.read_text()) if p.exists() else {}
        vals = level_values(r) if r.get("ok") else {t: np.nan for t in XTB_TARGETS}
        rows.append({"smiles": s, **{f"{prefix}_{t}": v for t, v in vals.items()}})
    return pd.DataFrame(rows)

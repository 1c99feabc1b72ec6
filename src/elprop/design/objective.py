"""What a design run wants: objectives and constraints on predicted targets, their acquisition and their hits.

Forms (a unit may follow a number; it must be the model's unit for that target):

  T=LO:HI        a window, e.g. ``gap=3.0:3.5`` or ``gap=3.0:3.5eV``: land inside it
  max:T[:V]      maximise T (``max:mu``); with V, a verified value ≥ V counts as a hit
  min:T[:V]      minimise T; with V, a verified value ≤ V counts as a hit
  T>V, T<V       a constraint (``gap>6``); >= and <= are read the same way

With the surrogate's mean m and σ per molecule (Y ~ N(m, σ²)):
  - a window scores P(LO ≤ Y ≤ HI);
  - max/min scores the expected improvement over the best verified value (``ei``), the probability of reaching
    the hit threshold V, or of improving on the best verified value where no V is given (``pi``), the upper
    (lower) confidence bound m ± κσ (``ucb``) or the mean (``greedy``). ``auto`` (the default) is ``pi`` when
    every max/min objective has a threshold (hits are what is wanted) and ``ei`` otherwise;
  - a constraint multiplies the score by P(Y satisfies it).
Several objectives combine by weights (the sum of weight × score, each max/min score standardised) or by Pareto
rank (non-dominated sorting of the per-objective scores; ties by their sum).

A verified molecule is a *hit* when its labels lie in every window, satisfy every constraint and reach every
max/min threshold that was given.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from elprop.core.dataset import InputError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_UNIT = r"\s*([A-Za-z^0-9/()*. ]*?)\s*"
ACQUISITIONS = ("ei", "pi", "ucb", "greedy")


@dataclass(frozen=True)
class Objective:
    kind: str  # "window", "max" or "min"
    target: str
    lo: float | None = None
    hi: float | None = None
    threshold: float | None = None  # max/min: the hit threshold
    text: str = ""

    def describe(self, unit: str) -> str:
        if self.kind == "window":
            return f"{self.target} in [{self.lo:g}, {self.hi:g}] {unit}"
        extra = "" if self.threshold is None else f" (hit: {'≥' if self.kind == 'max' else '≤'} " \
                                                  f"{self.threshold:g} {unit})"
        return f"{'maximise' if self.kind == 'max' else 'minimise'} {self.target}{extra}"


@dataclass(frozen=True)
class Constraint:
    target: str
    op: str  # ">" or "<"
    value: float
    text: str = ""

    def holds(self, y):
        y = np.asarray(y, dtype=float)
        return (y > self.value) if self.op == ">" else (y < self.value)


@dataclass
class Goal:
    """Objectives, constraints and how they combine, checked against a model's targets and units."""
    objectives: list[Objective]
    constraints: list[Constraint] = field(default_factory=list)
    units: dict = field(default_factory=dict)
    weights: list[float] | None = None
    combine: str = "weighted"  # or "pareto"
    acquisition: str = "ei"
    kappa: float = 1.0
    acquisition_auto: bool = False  # chosen by ``auto``: a resumed run keeps the acquisition it started with

    @property
    def targets(self) -> list[str]:
        return list(dict.fromkeys([o.target for o in self.objectives] + [c.target for c in self.constraints]))

    def describe(self) -> list[str]:
        out = [o.describe(self.units.get(o.target, "")) for o in self.objectives]
        out += [f"constraint {c.target} {c.op} {c.value:g} {self.units.get(c.target, '')}" for c in self.constraints]
        return out

    def to_dict(self) -> dict:
        return {"objectives": [o.text for o in self.objectives], "constraints": [c.text for c in self.constraints],
                "weights": self.weights, "combine": self.combine, "acquisition": self.acquisition,
                "kappa": self.kappa, "units": {t: self.units.get(t) for t in self.targets},
                "described": self.describe()}

    # --- scores from the surrogate -----------------------------------------------------------------------------
    def scores(self, mean: dict, std: dict, best: dict | None = None) -> np.ndarray:
        """One acquisition score per molecule (larger is better). ``mean``/``std``: target -> array; ``best``:
        target -> the best verified value so far (for expected improvement; None: the best predicted mean)."""
        per = self.objective_scores(mean, std, best)
        feas = self.feasibility(mean, std)
        if self.combine == "pareto" and len(per) > 1:
            return _pareto_score(np.stack(per, axis=1), feas)
        w = self.weights or [1.0] * len(per)
        return sum(wi * s for wi, s in zip(w, per)) * feas

    def objective_scores(self, mean: dict, std: dict, best: dict | None = None) -> list[np.ndarray]:
        best = best or {}
        out = []
        for o in self.objectives:
            m, s = np.asarray(mean[o.target], float), np.maximum(np.asarray(std[o.target], float), 1e-9)
            if o.kind == "window":
                out.append(norm.cdf((o.hi - m) / s) - norm.cdf((o.lo - m) / s))
                continue
            sign = 1.0 if o.kind == "max" else -1.0
            if self.acquisition == "greedy":
                v = sign * m
            elif self.acquisition == "ucb":
                v = sign * m + self.kappa * s
            elif self.acquisition == "pi":  # P(reaching the threshold), else P(improving on the incumbent)
                inc = o.threshold if o.threshold is not None else best.get(o.target)
                inc = sign * (np.nanmax(sign * m) if inc is None else inc)
                v = norm.cdf((sign * m - inc) / s)
            else:  # expected improvement over the incumbent
                inc = best.get(o.target)
                inc = sign * (np.nanmax(sign * m) if inc is None else inc)
                z = (sign * m - inc) / s
                v = s * (z * norm.cdf(z) + norm.pdf(z))
            if len(self.objectives) > 1:  # comparable with window probabilities: standardised
                v = (v - np.nanmean(v)) / (np.nanstd(v) + 1e-12)
            out.append(v)
        return out

    def feasibility(self, mean: dict, std: dict) -> np.ndarray:
        n = len(next(iter(mean.values())))
        p = np.ones(n)
        for c in self.constraints:
            m, s = np.asarray(mean[c.target], float), np.maximum(np.asarray(std[c.target], float), 1e-9)
            z = (c.value - m) / s
            p = p * (norm.sf(z) if c.op == ">" else norm.cdf(z))
        return p

    # --- verified labels ---------------------------------------------------------------------------------------
    def hits(self, labels: dict) -> np.ndarray:
        """Hit flags of verified molecules (``labels``: target -> array; NaN counts as a miss)."""
        n = len(next(iter(labels.values())))
        ok = np.ones(n, dtype=bool)
        for o in self.objectives:
            y = np.asarray(labels[o.target], float)
            if o.kind == "window":
                ok &= (y >= o.lo) & (y <= o.hi)
            elif o.threshold is not None:
                ok &= (y >= o.threshold) if o.kind == "max" else (y <= o.threshold)
            else:
                ok &= np.isfinite(y)
        for c in self.constraints:
            ok &= c.holds(labels[c.target])
        return ok

    def value(self, labels: dict) -> np.ndarray:
        """The first objective's figure of merit for verified molecules, larger is better: minus the distance
        to a window (0 inside it), or the value itself for max (its negative for min). Infeasible: -inf."""
        o = self.objectives[0]
        y = np.asarray(labels[o.target], float)
        if o.kind == "window":
            v = -np.maximum(0.0, np.maximum(o.lo - y, y - o.hi))
        else:
            v = y if o.kind == "max" else -y
        feas = np.ones(len(y), dtype=bool)
        for c in self.constraints:
            feas &= c.holds(labels[c.target])
        return np.where(feas & np.isfinite(v), v, -np.inf)


def _pareto_score(P: np.ndarray, feas: np.ndarray) -> np.ndarray:
    """Pareto rank (0 best) turned into a score, feasibility-weighted; ties broken by the sum of scores."""
    ranks = pareto_ranks(P * feas[:, None])
    tie = P.sum(axis=1)
    tie = (tie - tie.min()) / (np.ptp(tie) + 1e-12)
    return -ranks + 0.5 * tie


def pareto_ranks(P: np.ndarray) -> np.ndarray:
    """Non-dominated sorting (larger is better in every column): 0 for the first front, 1 for the next, …"""
    n = len(P)
    ranks = np.full(n, -1)
    left = np.arange(n)
    r = 0
    while len(left):
        Q = P[left]
        dominated = np.array([np.any(np.all(Q >= q, axis=1) & np.any(Q > q, axis=1)) for q in Q])
        ranks[left[~dominated]] = r
        left = left[dominated]
        r += 1
    return ranks


def _number(text: str, target: str, units: dict, what: str) -> float:
    m = re.fullmatch(rf"\s*({_NUM}){_UNIT}", text)
    if not m:
        raise InputError(f"{what}: {text!r} is not a number (with an optional unit)")
    value, unit = float(m.group(1)), m.group(2).strip()
    want = units.get(target)
    if unit and want and unit.replace(" ", "") != want.replace(" ", ""):
        raise InputError(f"{what}: the model predicts {target} in {want}, not {unit}; give the value in {want}")
    if not math.isfinite(value):
        raise InputError(f"{what}: {text!r} is not a finite number")
    return value


def _check_target(t: str, units: dict, what: str) -> str:
    t = t.strip()
    if t not in units:
        raise InputError(f"{what}: the model has no target {t!r}; it predicts {', '.join(units)}")
    return t


def parse_objective(text: str, units: dict) -> Objective:
    what = f"--objective {text!r}"
    s = text.strip()
    m = re.fullmatch(r"(max|min)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::(.+))?", s)
    if m:
        t = _check_target(m.group(2), units, what)
        thr = _number(m.group(3), t, units, what) if m.group(3) else None
        return Objective(m.group(1), t, threshold=thr, text=s)
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^:]+):(.+)", s)
    if m:
        t = _check_target(m.group(1), units, what)
        hi_text = m.group(3)
        um = re.fullmatch(rf"\s*({_NUM}){_UNIT}", hi_text)
        unit = um.group(2).strip() if um else ""
        lo = _number(m.group(2) + (unit if re.fullmatch(rf"\s*{_NUM}\s*", m.group(2)) else ""), t, units, what)
        hi = _number(hi_text, t, units, what)
        if lo > hi:
            raise InputError(f"{what}: the window's low end {lo:g} is above its high end {hi:g}")
        return Objective("window", t, lo, hi, text=s)
    raise InputError(f"{what}: write a window T=LO:HI (gap=3.0:3.5), max:T or min:T (max:mu), "
                     "optionally max:T:V for a hit threshold")


def parse_constraint(text: str, units: dict) -> Constraint:
    what = f"--constraint {text!r}"
    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*(.+)", text)
    if not m:
        raise InputError(f"{what}: write T>V or T<V, e.g. gap>6")
    t = _check_target(m.group(1), units, what)
    return Constraint(t, m.group(2)[0], _number(m.group(3), t, units, what), text=text.strip())


def make_goal(objectives, constraints, units: dict, *, weights=None, combine: str = "weighted",
              acquisition: str = "auto", kappa: float = 1.0) -> Goal:
    """A Goal from the command line's strings; every mistake is an InputError naming the option."""
    if not objectives:
        raise InputError("give at least one --objective, e.g. --objective gap=3.0:3.5")
    objs = [parse_objective(o, units) for o in objectives]
    cons = [parse_constraint(c, units) for c in (constraints or [])]
    if weights is not None:
        w = [float(x) for x in str(weights).split(",")] if isinstance(weights, str) else [float(x) for x in weights]
        if len(w) != len(objs):
            raise InputError(f"--weights: {len(w)} weight(s) for {len(objs)} objective(s)")
        if any(not math.isfinite(x) or x < 0 for x in w):
            raise InputError("--weights must be finite and non-negative")
        weights = w
    if combine not in ("weighted", "pareto"):
        raise InputError(f"--combine {combine!r}: weighted or pareto")
    auto = acquisition == "auto"
    if auto:  # hits wanted (every max/min has a threshold): their probability; else EI
        extreme = [o for o in objs if o.kind != "window"]
        acquisition = "pi" if extreme and all(o.threshold is not None for o in extreme) else "ei"
    if acquisition not in ACQUISITIONS:
        raise InputError(f"--acquisition {acquisition!r}: one of auto, {', '.join(ACQUISITIONS)}")
    return Goal(objs, cons, dict(units), weights, combine, acquisition, float(kappa), auto)

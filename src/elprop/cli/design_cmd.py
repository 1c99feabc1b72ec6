"""``elprop design --objective ... --out DIR``: propose molecules with a wanted property, verify them with DFT and
learn from every verification."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from elprop.core.dataset import InputError

EPILOG = """examples:
  elprop design --objective "gap=3.0:3.5" --novel-only --out design/lowgap
        molecules with a B3LYP gap of 3.0-3.5 eV that QM9 lacks: 4 rounds of 12 DFT checks, fine-tuning after each
  elprop design --objective "max:mu" --constraint "gap>6" --out design/polar
        the largest dipole moment among molecules with a gap above 6 eV
  elprop design --objective "gap=3.0:3.5" --generator random --no-finetune --out design/random
        the random baseline: molecules from the generator, no surrogate, same DFT budget
  elprop design --objective "gap=6:7" --oracle xtb --rounds 2 --batch 4 --out /tmp/try
        a quick try with GFN2-xTB standing in for DFT (seconds per molecule; not QM9-level labels)

Objectives: T=LO:HI (a window; a unit may follow: gap=3.0:3.5eV), max:T or min:T (max:T:V counts values
>= V as hits); constraints T>V or T<V. Rerun the same command after a kill: finished rounds, verified
molecules and fine-tuned models are kept, and no DFT calculation is repeated. DIR/report.html shows the
result; DIR/proposals.csv lists every proposal. See docs/design.md.
"""


def add_parser(sub):
    p = sub.add_parser("design", help="inverse design: molecules with a wanted property, verified by DFT",
                       description="Propose molecules with a wanted property with a genetic algorithm steered by a "
                                   "surrogate's mean and σ, verify each round with DFT (elprop label), fine-tune "
                                   "the surrogate on every verified label, and repeat.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _goal_args(p)
    s = p.add_argument_group("search space")
    s.add_argument("--elements", default="C,N,O,F", help="heavy elements (default: C,N,O,F; H is implied)")
    s.add_argument("--max-heavy", type=int, default=9, help="at most this many heavy atoms (default: 9)")
    s.add_argument("--min-heavy", type=int, default=None,
                   help="at least this many heavy atoms (default: 3; every molecule of 1-2 heavy atoms is known, "
                        "and QM9 holds 8 of them, so the surrogate's σ there is meaningless)")
    s.add_argument("--no-filters", action="store_true", help="also propose unstable or reactive groups")
    s.add_argument("--sa-max", type=float, help="drop molecules with a synthetic-accessibility score above this")
    s.add_argument("--novel-only", action="store_true", help="propose only molecules not in --novelty-reference")
    s.add_argument("--novelty-reference", default="qm9",
                   help="'qm9' (default; by InChIKey), a SMILES/CSV file, or 'none'")
    r = p.add_argument_group("loop")
    r.add_argument("--out", required=True, help="output folder (created; rerun to resume)")
    r.add_argument("--rounds", type=int, default=4, help="rounds of proposal and verification (default: 4)")
    r.add_argument("--batch", type=int, default=12, help="molecules verified per round (default: 12)")
    r.add_argument("--generator", default="ga", choices=("ga", "random", "library"),
                   help="ga: genetic algorithm steered by the surrogate (default); random: random molecules "
                        "from the generator's moves, no surrogate; library: rank --library by the surrogate")
    r.add_argument("--library", help="with --generator library: a SMILES or CSV file")
    r.add_argument("--no-finetune", action="store_true", help="keep the surrogate fixed (no fine-tuning)")
    r.add_argument("--gp", action="store_true",
                   help="also correct the surrogate by a Gaussian process (BoTorch, Tanimoto kernel on Morgan "
                        "counts) over its residuals on the verified molecules, refitted every round")
    cal = r.add_mutually_exclusive_group()
    cal.add_argument("--calibrate", dest="calibrate", action="store_true", default=None,
                     help="scale σ by how far off the surrogate was on the molecules verified so far (the RMS of "
                          "(prediction - label) / σ at proposal time, at least 1, from 5 labels on): on by default "
                          "in a new run; a resumed run keeps its setting")
    cal.add_argument("--no-calibrate", dest="calibrate", action="store_false", help="keep the surrogate's own σ")
    r.add_argument("--prescreen", default="none", metavar="STAGES",
                   help="cheap calculations on the best candidates before DFT: xtb (GFN2-xTB), dft:BASIS (a "
                        "B3LYP/BASIS single point, e.g. dft:6-31g), or a cascade cheapest first (xtb,dft:6-31g). "
                        "Each stage takes the best --prescreen-top candidates so far, lifts its values to the DFT "
                        "level by a Δ-model trained on QM9, with σ from the verified ones, and scores them again; "
                        "the batch is chosen on the last stage's estimates (default: none, the surrogate alone)")
    r.add_argument("--prescreen-top", metavar="N[,N]",
                   help="candidates per round sent to each prescreen stage (default: 100 for the first stage, "
                        "3 × --batch for later ones; a DFT stage costs more per molecule than xTB)")
    r.add_argument("--prescreen-reference", metavar="N[,N]",
                   help="QM9 molecules whose single points at each stage's level train its Δ-model (default: "
                        "10000 for xtb, about 5 min on 2 cores; 500 for dft:BASIS); computed once per machine "
                        "and cached")
    r.add_argument("--oracle", default="dft", choices=("dft", "xtb"),
                   help="verification: dft (default; B3LYP/6-31G(2df,p) at a GFN2-xTB geometry, the QM9 level) or "
                        "xtb (GFN2-xTB, a stand-in for tests and quick tries)")
    r.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    a = p.add_argument_group("generator and learning details")
    a.add_argument("--population", type=int, default=100, help="GA population (default: 100)")
    a.add_argument("--offspring", type=int, default=200, help="GA children per generation (default: 200)")
    a.add_argument("--generations", type=int, default=6, help="GA generations per round (default: 6)")
    a.add_argument("--seed-pool", type=int, default=2000,
                   help="QM9 molecules sampled to start the GA from (the best --population of them; default: 2000)")
    a.add_argument("--max-similarity", type=float, default=0.7,
                   help="no two molecules of a batch above this Tanimoto similarity (default: 0.7)")
    a.add_argument("--finetune-epochs", type=int, default=10, help="fine-tuning epochs per round (default: 10)")
    a.add_argument("--finetune-lr", type=float, default=3e-4, help="fine-tuning learning rate (default: 3e-4)")
    a.add_argument("--finetune-new-fraction", type=float, default=0.0, metavar="F",
                   help="repeat the verified molecules to about F of each fine-tuning epoch beside the replayed ones "
                        "(`train --new-fraction`; default 0: each once)")
    a.add_argument("--replay", type=int, default=2000,
                   help="QM9 training molecules replayed in each fine-tuning (default: 2000)")
    a.add_argument("--labels-dir", help="the oracle's folder (default: OUT/labels); runs that share one never "
                                        "compute the same molecule twice")
    a.add_argument("--workers", type=int, default=2,
                   help="Dask workers of the oracle (default: 2; 0 runs it in this process)")
    a.add_argument("--scheduler", help="address of an existing Dask scheduler for the oracle (tcp://host:8786)")
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _goal_args(p, acquisitions=("auto", "ei", "pi", "ucb", "greedy")) -> None:
    g = p.add_argument_group("goal")
    g.add_argument("--objective", action="append", required=True,
                   help="T=LO:HI, max:T[:V] or min:T[:V] (repeat for several objectives)")
    g.add_argument("--constraint", action="append", default=[], help="T>V or T<V (repeatable)")
    g.add_argument("--weights", help="weights of several objectives, comma-separated (default: equal)")
    g.add_argument("--combine", default="weighted", choices=("weighted", "pareto"),
                   help="several objectives: weighted sum of scores (default) or Pareto rank")
    names = {"auto": "pi where every max/min objective has a hit threshold, else ei",
             "ei": "expected improvement over the best verified value",
             "pi": "the probability of reaching the hit threshold (of improving on the best verified value "
                   "without one)", "ucb": "the upper confidence bound", "greedy": "the mean"}
    g.add_argument("--acquisition", default=acquisitions[0], choices=acquisitions,
                   help="score of max/min objectives: " + "; ".join(f"{a} = {names[a]}" for a in acquisitions) +
                        f" (default: {acquisitions[0]}); a window always scores the probability of landing in it")
    g.add_argument("--kappa", type=float, default=1.0, help="UCB's κ in mean + κσ (default: 1)")
    g.add_argument("--model", default="shipped", help="the surrogate: 'shipped' (default) or a saved model folder")


def _model_and_goal(args):
    """(model folder, Goal) from the goal options, checked against the model's targets and units."""
    from elprop.design.objective import make_goal
    from elprop.pretrained import model_path
    from elprop.train.saved import load_model
    model_dir = model_path() if args.model == "shipped" else Path(args.model)
    model = load_model(model_dir)
    if not hasattr(model, "specs") or not hasattr(model, "nets"):
        raise InputError(f"--model {model_dir}: needs a property model (graph, 3D or volumetric family)")
    units = {t.name: t.unit for t in model.specs}
    return model_dir, make_goal(args.objective, args.constraint, units, weights=args.weights,
                                combine=args.combine, acquisition=args.acquisition, kappa=args.kappa)


SCREEN_EPILOG = """examples:
  elprop screen library.smi --objective "gap=3.0:3.5" --out screens/lowgap --workers 2
  elprop screen big.csv --objective "max:mu" --constraint "gap>6" --chunk 20000 --out screens/polar

Writes DIR/parts/part-NNNNNN.parquet (every molecule: prediction ± σ per goal target, warning, score), DIR/top.csv
(the best --top) and DIR/summary.json (molecules/s). Rerun the same command after a kill: finished chunks are
kept. Memory stays flat however large the library: it is read a chunk at a time.
"""


def add_screen_parser(sub):
    p = sub.add_parser("screen", help="rank a library of molecules by an objective (chunked, parallel, resumable)",
                       description="Predict and score every molecule of a SMILES or CSV library by the same "
                                   "objectives as elprop design, in chunks on Dask workers.",
                       epilog=SCREEN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("library", help="a SMILES file (.smi/.txt: first token per line) or a CSV with a smiles column")
    _goal_args(p, acquisitions=("greedy", "ucb"))  # no verified values to improve on: no expected improvement
    p.add_argument("--out", required=True, help="output folder (created; rerun to resume)")
    p.add_argument("--chunk", type=int, default=5000, help="molecules per chunk (default: 5000)")
    p.add_argument("--top", type=int, default=100, help="rows of top.csv (default: 100)")
    p.add_argument("--format", default="parquet", choices=("parquet", "csv"), help="part files (default: parquet)")
    p.add_argument("--workers", type=int, default=2, help="Dask workers (default: 2; 0 runs in this process)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="torch threads per worker (default: 1)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:8786)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_screen)


def run_screen(args) -> int:
    from elprop.design.screen import screen
    if args.workers < 0:
        raise InputError("--workers must be 0 or more")
    model_dir, goal = _model_and_goal(args)
    s = screen(args.library, goal, model_dir, args.out, chunk=args.chunk, workers=args.workers,
               scheduler=args.scheduler, fmt=args.format, top=args.top, threads=args.threads_per_worker,
               progress=not args.no_progress)
    print(json.dumps(s))
    return 0


def run(args) -> int:
    from elprop.design.loop import DesignConfig, DesignRun
    from elprop.design.space import SearchSpace

    model_dir, goal = _model_and_goal(args)
    for name in ("population", "offspring", "generations", "seed_pool", "finetune_epochs"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.max_similarity <= 1:
        raise InputError("--max-similarity must lie in (0, 1]")
    if not 0 <= args.finetune_new_fraction < 1:
        raise InputError(f"--finetune-new-fraction {args.finetune_new_fraction:g}: give a fraction in [0, 1)")
    if args.replay < 0 or args.workers < 0:
        raise InputError("--replay and --workers must be 0 or more")
    space = SearchSpace(elements=tuple(e.strip() for e in args.elements.split(",") if e.strip()),
                        max_heavy=args.max_heavy, min_heavy=args.min_heavy, filters=not args.no_filters,
                        sa_max=args.sa_max)
    if args.generator == "library":
        if not args.library:
            raise InputError("--generator library needs --library FILE")
        if not Path(args.library).is_file():
            raise InputError(f"--library {args.library}: no such file")
    if args.novelty_reference not in ("qm9", "none") and not Path(args.novelty_reference).is_file():
        raise InputError(f"--novelty-reference {args.novelty_reference}: no such file")
    cfg = DesignConfig(model=str(model_dir), rounds=args.rounds, batch=args.batch, generator=args.generator,
                       library=args.library, finetune=not args.no_finetune, oracle=args.oracle, seed=args.seed,
                       population=args.population, seed_pool=args.seed_pool, generations=args.generations,
                       offspring=args.offspring, max_similarity=args.max_similarity, novel_only=args.novel_only,
                       novelty_reference=args.novelty_reference, finetune_epochs=args.finetune_epochs,
                       finetune_lr=args.finetune_lr, finetune_new_fraction=args.finetune_new_fraction,
                       replay=args.replay, workers=args.workers,
                       scheduler=args.scheduler, labels_dir=args.labels_dir, gp=args.gp,
                       calibrate=args.calibrate, prescreen=None if args.prescreen == "none" else args.prescreen,
                       prescreen_top=args.prescreen_top, prescreen_reference=args.prescreen_reference)
    for line in goal.describe():
        print(f"goal: {line}")
    summary = DesignRun(args.out, cfg, goal, space, progress=not args.no_progress).run()
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}))
    for r in summary.get("rounds", []):
        print(f"round {r['round']}: {r['hits']} hit(s) of {r['calls']} oracle call(s) ({r['hit_rate']:.0%})")
    print(f"report: {Path(args.out) / 'report.html'}; every proposal: {Path(args.out) / 'proposals.csv'}")
    return 0

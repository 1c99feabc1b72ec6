"""Run folders under ``--runs``: what kind each is, and what the page shows of it.

A folder is a run by what it holds (the files each command writes):
- ``training``: ``model/config.json`` and ``metrics.csv`` (``elprop train``);
- ``design``: ``proposals.csv`` (``elprop design``);
- ``screen``: ``summary.json`` and ``top.csv`` (``elprop screen``);
- ``labels``: ``labels.csv`` beside ``results/`` (``elprop label``);
- ``subgraph``: ``selected.csv`` or ``report.html`` with a ``model.json`` (``elprop subgraph fit``);
- ``materials``: ``learning_curve.csv`` (``elprop materials``).
Folders are searched two levels deep; a run's own subfolders are not runs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

KINDS = ("training", "design", "screen", "labels", "subgraph", "materials")


@dataclass
class Run:
    id: str
    path: Path
    kind: str

    @property
    def name(self) -> str:
        return self.path.name


def kind_of(d: Path) -> str | None:
    if (d / "model" / "config.json").is_file() and (d / "metrics.csv").is_file():
        return "training"
    if (d / "checkpoints").is_dir() and (d / "config.json").is_file() and not (d / "rounds").is_dir():
        return "training"  # still training: no model yet
    if (d / "proposals.csv").is_file():
        return "design"
    if (d / "summary.json").is_file() and (d / "top.csv").is_file():
        return "screen"
    if (d / "labels.csv").is_file() and (d / "results").is_dir():
        return "labels"
    if (d / "selected.csv").is_file() or ((d / "report.html").is_file() and (d / "model.json").is_file()):
        return "subgraph"
    if (d / "learning_curve.csv").is_file():
        return "materials"
    return None


def find_runs(roots: list[Path], depth: int = 2) -> list[Run]:
    """Every run folder under ``roots`` (the roots themselves included), sorted by kind then path."""
    runs, seen = [], set()

    def visit(d: Path, level: int):
        if not d.is_dir() or d.resolve() in seen:
            return
        seen.add(d.resolve())
        k = kind_of(d)
        if k:
            runs.append(Run(hashlib.sha1(str(d.resolve()).encode()).hexdigest()[:10], d, k))
            return
        if level < depth:
            for c in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
                visit(c, level + 1)
    for r in roots:
        visit(Path(r), 0)
    return sorted(runs, key=lambda r: (KINDS.index(r.kind), str(r.path)))


def progress(run: Run) -> tuple[bool, str]:
    """(finished, one line) of a run, read from what its command has written so far, so the page can follow a
    job started from the command line."""
    d = run.path
    try:
        if run.kind == "training":
            if (d / "metrics.csv").is_file():
                return True, "finished"
            cfg = json.loads((d / "config.json").read_text())
            members = sorted((d / "checkpoints").glob("member_*/history.csv")) or \
                sorted((d / "checkpoints").glob("*/history.csv"))
            if not members:
                return False, "starting (featurising or first epoch)"
            last = pd.read_csv(members[-1]).iloc[-1]
            return False, (f"training: member {len(members)} of {cfg.get('ensemble', 1)}, epoch {int(last['epoch'])} "
                           f"of at most {cfg.get('epochs')}, {float(last['time_s']):.0f} s")
        if run.kind == "design":
            cfg = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else {}
            total = cfg.get("design", {}).get("rounds")
            prop = pd.read_csv(d / "proposals.csv")
            rounds = int(prop["round"].max()) if len(prop) else 0
            verified = int(prop["verified"].sum()) if "verified" in prop else 0
            done = (d / "report.html").is_file() and total is not None and rounds >= total and verified == len(prop)
            return done, (f"{'finished: ' if done else ''}round {rounds} of {total}, {verified} of {len(prop)} "
                          f"proposals verified")
        if run.kind == "labels":
            res = list((d / "results").glob("*.json"))
            ok = sum('"ok": true' in f.read_text() for f in res)
            running = (d / ".lock").is_file()
            return not running, (f"{'labelling' if running else 'idle'}: {len(res)} molecule(s) done, {ok} ok, "
                                 f"{len(res) - ok} failed")
        if run.kind == "screen":
            s = json.loads((d / "summary.json").read_text())
            return True, f"finished: {s.get('molecules_now', '?')} molecules scored this call, {s.get('wall_s')} s"
    except (OSError, ValueError, KeyError, IndexError) as e:  # a file being written: say so, never fail the page
        return False, f"reading its files: {e}"
    return True, "finished"


def read_table(path: Path, page: int, per_page: int = 100, sort: str | None = None,
               descending: bool = False) -> tuple[pd.DataFrame, int]:
    """One page of a CSV (sorted by ``sort`` if it is a column) and the number of rows; large files are read once
    per request, never inlined whole."""
    df = pd.read_csv(path)
    if sort and sort in df.columns:
        df = df.sort_values(sort, ascending=not descending, kind="stable")
    n = len(df)
    page = max(1, page)
    return df.iloc[(page - 1) * per_page: page * per_page], n


def training_summary(d: Path) -> dict:
    cfg = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else {}
    metrics = pd.read_csv(d / "metrics.csv")
    plots = sorted(p.name for p in (d / "plots").glob("*.png")) if (d / "plots").is_dir() else []
    hist = pd.read_csv(d / "history.csv") if (d / "history.csv").is_file() else None
    return {"config": cfg, "metrics": metrics, "plots": plots, "history": hist}


def design_summary(d: Path) -> dict:
    prop = pd.read_csv(d / "proposals.csv")
    rounds = []
    for k, g in prop.groupby("round"):
        hit = g["hit"].astype(bool) if "hit" in g else pd.Series(False, index=g.index)
        rounds.append({"round": int(k), "calls": len(g), "hits": int(hit.sum()),
                       "hit_rate": float(hit.mean()) if len(g) else 0.0})
    return {"rounds": rounds, "n": len(prop), "columns": list(prop.columns)}


def _family(model_dir: Path) -> str | None:
    try:
        return json.loads((model_dir / "config.json").read_text()).get("model")
    except (OSError, ValueError):
        return None


def hk_models(roots: list[Path]) -> list[Path]:
    """Saved HK maps (hk-unet: density in, DFT density out) under the roots."""
    return [r.path / "model" for r in find_runs(roots)
            if r.kind == "training" and _family(r.path / "model") == "hk-unet"]


def model_dirs(roots: list[Path]) -> list[Path]:
    """Saved property models under the roots: training runs' ``model/`` folders (HK maps excepted: they predict
    densities) and design runs' fine-tuned ones."""
    found = find_runs(roots)
    out = [r.path / "model" for r in found if r.kind == "training" and _family(r.path / "model") != "hk-unet"]
    for r in found:
        if r.kind == "design":
            out += sorted(p.parent for p in (r.path / "models").glob("*/model/config.json"))
    return out


def history_figure(hist: pd.DataFrame) -> dict:
    """Plotly figure (as a dict): training and validation loss per epoch, one pair of lines per member."""
    data = []
    for m, g in hist.groupby("member"):
        for col, dash in (("train_l1_scaled", "dot"), ("val_l1_scaled", "solid")):
            if col in g:
                data.append({"x": g["epoch"].tolist(), "y": g[col].tolist(), "mode": "lines", "name": f"{col[:-10]} {m}",
                             "line": {"dash": dash}})
    return {"id": "history", "data": data,
            "layout": {"title": {"text": "learning history (scaled L1)"}, "xaxis": {"title": {"text": "epoch"}},
                       "yaxis": {"title": {"text": "loss"}, "type": "log"}, "height": 380}}


def design_figures(d: Path, max_points: int = 1000) -> list[dict]:
    """Predicted (at proposal time) against the oracle's label for the first goal target, by round, with y = x."""
    prop = pd.read_csv(d / "proposals.csv")
    target = next((c[:-len("_label")] for c in prop.columns if c.endswith("_label")), None)
    if target is None or f"{target}_pred" not in prop:
        return []
    ok = prop[prop[f"{target}_label"].notna()]
    n_all, title = len(ok), f"{target}: predicted when proposed vs oracle"
    if n_all > max_points:  # a page stays small: a seeded sample of the points
        ok = ok.sample(max_points, random_state=0).sort_values("round", kind="stable")
        title += f" ({max_points:,} of {n_all:,} shown)"
    data = [{"x": g[f"{target}_label"].tolist(), "y": g[f"{target}_pred"].tolist(), "mode": "markers",
             "name": f"round {k}", "text": g["smiles"].tolist(),
             "error_y": {"type": "data", "array": g[f"{target}_std"].tolist(), "visible": True}
             if f"{target}_std" in g else None}
            for k, g in ok.groupby("round")]
    if len(ok):
        lo = float(min(ok[f"{target}_label"].min(), ok[f"{target}_pred"].min()))
        hi = float(max(ok[f"{target}_label"].max(), ok[f"{target}_pred"].max()))
        data.append({"x": [lo, hi], "y": [lo, hi], "mode": "lines", "name": "y = x", "line": {"color": "#999"}})
    return [{"id": "parity", "data": data,
             "layout": {"title": {"text": title}, "height": 420,
                        "xaxis": {"title": {"text": f"{target}, oracle"}},
                        "yaxis": {"title": {"text": f"{target}, predicted ± σ"}}}}]


def substructures(d: Path, top: int = 40) -> list[dict]:
    """The selected subgraphs of a subgraph run (selected.csv), each drawn from its SMARTS."""
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D
    f = d / "selected.csv"
    if not f.is_file():
        return []
    out = []
    for _, r in pd.read_csv(f).head(top).iterrows():
        q = Chem.MolFromSmarts(str(r.get("smarts", "")))
        svg = ""
        if q is not None:
            try:
                q.UpdatePropertyCache(strict=False)
                dr = rdMolDraw2D.MolDraw2DSVG(140, 110)
                dr.drawOptions().clearBackground = False
                dr.DrawMolecule(q)
                dr.FinishDrawing()
                svg = dr.GetDrawingText()
                svg = svg[svg.index("<svg"):]
            except Exception:  # a pattern RDKit cannot lay out is listed without a drawing
                svg = ""
        out.append({"smarts": r.get("smarts"), "svg": svg,
                    **{k: r[k] for k in r.index if k != "smarts"}})
    return out

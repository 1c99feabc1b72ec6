"""The design run's report: hit rate per round, predicted against verified values before and after fine-tuning,
the best molecules drawn, and the substructures that set hits apart (elprop's sparse model over all subgraphs)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from elprop.core.cache import atomic_write

TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>elprop design: {{ title }}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:middle;text-align:right}td.l{text-align:left}
.mols{display:flex;flex-wrap:wrap;gap:8px}.mol{border:1px solid #ddd;padding:4px;font-size:85%;width:220px}
code{font-size:90%}.warn{color:#a40}</style></head><body>
<h1>elprop design: {{ title }}</h1>
<ul>{% for line in goal %}<li>{{ line }}</li>{% endfor %}
<li>surrogate: <code>{{ cfg.model }}</code>; generator: {{ cfg.generator }}; {{ cfg.rounds }} rounds of
{{ cfg.batch }}; fine-tuning after each round: {{ "yes" if cfg.finetune else "no" }}; oracle: {{ oracle }}</li>
{% if prescreen %}<li>prescreen before the oracle, each stage on the best candidates of the one before, lifted to
the oracle's level by a Δ-model: {% for p in prescreen %}{{ p.label }} on {{ p.top }} a round ({{ p.calls }} calls,
{{ "%.0f"|format(p.s) }} s){{ "; " if not loop.last }}{% endfor %} (not oracle calls)</li>{% endif %}
<li>search space: {{ space.rules }}, elements {{ space.elements|join(", ") }} (and H), at most {{ space.max_heavy }}
heavy atoms{% if space.unstable_groups %}, without {{ space.unstable_groups|length }} unstable groups
(config.json){% endif %}{% if space.sa_max %}, SA score ≤ {{ space.sa_max }}{% endif %}</li></ul>
<h2>Rounds</h2>
<table><tr><th>round</th><th>oracle calls</th><th>verified</th><th>hits</th><th>hit rate</th>
{% for t in targets %}<th>surrogate MAE on the round's proposals, {{ t }} [{{ units[t] }}]</th>{% endfor %}</tr>
{% for r in rounds %}<tr><td>{{ r.round }}</td><td>{{ r.calls }}</td><td>{{ r.verified }}</td><td>{{ r.hits }}</td>
<td>{{ "%.2f"|format(r.hit_rate) }}</td>{% for t in targets %}<td>{{ r.mae[t] }}</td>{% endfor %}</tr>{% endfor %}
<tr><th>all</th><td>{{ summary.calls }}</td><td>{{ summary.verified }}</td><td>{{ summary.hits }}</td>
<td>{{ "%.2f"|format(summary.hit_rate) }}</td>{% for t in targets %}<td></td>{% endfor %}</tr></table>
<p>The MAE is of the prediction each molecule had when it was proposed (by that round's surrogate), against the
oracle's value: it shows what each round's surrogate knew about the chemistry it proposed before seeing it. The
plot's crosses are the final model's predictions after fine-tuning on every verified molecule (in sample).
{% if cfg.finetune %}The final model: <code>models/{{ "%02d"|format(cfg.rounds) }}/model</code>.{% endif %}</p>
{{ plots|safe }}
<h2>Best molecules</h2><div class="mols">{% for m in best %}<div class="mol">{{ m.svg|safe }}<br>
<code>{{ m.smiles }}</code><br>{{ m.text }}{% if m.hit %} <b>hit</b>{% endif %}
{% if m.novel is not none %}<br>{{ "new (not in " ~ ref ~ ")" if m.novel else "in " ~ ref }}{% endif %}
{% if m.warning %}<br><span class="warn">{{ m.warning }}</span>{% endif %}</div>{% endfor %}</div>
<h2>Substructures that set hits apart</h2>
{% if enriched %}<p>A sparse logistic model over all subgraphs of the verified molecules (hit or not; gSpan with
branch and bound, <code>elprop.subgraph.sparse</code>). Positive coefficient: enriched among hits.</p>
<table><tr><th>substructure</th><th class="l">SMARTS</th><th>coefficient</th><th>in hits</th>
<th>in non-hits</th><th>Fisher p (one-sided)</th></tr>{% for e in enriched %}<tr><td>{{ e.svg|safe }}</td>
<td class="l"><code>{{ e.smarts }}</code></td><td>{{ "%.3f"|format(e.coefficient) }}</td><td>{{ e.in_hits }}</td>
<td>{{ e.in_nonhits }}</td><td>{{ "%.3g"|format(e.fisher_p) }}</td></tr>{% endfor %}</table>
{% else %}<p>Not enough verified hits and misses yet (at least 3 of each) to fit it.</p>{% endif %}
<p>Every proposal: proposals.csv. Written by elprop {{ version }}.</p></body></html>"""


def _svg(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    s = buf.getvalue()
    return s[s.index("<svg"):]


def _draw(smiles: str, size=(210, 160), highlight: str | None = None) -> str:
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return ""
    d = rdMolDraw2D.MolDraw2DSVG(*size)
    atoms = list(mol.GetSubstructMatch(Chem.MolFromSmarts(highlight))) if highlight else []
    rdMolDraw2D.PrepareAndDrawMolecule(d, mol, highlightAtoms=atoms)
    d.FinishDrawing()
    t = d.GetDrawingText()
    return t[t.index("<svg"):]


def round_table(prop: pd.DataFrame, goal) -> list[dict]:
    rows = []
    for k, g in prop.groupby("round"):
        mae = {}
        for t in goal.targets:
            e = np.abs(g[f"{t}_pred"] - g[f"{t}_label"]).dropna()
            mae[t] = f"{e.mean():.3f}" if len(e) else "—"
        rows.append({"round": int(k), "calls": len(g), "verified": int(g["verified"].sum()),
                     "hits": int(g["hit"].sum()), "hit_rate": float(g["hit"].mean()), "mae": mae})
    return rows


def plots(prop: pd.DataFrame, goal, after: pd.DataFrame | None) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = []
    rt = round_table(prop, goal)
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    ax.plot([r["round"] for r in rt], [r["hit_rate"] for r in rt], "o-")
    ax.set_xlabel("round")
    ax.set_ylabel("verified hit rate")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks([r["round"] for r in rt])
    out.append(_svg(fig))
    t = goal.objectives[0].target
    unit = goal.units.get(t, "")
    v = prop[prop["verified"]]
    if len(v):
        fig, ax = plt.subplots(figsize=(4.2, 4.0))
        ax.scatter(v[f"{t}_label"], v[f"{t}_pred"], s=14, label="when proposed")
        if after is not None:
            a = after.set_index("smiles").reindex(v["smiles"])
            ax.scatter(v[f"{t}_label"], a[f"{t}_pred"].to_numpy(), s=14, marker="x",
                       label="final model, fine-tuned on all of them")
        lo = np.nanmin([v[f"{t}_label"].min(), v[f"{t}_pred"].min()])
        hi = np.nanmax([v[f"{t}_label"].max(), v[f"{t}_pred"].max()])
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
        o = goal.objectives[0]
        if o.kind == "window":
            ax.axvspan(o.lo, o.hi, color="g", alpha=0.12)
        ax.set_xlabel(f"{t} verified [{unit}]")
        ax.set_ylabel(f"{t} predicted [{unit}]")
        ax.legend(fontsize=8)
        out.append(_svg(fig))
    return '<div style="display:flex;gap:2em;flex-wrap:wrap">' + "".join(out) + "</div>"


def enriched_substructures(prop: pd.DataFrame, min_each: int = 3, max_edges: int = 5) -> pd.DataFrame:
    """Substructures selected by an L1-regularised logistic model over all subgraphs (hit against non-hit) of
    the verified proposals, with their counts and a one-sided Fisher test. Empty below ``min_each`` hits or
    misses."""
    from scipy.stats import fisher_exact

    from elprop.subgraph.molgraph import Labeling, pattern_occurrences, pattern_smarts, smiles_graphs
    from elprop.subgraph.sparse import SubgraphLinearModel
    v = prop[prop["verified"]].drop_duplicates("smiles")
    y = v["hit"].to_numpy(dtype=float)
    if y.sum() < min_each or (1 - y).sum() < min_each:
        return pd.DataFrame()
    graphs, mols, lab = smiles_graphs(v["smiles"].tolist(), Labeling())
    m = SubgraphLinearModel(graphs, y, loss="logistic", alpha=1.0, min_support=2, max_edges=max_edges)
    m.fit(m.lambda_max() / 4)
    rows = []
    hit = y.astype(bool)
    for q, coef in m.selected():
        smarts = pattern_smarts(q.code, lab, q.vertex_label)
        occ = np.zeros(len(mols), bool)
        occ[pattern_occurrences(smarts, mols)] = True
        a, b = int((occ & hit).sum()), int((occ & ~hit).sum())
        p = fisher_exact([[a, b], [int(hit.sum()) - a, int((~hit).sum()) - b]],
                         alternative="greater" if coef > 0 else "less")[1]
        rows.append({"smarts": smarts, "coefficient": float(coef), "in_hits": a, "in_nonhits": b,
                     "fisher_p": float(p), "example": v["smiles"].iloc[int(np.flatnonzero(occ)[0])] if a + b else ""})
    return pd.DataFrame(rows).sort_values("coefficient", ascending=False).reset_index(drop=True)


def prescreen_costs(run: Path, cfg) -> list[dict]:
    """Per prescreen stage of the run: its level, candidates per round, and the calls and seconds spent so far."""
    import json

    from elprop.design.multifidelity import parse_prescreen, stage_numbers
    stages = parse_prescreen(cfg.prescreen)
    tops = stage_numbers(cfg.prescreen_top, len(stages), [100] * len(stages), "--prescreen-top")
    out = []
    for st, top in zip(stages, tops):
        files = sorted((run / st.folder / "results").glob("*.json"))
        out.append({"label": st.label, "top": top, "calls": len(files),
                    "s": sum(json.loads(f.read_text()).get("wall_s") or 0 for f in files)})
    return out


def write_report(path, prop: pd.DataFrame, goal, cfg, space, enriched: pd.DataFrame,
                 after: pd.DataFrame | None = None) -> Path:
    import jinja2

    from elprop import __version__
    from elprop.design.loop import summarize
    path = Path(path)
    summary = summarize(prop)
    best = []
    if len(prop):
        top = prop[prop["verified"]].sort_values("value", ascending=False).drop_duplicates("smiles").head(12)
        for _, r in top.iterrows():
            text = " · ".join(f"{x} {r[f'{x}_label']:.2f} (pred {r[f'{x}_pred']:.2f} ± {r[f'{x}_std']:.2f}) "
                              f"{goal.units.get(x, '')}" for x in goal.targets)
            best.append({"smiles": r["smiles"], "svg": _draw(r["smiles"]), "text": f"round {r['round']}: {text}",
                         "hit": bool(r["hit"]), "novel": None if pd.isna(r["novel"]) else bool(r["novel"]),
                         "warning": r.get("warning") if isinstance(r.get("warning"), str) else ""})
    enr = []
    for _, e in (enriched.head(15).iterrows() if len(enriched) else []):
        enr.append(dict(e, svg=_draw(e["example"], (160, 120), e["smarts"]) if e["example"] else ""))
    env = jinja2.Environment(autoescape=True)
    page = env.from_string(TEMPLATE).render(
        title="; ".join(goal.describe()), goal=goal.describe(), cfg=cfg, space=space.to_dict(),
        oracle="GFN2-xTB (a stand-in, not DFT)" if cfg.oracle == "xtb" else "DFT at the QM9 level (elprop label)",
        targets=goal.targets, units=goal.units, rounds=round_table(prop, goal) if len(prop) else [],
        summary=summary if len(prop) else {"calls": 0, "verified": 0, "hits": 0, "hit_rate": 0.0},
        plots=plots(prop, goal, after) if len(prop) else "", best=best, enriched=enr,
        ref=cfg.novelty_reference, version=__version__, prescreen=prescreen_costs(path.parent, cfg))
    atomic_write(path, lambda tmp: Path(tmp).write_text(page))
    return path

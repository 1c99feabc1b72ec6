"""Reports of subgraph runs: a CSV table and an HTML page with each substructure drawn (highlighted in a
molecule that contains it), its weight and its support."""
from __future__ import annotations

import html
from pathlib import Path

from elprop.core.cache import atomic_write, write_csv


def write_report(out_dir, title: str, rows: list[dict], mols, summary: list[str], weight_name: str = "weight",
                 extra_html: str = "", max_drawn: int = 60, table_name: str = "patterns.csv") -> Path:
    """``rows``: dicts with at least smarts, support and ``weight_name``, and ``example`` (a molecule index
    into ``mols`` that contains the pattern). Writes <table_name> and report.html into out_dir."""
    from elprop.subgraph.molgraph import draw_pattern
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / table_name, [{k: v for k, v in r.items() if k != "example"} for r in rows])
    cells = []
    for k, r in enumerate(rows[:max_drawn]):
        svg = ""
        if r.get("example") is not None and r.get("smarts"):
            try:
                svg = draw_pattern(r["smarts"], mols[int(r["example"])])
            except Exception:  # a drawing problem must not lose the report
                svg = ""
        w = r.get(weight_name)
        cells.append(f"<tr><td>{k + 1}</td><td>{svg}</td><td><code>{html.escape(str(r.get('smarts', '')))}"
                     f"</code></td><td>{'' if w is None else f'{w:.4g}'}</td><td>{r.get('support', '')}</td>"
                     f"<td>{html.escape(str(r.get('note', '')))}</td></tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;vertical-align:middle}}code{{font-size:90%}}</style></head><body>
<h1>{html.escape(title)}</h1><ul>{''.join(f'<li>{html.escape(s)}</li>' for s in summary)}</ul>{extra_html}
<table><tr><th>#</th><th>substructure (highlighted in a molecule that contains it)</th><th>SMARTS</th>
<th>{html.escape(weight_name)}</th><th>support</th><th></th></tr>{''.join(cells)}</table>
{f'<p>{len(rows) - max_drawn} more in {table_name}.</p>' if len(rows) > max_drawn else ''}</body></html>"""
    atomic_write(out / "report.html", lambda tmp: Path(tmp).write_text(page))
    return out / "report.html"

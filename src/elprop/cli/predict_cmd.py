"""``elprop predict``: SMILES strings or xyz/sdf/csv/smi files -> a table of properties with units and uncertainty."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from elprop.cli.options import is_file_arg
from elprop.core.cache import atomic_write
from elprop.core.dataset import InputError

EPILOG = """examples:
  elprop predict "c1ccccc1O"                    phenol, with the shipped QM9 model
  elprop predict "CCO" "C#N" "c1ccncc1"         several SMILES at once
  elprop predict mols.smi -o out.csv            a SMILES file to CSV (units in the headers)
  elprop predict geoms.xyz --format json        an (ext)xyz file; bonds are perceived from the coordinates
  elprop predict mols.csv --smiles-column smi   a CSV with a SMILES column
  elprop predict "CCO" --model runs/quick/model another saved model
  elprop predict geoms.xyz --model runs/g/model  a model trained with --geometry dataset reads the coordinates
  elprop predict "CCO" --model runs/cnn/model     a cnn3d: its promolecular/potential grids are computed here
  elprop predict --model runs/cnn/model --density-store q.zarr      the records of a density store
  elprop predict "CCO" --model runs/hk/model      an hk-unet: electron count and dipole of its density
  elprop predict "CCO" --model runs/sg/model      a subgraph model (sparse-linear, boosted-trees)
  elprop predict dband-overlayers --model runs/dband/model          a materials model on a table

Molecules that cannot be read (invalid SMILES, elements the model never saw) are listed with their error and
the others are still predicted; if no input can be predicted the exit code is 2. The 'warning' column flags
molecules outside the training domain (e.g. more heavy atoms than any training molecule).
"""


def add_parser(sub):
    p = sub.add_parser("predict", help="predict properties of SMILES or molecule files",
                       description="Predict electronic properties, with uncertainty (± one standard deviation) and "
                                   "units, for SMILES strings or xyz/extxyz/sdf/smi/csv files.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="SMILES strings and/or files")
    p.add_argument("--model", help="saved model directory (default: the shipped QM9 model)")
    p.add_argument("--density-store", help="volumetric models (cnn3d): predict the records of this density store "
                                           "(with its DFT grids) instead of, or besides, molecules given as inputs")
    p.add_argument("--smiles-column", help="SMILES column of CSV inputs (default: a column named smiles)")
    p.add_argument("--format", choices=["table", "csv", "json"], help="output format (default: table on screen, "
                                                                      "or from the -o file's extension)")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.set_defaults(func=run_predict)


def _collect(inputs, smiles_column):
    """Inputs -> list of Molecule records with an 'input' label."""
    from elprop.core.dataset import InputError, Molecule
    from elprop.data.readers import read_any

    import numpy as np
    records = []
    for arg in inputs:
        p = Path(arg)
        if is_file_arg(arg):
            kw = {"smiles_column": smiles_column, "targets": []} if p.suffix.lower() == ".csv" else {}
            ds = read_any(p, **kw)
            for i in range(len(ds)):
                m = ds[i]
                m.name = f"{p.name}:{m.name}"
                records.append(m)
        else:
            if not arg.strip():
                raise InputError("empty SMILES string")
            records.append(Molecule(np.zeros(0, np.int64), smiles=arg, name=arg))
    return records


def predict_records(model, records):
    """Predict Molecule records; returns list of dict rows (value/std per target, warning, error)."""
    from elprop.core.dataset import Dataset

    ds = Dataset.from_molecules(records, [], source="input")
    geo = model.config.get("arch", {}).get("geometry")
    reads_3d = model.representation in ("points", "volume", "density-map") or geo == "dataset"
    pred = model.predict(ds if ds.pos is not None and reads_3d else list(ds.smiles))
    return _rows(model, [r.name for r in records], pred, ds.smiles)


def _rows(model, names, pred, smiles):
    """One dict row per molecule (or table row) ``names[i]``: value and std per target, warning, error."""
    def num(a, *ix):
        v = None if a is None else float(a[ix])
        return None if v is None or math.isnan(v) else v
    epi, dom, sim = (getattr(pred, k, None) for k in ("epistemic", "domain_score", "nn_similarity"))
    rows = []
    for i, name in enumerate(names):
        row = {"input": name, "smiles": str(smiles[i])}
        for k, t in enumerate(model.specs):
            row[t.name] = num(pred.mean, i, k)
            row[f"{t.name}_std"] = num(pred.std, i, k)
            row[f"{t.name}_epistemic_std"] = num(epi, i, k)
        row["domain_score"], row["nn_similarity"] = num(dom, i), num(sim, i)
        rw = getattr(pred, "rep_weights", None)
        row["attention"] = {n: num(rw[1], i, k) for k, n in enumerate(rw[0])} if rw is not None else None
        row["warning"] = pred.flags[i]
        row["error"] = pred.errors.get(i, "")
        if not smiles[i] and not row["error"]:
            row["error"] = "no SMILES (bonds could not be perceived from the coordinates)"
        rows.append(row)
    return rows


def _fmt(v, s):
    if v is None:
        return "-"
    return f"{v:.3f} ± {s:.3f}" if s is not None else f"{v:.3f}"


def format_table(model, rows) -> str:
    targets = [t.name for t in model.specs]
    headers = ["input"] + [t.label for t in model.specs] + ["warning"]
    body = []
    for r in rows:
        if r["error"]:
            continue
        body.append([r["input"][:40]] + [_fmt(r[t], r[f"{t}_std"]) for t in targets] + [r["warning"]])
    widths = [max(len(h), *(len(b[k]) for b in body)) if body else len(h) for k, h in enumerate(headers)]
    if not any(b[-1] for b in body):
        headers, widths, body = headers[:-1], widths[:-1], [b[:-1] for b in body]
    line = lambda cells: "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers)] + [line(b) for b in body]) + "\n"


def format_csv(model, rows) -> str:
    import csv
    import io

    targets = [t.name for t in model.specs]
    buf = io.StringIO()
    w = csv.writer(buf)
    has_epi = any(r.get(f"{t}_epistemic_std") is not None for r in rows for t in targets)
    has_dom = any(r.get("domain_score") is not None for r in rows)
    keys = ["", "_std"] + (["_epistemic_std"] if has_epi else [])
    att = next((list(r["attention"]) for r in rows if r.get("attention")), [])  # multirep: weight per representation
    w.writerow(["input", "smiles"] + [f"{t.name}{k} [{t.unit}]" for t in model.specs for k in keys]
               + (["domain_score", "nn_similarity"] if has_dom else []) + [f"attention_{n}" for n in att]
               + ["warning", "error"])

    def cell(v):
        return "" if v is None else f"{v:.6g}"
    for r in rows:
        w.writerow([r["input"], r["smiles"]] + [cell(r.get(f"{t}{k}")) for t in targets for k in keys]
                   + ([cell(r["domain_score"]), cell(r["nn_similarity"])] if has_dom else [])
                   + [cell((r.get("attention") or {}).get(n)) for n in att] + [r["warning"], r["error"]])
    return buf.getvalue()


def format_json(model, rows) -> str:
    out = []
    for r in rows:
        preds = {t.name: {"value": r[t.name], "std": r[f"{t.name}_std"],
                          "epistemic_std": r.get(f"{t.name}_epistemic_std"), "unit": t.unit} for t in model.specs}
        out.append({"input": r["input"], "smiles": r["smiles"], "predictions": preds,
                    "domain": {"score": r.get("domain_score"), "nn_similarity": r.get("nn_similarity")},
                    **({"attention": r["attention"]} if r.get("attention") else {}),
                    "warning": r["warning"], "error": r["error"]})
    return json.dumps(out, indent=1) + "\n"


def _table_rows(model, tables):
    """Rows for every row of materials tables (CSV files or embedded names)."""
    rows = []
    for table in tables:
        pred = model.predict(table)
        labels = pred.rep.labels()
        rows += _rows(model, [f"{Path(str(table)).name}:{lab}" for lab in labels], pred, labels)
    return rows


def _store_rows(model, store):
    """Rows for every record of a density store (volumetric models that read stored grids)."""
    from elprop.data.load import DataSpec, load_data
    if model.representation != "volume":
        raise InputError(f"--density-store is for volumetric models (cnn3d); this is a {model.config['model']} model")
    ds = load_data(DataSpec(store=store))
    pred = model.predict(ds)
    return _rows(model, [str(n) for n in ds.names], pred, ds.smiles)


def run_predict(args) -> int:
    from elprop.pretrained import model_path
    from elprop.train.saved import load_model

    if not args.inputs and not args.density_store:
        raise InputError("give SMILES strings or files to predict (or --density-store for a volumetric model)")
    model = load_model(args.model or model_path())
    if model.representation == "table":  # a materials model: the inputs are tables of host/guest pairs or alloys
        rows = _table_rows(model, args.inputs)
    else:
        rows = predict_records(model, _collect(args.inputs, args.smiles_column)) if args.inputs else []
    if args.density_store:
        rows += _store_rows(model, args.density_store)
    bad = [r for r in rows if r["error"]]
    if len(bad) == len(rows):
        raise InputError(bad[0]["error"] if len(bad) == 1 else
                         f"none of the {len(rows)} inputs could be predicted; first: {bad[0]['error']}")
    fmt = args.format or ({".csv": "csv", ".json": "json"}.get(Path(args.output).suffix.lower(), "csv")
                          if args.output else "table")
    text = {"table": format_table, "csv": format_csv, "json": format_json}[fmt](model, rows)
    if args.output:
        atomic_write(args.output, lambda tmp: Path(tmp).write_text(text))
        print(f"wrote {len(rows) - len(bad)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for r in bad:
        print(f"elprop: skipped: {r['error']}", file=sys.stderr)
    n_warn = sum(bool(r["warning"]) for r in rows)
    if n_warn:
        print(f"elprop: warning: {n_warn} molecule(s) lie outside the training domain (see the warning column)",
              file=sys.stderr)
    return 0

"""The Flask application of ``elprop serve``.

Routes: ``/`` (start), ``/predict`` (SMILES or a file -> values ± σ with units, warnings, 2D depictions; CSV download
at ``/download/<token>.csv``), ``/molecule?smiles=`` (one molecule: its predictions and structure), ``/runs`` (every
run folder under ``--runs``, by kind), ``/runs/<id>`` (one run: metrics and plots, hit rates and candidates, tables
paginated and sortable) and ``/runs/<id>/file/<path>`` (a run's own images and reports). Bad input (an invalid
SMILES, an unreadable file) is a message on the page, never a server error; the page needs nothing from the
internet.
"""
from __future__ import annotations


import tempfile
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np
from flask import Flask, Response, abort, render_template, request, send_from_directory

from elprop.serve import runs as runs_mod

MAX_SHOWN = 500  # rows of a prediction shown on the page (all of them are in the CSV)
UPLOAD_SUFFIXES = (".smi", ".smiles", ".txt", ".csv", ".sdf", ".xyz", ".extxyz")


def depict(smiles: str, size: int = 160) -> str:
    """An inline SVG of the molecule (RDKit), or "" when the SMILES does not parse."""
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D
    m = Chem.MolFromSmiles(smiles) if smiles else None
    if m is None:
        return ""
    d = rdMolDraw2D.MolDraw2DSVG(size, size)
    d.drawOptions().clearBackground = False
    rdMolDraw2D.PrepareAndDrawMolecule(d, m)
    d.FinishDrawing()
    svg = d.GetDrawingText()
    return svg[svg.index("<svg"):]


def create_app(runs_dirs=(), models=None, stores=()) -> Flask:
    """``runs_dirs``: folders searched for run folders (and their models); ``models``: extra saved models offered on
    the predict page (the shipped one is always offered); ``stores``: density stores whose DFT densities the
    molecule page shows for the molecules they hold."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    roots = [Path(r) for r in runs_dirs]
    loaded, downloads = {}, OrderedDict()

    def model_choices() -> list[tuple[str, str]]:
        from elprop.pretrained import model_path
        out = [("shipped", f"shipped ({model_path().name})")]
        for d in list(models or []) + runs_mod.model_dirs(roots):
            out.append((str(d), str(d)))
        return out

    def get_model(key: str):
        from elprop.pretrained import model_path
        from elprop.train.saved import load_model
        allowed = dict(model_choices())
        if key not in allowed:
            raise ValueError(f"unknown model {key!r}")
        if key not in loaded:
            loaded[key] = load_model(model_path() if key == "shipped" else Path(key))
        return loaded[key]

    def run_by_id(run_id: str):
        for r in runs_mod.find_runs(roots):
            if r.id == run_id:
                return r
        abort(404)

    @app.errorhandler(404)
    def not_found(e):
        return render_template("message.html", title="Not found", message=str(e.description)), 404

    @app.errorhandler(413)
    def too_large(e):
        return render_template("message.html", title="File too large",
                               message="The upload is larger than 64 MB; predict it with `elprop predict`."), 413

    @app.route("/")
    def index():
        found = runs_mod.find_runs(roots)
        return render_template("index.html", n_runs=len(found), roots=roots)

    @app.route("/predict", methods=["GET", "POST"])
    def predict():
        choices = model_choices()
        ctx = {"choices": choices, "model_key": request.values.get("model", "shipped"),
               "smiles_text": request.values.get("smiles", "")}
        if request.method == "GET":
            return render_template("predict.html", **ctx)
        from elprop.cli.predict_cmd import format_csv, predict_records
        from elprop.core.dataset import InputError
        try:
            model = get_model(ctx["model_key"])
        except Exception as e:  # a model that does not load is the user's choice to fix, not a crash
            return render_template("predict.html", error=f"model: {e}", **ctx), 400
        try:
            records = _records(ctx["smiles_text"], request.files.get("file"))
        except (InputError, ValueError, OSError, UnicodeDecodeError) as e:
            return render_template("predict.html", error=str(e), **ctx), 400
        if not records:
            return render_template("predict.html", error="give one or more SMILES, or a file", **ctx), 400
        try:
            rows = predict_records(model, records)
        except (InputError, ValueError) as e:
            return render_template("predict.html", error=str(e), **ctx), 400
        token = uuid.uuid4().hex
        downloads[token] = format_csv(model, rows)
        while len(downloads) > 32:
            downloads.popitem(last=False)
        shown = rows[:MAX_SHOWN]
        for r in shown:
            r["svg"] = depict(r["smiles"]) if not r["error"] else ""
        return render_template("predict.html", rows=shown, n_rows=len(rows), specs=model.specs, token=token,
                               n_bad=sum(bool(r["error"]) for r in rows), **ctx)

    @app.route("/download/<token>.csv")
    def download(token):
        if token not in downloads:
            abort(404, "this download has expired; predict again")
        return Response(downloads[token], mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=elprop-predictions.csv"})

    @app.route("/molecule")
    def molecule():
        from rdkit import Chem

        from elprop.cli.predict_cmd import predict_records
        from elprop.core.dataset import Molecule
        import numpy as np
        smiles = request.args.get("smiles", "").strip()
        key = request.args.get("model", "shipped")
        if not smiles or Chem.MolFromSmiles(smiles) is None:
            return render_template("message.html", title="Molecule",
                                   message=f"not a valid SMILES: {smiles!r}" if smiles else "give ?smiles="), 400
        try:
            model = get_model(key)
        except Exception as e:
            return render_template("message.html", title="Molecule", message=f"model: {e}"), 400
        row = predict_records(model, [Molecule(np.zeros(0, np.int64), smiles=smiles, name=smiles)])[0]
        kinds = density_kinds(smiles)
        density = request.args.get("density", "promolecular")
        if density not in dict(kinds):
            density = "promolecular"
        return render_template("molecule.html", row=row, specs=model.specs, svg=depict(smiles, 260), model_key=key,
                               has_3dmol=threedmol_path() is not None, kinds=kinds, density=density,
                               density_label=dict(kinds)[density], signed="-" in density.split(":")[0])

    @app.route("/static/plotly.min.js")
    def plotlyjs():
        import plotly
        d = Path(plotly.__file__).parent / "package_data"
        return send_from_directory(d, "plotly.min.js", mimetype="application/javascript")

    @app.route("/static/3Dmol-min.js")
    def threedmol():
        f = threedmol_path()
        if f is None:
            abort(404, "3Dmol.js is not installed: run `make setup` (npm install 3dmol)")
        return send_from_directory(f.parent, f.name, mimetype="application/javascript")

    @app.route("/molecule/structure.xyz")
    def structure():
        """The MMFF94 conformer, or with ?source=store the geometry of the store that holds the molecule."""
        from elprop.core.dataset import SYMBOLS
        smiles = request.args.get("smiles", "")
        rec = store_record(smiles) if request.args.get("source") == "store" and stores else None
        if rec is not None:
            z, pos = rec[0].atoms(rec[1])
        else:
            mol = _structure(smiles)
            if isinstance(mol, str):
                return Response(mol, status=400, mimetype="text/plain")
            z, pos = mol.z, mol.pos
        text = f"{len(z)}\n{smiles}\n" + "".join(
            f"{SYMBOLS[int(a)]} {x:.5f} {y:.5f} {w:.5f}\n" for a, (x, y, w) in zip(z, pos))
        return Response(text, mimetype="chemical/x-xyz")

    def hk_choices() -> list[Path]:
        return runs_mod.hk_models(roots)

    def store_record(smiles: str):
        """(store, record) of the first --store holding this molecule with a finished DFT density, or None."""
        from elprop.density.store import DONE, DensityStore
        key = _canonical(smiles)
        for path in stores:
            st = DensityStore(path)
            if "dft" not in st.kinds:
                continue
            done = st.status("dft") == DONE
            for i, s in enumerate(st.root["smiles"][:]):
                if done[i] and _canonical(str(s)) == key:
                    return st, i
        return None

    def density_kinds(smiles: str) -> list[tuple[str, str]]:
        """(value, label) of the densities the molecule page can show for this molecule."""
        out = [("promolecular", "promolecular (free atoms)")]
        for d in hk_choices():
            out += [(f"hk:{d}", f"HK-predicted ({d})"), (f"hk-pro:{d}", f"HK − promolecular ({d})")]
        if stores and store_record(smiles) is not None:
            out += [("dft", "DFT (density store)"), ("dft-pro", "DFT − promolecular"),
                    ("dft-hk", "DFT − HK-predicted (first HK map)")] if hk_choices() else \
                [("dft", "DFT (density store)"), ("dft-pro", "DFT − promolecular")]
        return out

    @app.route("/molecule/promolecular.cube")
    def promolecular_cube():
        return density_cube_response(request.args.get("smiles", ""), "promolecular")

    @app.route("/molecule/density.cube")
    def density_cube():
        return density_cube_response(request.args.get("smiles", ""), request.args.get("kind", "promolecular"))

    def density_cube_response(smiles: str, kind: str):
        from elprop.density.cube import write_cube
        from elprop.density.grid import molecule_grid
        from elprop.density.promolecular import promolecular_density
        if kind not in dict(density_kinds(smiles)):
            return Response(f"density {kind!r} is not available for this molecule", status=400, mimetype="text/plain")
        if kind.startswith("dft"):
            st, i = store_record(smiles)
            z, pos = st.atoms(i)
            grid = st.grid(i)
            rho = st.read(i, ["dft"])[0]
            if kind == "dft-pro":
                rho = rho - promolecular_density(z, pos, grid)
            elif kind == "dft-hk":
                hk_grid, hk = _hk_model(hk_choices()[0]).predict_molecule(z, pos)
                if hk_grid.n != grid.n or abs(hk_grid.spacing - grid.spacing) > 1e-6:
                    return Response("the HK map's grid differs from the store's", status=400, mimetype="text/plain")
                rho = rho - hk
        else:
            mol = _structure(smiles)
            if isinstance(mol, str):
                return Response(mol, status=400, mimetype="text/plain")
            z, pos = mol.z, mol.pos
            if kind == "promolecular":
                extent = float(np.ptp(pos, axis=0).max()) + 6.0  # Å: the molecule and 3 Å around it
                grid = molecule_grid(pos, n=32, box=extent)
                rho = promolecular_density(z, pos, grid)
            else:  # hk:<model> or hk-pro:<model>
                grid, rho = _hk_model(Path(kind.split(":", 1)[1])).predict_molecule(z, pos)
                if kind.startswith("hk-pro:"):
                    rho = rho - promolecular_density(z, pos, grid)
        with tempfile.TemporaryDirectory() as tmp:
            text = write_cube(Path(tmp) / "rho.cube", rho, grid, z, pos,
                              comment=f"{kind} density of {smiles}").read_text()
        return Response(text, mimetype="chemical/x-cube")

    @app.route("/runs")
    def runs():
        found = runs_mod.find_runs(roots)
        by_kind = {k: [(r, runs_mod.progress(r)) for r in found if r.kind == k] for k in runs_mod.KINDS}
        return render_template("runs.html", by_kind=by_kind, roots=roots,
                               running=any(not p[0] for v in by_kind.values() for _, p in v))

    @app.route("/runs/<run_id>")
    def run(run_id):
        r = run_by_id(run_id)
        page = request.args.get("page", 1, type=int)
        sort = request.args.get("sort")
        desc = request.args.get("desc", "0") == "1"
        finished, status = runs_mod.progress(r)
        ctx = {"run": r, "page": page, "sort": sort, "desc": desc, "finished": finished, "status": status}
        if r.kind == "training" and not (r.path / "metrics.csv").is_file():
            pass  # still training: its progress line is all there is
        elif r.kind == "training":
            ctx["summary"] = runs_mod.training_summary(r.path)
            ctx["plots"] = [runs_mod.history_figure(ctx["summary"]["history"])] \
                if ctx["summary"]["history"] is not None and len(ctx["summary"]["history"]) else []
        elif r.kind == "design":
            ctx["summary"] = runs_mod.design_summary(r.path)
            ctx["plots"] = runs_mod.design_figures(r.path)
            ctx["table"], ctx["n"] = runs_mod.read_table(r.path / "proposals.csv", page, sort=sort or "round",
                                                         descending=desc)
        elif r.kind == "subgraph":
            ctx["substructures"] = runs_mod.substructures(r.path)
        elif r.kind in ("screen", "labels", "materials"):
            f = {"screen": "top.csv", "labels": "labels.csv", "materials": "learning_curve.csv"}[r.kind]
            ctx["table"], ctx["n"] = runs_mod.read_table(r.path / f, page, sort=sort, descending=desc)
        files = sorted(p.relative_to(r.path).as_posix() for p in r.path.rglob("*")
                       if p.suffix in (".png", ".html", ".svg") and p.is_file() and "checkpoints" not in p.parts)
        ctx["images"] = [f for f in files if f.endswith(".png")][:12]
        ctx["files"] = files[:50]
        return render_template("run.html", **ctx)

    @app.route("/runs/<run_id>/file/<path:rel>")
    def run_file(run_id, rel):
        r = run_by_id(run_id)
        if Path(rel).suffix not in (".png", ".html", ".svg", ".csv", ".md"):
            abort(404, "only images, reports and tables of a run are served")
        return send_from_directory(r.path.resolve(), rel)  # refuses paths outside the run folder

    return app


def threedmol_path() -> Path | None:
    """3Dmol.js as `make setup` installs it from npm (into the environment's npm/ folder), or ELPROP_3DMOL."""
    import os
    import sys
    for c in (os.environ.get("ELPROP_3DMOL"), Path(sys.prefix) / "npm" / "node_modules" / "3dmol" / "build" /
              "3Dmol-min.js"):
        if c and Path(c).is_file():
            return Path(c)
    return None


_STRUCTURES: OrderedDict = OrderedDict()
_HK: dict = {}


def _hk_model(path: Path):
    from elprop.train.density_run import DensityModel
    key = str(path)
    if key not in _HK:
        _HK[key] = DensityModel.load(path)
    return _HK[key]


def _canonical(smiles: str) -> str | None:
    from rdkit import Chem
    m = Chem.MolFromSmiles(smiles) if smiles else None
    return Chem.MolToSmiles(m) if m is not None else None


def _structure(smiles: str):
    """The MMFF94 conformer of a SMILES (cached), or an error message."""
    from elprop.chem.rdkit_utils import embed_3d
    from elprop.core.dataset import InputError
    smiles = smiles.strip()
    if not smiles:
        return "give ?smiles="
    if smiles not in _STRUCTURES:
        try:
            _STRUCTURES[smiles] = embed_3d(smiles)
        except (InputError, ValueError, RuntimeError) as e:
            return f"{smiles!r}: {e}"
        while len(_STRUCTURES) > 64:
            _STRUCTURES.popitem(last=False)
    return _STRUCTURES[smiles]


def _records(text: str, upload) -> list:
    """Molecule records from the SMILES box (one per line) and an uploaded file (read with elprop's readers)."""
    import numpy as np

    from elprop.cli.predict_cmd import _collect
    from elprop.core.dataset import InputError, Molecule
    records = [Molecule(np.zeros(0, np.int64), smiles=s, name=s)
               for s in (ln.strip().split()[0] for ln in text.splitlines() if ln.strip())]
    if upload is not None and upload.filename:
        suffix = Path(upload.filename).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise InputError(f"{upload.filename}: give a {', '.join(UPLOAD_SUFFIXES)} file")
        data = upload.read()
        if not data.strip():
            raise InputError(f"{upload.filename}: the file is empty")
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / Path(upload.filename).name
            p.write_bytes(data)
            try:
                records += _collect([str(p)], None)
            except InputError as e:  # name the upload, not the temporary copy
                raise InputError(str(e).replace(str(p), Path(upload.filename).name)) from None
    return records


def serve(host: str, port: int, runs_dirs, models=None, stores=()) -> None:  # pragma: no cover - blocking
    app = create_app(runs_dirs, models, stores)
    print(f"elprop serve: http://{host}:{port}/ (Ctrl-C stops it)")
    app.run(host=host, port=port, debug=False, use_reloader=False)



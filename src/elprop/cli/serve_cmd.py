"""``elprop serve``: a local web page for predictions and run folders."""
from __future__ import annotations

import argparse
from pathlib import Path

from elprop.core.dataset import InputError

EPILOG = """examples:
  elprop serve                                   predict in the browser at http://127.0.0.1:8050/
  elprop serve --runs runs benchmarks/out/design training, design, screen and label runs under these folders

The page binds to 127.0.0.1 (this machine only) unless --host is given, and needs no internet. See docs/serve.md.
"""


def add_parser(sub):
    p = sub.add_parser("serve", help="a local web page: predictions, molecules and run folders",
                       description="Start a local web app: predict from SMILES or files with any model, look at a "
                                   "molecule, and browse the run folders under --runs.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8050, help="port (default: 8050)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--runs", nargs="*", default=[], metavar="DIR",
                   help="folders holding run folders (searched two levels deep)")
    p.add_argument("--model", action="append", default=[], metavar="DIR",
                   help="also offer this saved model on the predict page (repeatable)")
    p.add_argument("--store", action="append", default=[], metavar="ZARR",
                   help="a density store: the molecule page shows its DFT density (and differences) for the "
                        "molecules it holds (repeatable)")
    p.set_defaults(func=run)


def run(args) -> int:
    for d in args.runs:
        if not Path(d).is_dir():
            raise InputError(f"--runs {d}: no such folder")
    for d in args.model:
        if not (Path(d) / "config.json").is_file():
            raise InputError(f"--model {d}: not a saved model (no config.json)")
    for d in args.store:
        from elprop.density.store import DensityStore
        try:
            DensityStore(d)
        except Exception as e:
            raise InputError(f"--store {d}: not a density store ({e})") from None
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: give 1-65535")
    from elprop.serve.app import serve
    serve(args.host, args.port, [Path(d) for d in args.runs], [Path(d) for d in args.model],
          [Path(d) for d in args.store])
    return 0

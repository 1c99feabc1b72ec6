"""``elprop <command> [options]``: exit 0 on success, 2 on bad input (one line on stderr), 1 on internal error."""
from __future__ import annotations

import argparse
import os
import sys
import time

STARTED = time.time()  # when the command started (before its heavy imports): `train --total-budget` counts from here

EPILOG = """examples:
  elprop predict "c1ccccc1O"                     HOMO, LUMO, gap ... of phenol with the shipped model
  elprop predict mols.sdf -o preds.csv           every molecule of an SDF file, to CSV (units in headers)
  elprop data info qm9                           counts, targets and units of the embedded QM9
  elprop train --data qm9 --targets gap --limit 5000 --epochs 5 --name quick
  elprop evaluate --model runs/quick/model --data qm9 --split-file runs/quick/split.json --split test
  elprop density generate --data qm9 --kind dft --subset 0:100 --out qm9.zarr    DFT densities (PySCF)
  elprop density info qm9.zarr                   counts, failures, storage, DFT vs QM9 labels
  elprop design --objective "gap=3.0:3.5" --novel-only --out design/lowgap
                                                 new molecules with a wanted gap, verified by DFT each round
  elprop subgraph fit --model sparse-linear --data qm9 --limit 3000 --target gap --out runs/sg
                                                 a lasso over all subgraphs: which substructures set the gap
"""


def build_parser() -> argparse.ArgumentParser:
    from elprop import __version__
    from elprop.cli import (data_cmd, density_cmd, design_cmd, label_cmd, materials_cmd, predict_cmd,
                            predict_density_cmd, serve_cmd,
                            subgraph_cmd, train_cmd)

    p = argparse.ArgumentParser(prog="elprop", description="Instant predictions of electronic properties of "
                                "molecules, learned from DFT data (QM9).", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"elprop {__version__}")
    sub = p.add_subparsers(dest="command", metavar="command")
    sub.required = True
    data_cmd.add_parser(sub)
    train_cmd.add_train_parser(sub)
    train_cmd.add_evaluate_parser(sub)
    predict_cmd.add_parser(sub)
    density_cmd.add_parser(sub)
    label_cmd.add_parser(sub)
    design_cmd.add_parser(sub)
    design_cmd.add_screen_parser(sub)
    predict_density_cmd.add_parser(sub)
    subgraph_cmd.add_parser(sub)
    materials_cmd.add_parser(sub)
    serve_cmd.add_parser(sub)
    return p


def main(argv=None) -> int:
    from elprop.core.dataset import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"elprop: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `elprop data info qm9 | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("elprop: interrupted (a training run resumes from its last checkpoint)", file=sys.stderr)
        return 130
    except Exception as e:  # internal error: one line, full traceback with ELPROP_DEBUG=1
        if os.environ.get("ELPROP_DEBUG"):
            raise
        print(f"elprop: internal error: {type(e).__name__}: {e} (set ELPROP_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Options shared by several commands, defined once: the data source, the output folder, and what counts as a
file among positional inputs."""
from __future__ import annotations

from pathlib import Path

# suffixes that make a positional input a molecule file rather than a SMILES string
FILE_SUFFIXES = (".xyz", ".extxyz", ".sdf", ".mol", ".smi", ".smiles", ".txt", ".csv")


def add_data_options(p, *, targets: str | None = "homo,lumo,gap", store: bool = True, limit: bool = True,
                     csv: bool = True, data_help: str | None = None):
    """--data, --density-store, --limit, --seed-free shuffle, --exclude, --smiles-column, --allow-missing and the
    target contract (--targets, --units, --extensive). ``targets``: the default of --targets, or None for a
    command without it."""
    g = p.add_argument_group("data")
    g.add_argument("--data", default="qm9",
                   help=data_help or "'qm9' (default, embedded), a QM9 tarball/folder, or an xyz/extxyz/sdf/smi/csv "
                                     "file (a CSV with a SMILES column and target columns)")
    if store:
        g.add_argument("--density-store", help="a density store (elprop density generate): its records and targets "
                                               "are the data (volumetric models: cnn3d, hk-unet)")
    if limit:
        g.add_argument("--limit", type=int, help="use only N molecules of a seeded shuffle (quick runs); split "
                                                 "files keep the indices of the full data")
    g.add_argument("--exclude", help="file of QM9 indices to drop (e.g. uncharacterized.txt)")
    if csv:
        g.add_argument("--smiles-column", help="SMILES column of a CSV (default: a column named smiles)")
        g.add_argument("--allow-missing", action="store_true", help="keep CSV rows with missing targets (masked)")
    if targets is not None:
        t = p.add_argument_group("targets")
        t.add_argument("--targets", default=None,
                       help=f"comma-separated targets (default: {targets}); elprop's own (see `elprop data info "
                            "qm9`) or any numeric column of your data")
        t.add_argument("--units", metavar="T=UNIT,...",
                       help="units of your own targets, e.g. logS=log(mol/L) (default: from a CSV header "
                            "'logS [log(mol/L)]', else unitless); printed in every table and plot")
        t.add_argument("--extensive", metavar="T,...",
                       help="your targets that scale with molecule size (summed over atoms, with an atom-reference "
                            "fit); others are intensive")
        p.set_defaults(default_targets=targets)


def target_names(args) -> list[str]:
    from elprop.core.dataset import InputError
    spec = args.targets if args.targets is not None else args.default_targets
    names = [t.strip() for t in spec.split(",") if t.strip()]
    if not names:
        raise InputError("--targets is empty")
    return names


def data_spec(args, targets=None):
    """The DataSpec of the shared data options."""
    from elprop.data.load import DataSpec
    return DataSpec(data=args.data, store=getattr(args, "density_store", None), limit=getattr(args, "limit", None),
                    exclude=getattr(args, "exclude", None), smiles_column=getattr(args, "smiles_column", None),
                    targets=list(targets or []), allow_missing=getattr(args, "allow_missing", False),
                    seed=getattr(args, "seed", 0) or 0)


def add_out_option(p, *, required: bool = True, runs_aliases: bool = False):
    """--out DIR (every command that writes results); ``runs_aliases``: also --runs-dir/--name, the older spelling
    of --out RUNS_DIR/NAME."""
    if runs_aliases:
        p.add_argument("--out", help="output folder: config, split, metrics, checkpoints, plots, model "
                                     "(default: runs/<model>-<targets>)")
        p.add_argument("--name", help="alias: --out RUNS_DIR/NAME")
        p.add_argument("--runs-dir", default="runs", help="alias: parent folder for --name (default: runs)")
    else:
        p.add_argument("--out", required=required, help="output folder")


def out_dir(args, default_name: str):
    if getattr(args, "out", None):
        return Path(args.out)
    return Path(args.runs_dir) / (args.name or default_name)


def is_file_arg(arg: str) -> bool:
    """Is this argument meant as a file (a known suffix, or an existing path) rather than a SMILES string?"""
    if len(arg) > 4096 or "\0" in arg:  # longer than any path; a (giant) SMILES
        return False
    p = Path(arg)
    try:
        return p.suffix.lower() in FILE_SUFFIXES or p.exists()
    except (OSError, ValueError):  # e.g. a component longer than the file system allows
        return False

"""Models shipped inside the package."""
from __future__ import annotations

from pathlib import Path

from elprop.core.dataset import InputError

DEFAULT = "qm9_bondgraph"


def model_path(name: str = DEFAULT) -> Path:
    p = Path(__file__).parent / name
    if not (p / "config.json").is_file():
        raise InputError(f"shipped model {name!r} is not installed at {p}; pass --model DIR")
    return p

"""The on-disk cache: ``$ELPROP_CACHE`` (default ``~/.cache/elprop``); every write is atomic."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    d = Path(os.environ.get("ELPROP_CACHE", Path.home() / ".cache" / "elprop"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def atomic_write(path: str | os.PathLike, writer) -> Path:
    """Call ``writer(tmp_path)`` and rename the result onto ``path`` so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_csv(path, rows: list[dict]) -> None:
    """Write dict rows as CSV (header from the first row), atomically; nothing is written for no rows."""
    import csv

    if not rows:
        return

    def write(tmp):
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    atomic_write(path, write)

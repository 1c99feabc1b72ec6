"""Parity plots (with units on both axes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from elprop.core.units import unit as table_unit


def parity_plot(y_true, y_pred, target: str, path, title: str = "", unit: str | None = None) -> Path:
    """``unit``: the target's unit (default: from elprop's table of targets)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    t, p = y_true[ok], y_pred[ok]
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=120)
    if len(t) > 3000:
        ax.hexbin(t, p, gridsize=80, bins="log", cmap="viridis", mincnt=1)
    else:
        ax.scatter(t, p, s=6, alpha=0.6)
    lo, hi = (float(min(t.min(), p.min())), float(max(t.max(), p.max()))) if len(t) else (0.0, 1.0)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    mae = float(np.abs(p - t).mean()) if len(t) else float("nan")
    unit = table_unit(target) if unit is None else unit
    ax.set_xlabel(f"true {target} [{unit}]")
    ax.set_ylabel(f"predicted {target} [{unit}]")
    ax.set_title(title or f"{target}: MAE {mae:.4g} {unit} (n={len(t)})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

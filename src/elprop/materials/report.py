"""Figures and the HTML page of a materials run: learning curve, parity, feature importance, partial dependence
for the top features, and a host × guest heat map of predictions."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from elprop.core.cache import atomic_write


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    plt = _plt()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def learning_curve_plot(path, lc: pd.DataFrame, target, unit="eV"):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for model, g in lc.groupby("model"):
        ax.errorbar(100 * g["train_fraction"], g["rmse_mean"], yerr=g["rmse_sd"], marker="o", capsize=3, label=model)
    ax.set_xlabel("training data (%)")
    ax.set_ylabel(f"test RMSE of {target} ({unit})")
    ax.legend()
    ax.set_title("repeated random splits")
    _save(fig, path)


def parity_plot(path, y, pred, target, unit="eV", title=""):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ok = np.isfinite(pred)
    ax.scatter(y[ok], pred[ok], s=12, alpha=0.7)
    lo, hi = float(np.min(y[ok])), float(np.max(y[ok]))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    rmse = np.sqrt(np.mean((pred[ok] - y[ok]) ** 2))
    ax.set_xlabel(f"{target}, data ({unit})")
    ax.set_ylabel(f"{target}, predicted ({unit})")
    ax.set_title(f"{title} RMSE {rmse:.3f} {unit}")
    _save(fig, path)


def importance_plot(path, imp: dict, top=15):
    plt = _plt()
    items = list(imp.items())[:top][::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.3 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xlabel("relative importance")
    _save(fig, path)


def partial_dependence(model, X: pd.DataFrame, feature: str, n=25):
    """(grid, mean prediction) with ``feature`` set to each grid value for every row (Friedman's PD)."""
    vals = X[feature].to_numpy(float)
    vals = vals[np.isfinite(vals)]
    grid = np.unique(np.quantile(vals, np.linspace(0, 1, n)))
    out = []
    for v in grid:
        Z = X.copy()
        Z[feature] = v
        out.append(float(np.mean(model.predict(Z))))
    return grid, np.array(out)


def partial_dependence_plot(path, model, X, features, target, unit="eV"):
    plt = _plt()
    fig, axes = plt.subplots(1, len(features), figsize=(3.6 * len(features), 3.2), squeeze=False)
    for ax, f in zip(axes[0], features):
        g, pdv = partial_dependence(model, X, f)
        ax.plot(g, pdv, "o-", ms=3)
        ax.set_xlabel(f)
        ax.set_ylabel(f"mean predicted {target} ({unit})")
    _save(fig, path)


def heatmap_plot(path, hosts, guests, values, target, unit="eV", title="predicted"):
    plt = _plt()
    # one element order for both axes (first appearance as host, then as guest), so the diagonal is host == guest
    order = list(dict.fromkeys(list(hosts) + list(guests)))
    hs = [e for e in order if e in set(hosts)]
    gs = [e for e in order if e in set(guests)]
    M = np.full((len(hs), len(gs)), np.nan)
    for h, g, v in zip(hosts, guests, values):
        M[hs.index(h), gs.index(g)] = v
    fig, ax = plt.subplots(figsize=(0.38 * len(gs) + 2.5, 0.38 * len(hs) + 1.5))
    im = ax.imshow(M, cmap="coolwarm")
    ax.set_xticks(range(len(gs)), gs, rotation=90)
    ax.set_yticks(range(len(hs)), hs)
    ax.set_xlabel("guest (overlayer)")
    ax.set_ylabel("host (substrate)")
    fig.colorbar(im, ax=ax, label=f"{title} {target} ({unit})")
    _save(fig, path)
    return M


def html_page(path, title, summary: list[str], images: list[tuple[str, str]], tables: list[tuple[str, pd.DataFrame]]):
    body = [f"<h1>{html.escape(title)}</h1><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in summary) + "</ul>"]
    for caption, img in images:
        body.append(f"<figure><img src='{html.escape(img)}'><figcaption>{html.escape(caption)}</figcaption></figure>")
    for caption, df in tables:
        body.append(f"<h2>{html.escape(caption)}</h2>" + df.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:3px 6px}figure{display:inline-block;margin:1em}</style></head><body>" + "".join(body)
            + "</body></html>")
    atomic_write(path, lambda tmp: Path(tmp).write_text(page))
    return Path(path)

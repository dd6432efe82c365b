"""PNG figures drawn from the report's tables (matplotlib's Agg canvas, no pyplot global state).

Each function writes one PNG and returns its path, or ``None`` when the tables hold nothing to
draw. Accuracies are plotted in percent (0–100); each model keeps one colour across figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

_DPI = 110
_METADATA = {"Software": None}  # keep PNG bytes free of the matplotlib version string


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _colours(models: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(models)}


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=_METADATA)
    return path


def heatmap(*, set_accuracy: pd.DataFrame, suite: str, title: str, path: Path) -> Path | None:
    """Model × set matrix of top-1 (mean over severities), annotated, 0–100 % colour scale."""
    sub = set_accuracy[set_accuracy["suite"] == suite]
    if sub.empty:
        return None
    mat = sub.pivot_table(index="model", columns="set", values="top1", aggfunc="mean", dropna=False) * 100.0
    mat = mat.sort_index().sort_index(axis=1)
    n_models, n_sets = mat.shape
    fig = _figure(2.2 + 0.62 * n_sets, 1.6 + 0.42 * n_models)
    ax = fig.add_subplot()
    im = ax.imshow(mat.to_numpy(), cmap="viridis", vmin=0.0, vmax=100.0, aspect="auto")
    ax.set_xticks(range(n_sets), labels=list(mat.columns), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_models), labels=list(mat.index), fontsize=8)
    for i in range(n_models):
        for j in range(n_sets):
            v = mat.iat[i, j]
            text, colour = (
                (f"{v:.0f}", "white" if v < 60 else "black") if math.isfinite(v) else ("n/a", "grey")
            )
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="top-1 (%)", shrink=0.9)
    return _save(fig, path)


def _grid(n: int, *, cols: int = 5, cell: tuple[float, float] = (2.6, 2.1)) -> tuple[Any, list[Any]]:
    ncols = min(cols, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(cell[0] * ncols, cell[1] * nrows + 0.6)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    return fig, axes


def _legend(fig: Any, axes: list[Any]) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="outside lower center", ncols=min(len(labels), 5), fontsize=8, frameon=False
        )


def _axis_labels(axes: list[Any], *, cols: int, xlabel: str | None) -> None:
    """y label on the first column, x label (when shared) on the bottom row only."""
    ncols = min(cols, len(axes))
    for i, ax in enumerate(axes):
        if i % ncols == 0:
            ax.set_ylabel("top-1 (%)", fontsize=8)
        if xlabel and i >= len(axes) - ncols:
            ax.set_xlabel(xlabel, fontsize=8)


def severity_curves(
    *, cells: pd.DataFrame, clean: dict[str, float], suite: str, title: str, path: Path
) -> Path | None:
    """One panel per set: top-1 vs severity (0 = clean) per model."""
    sub = cells[(cells["suite"] == suite) & ~cells["clean"] & cells["severity"].notna()]
    if sub.empty:
        return None
    models = sorted(set(cells["model"]))
    colour = _colours(models)
    sets = sorted(set(sub["set"]))
    fig, axes = _grid(len(sets))
    for ax, name in zip(axes, sets, strict=True):
        for model in models:
            g = sub[(sub["set"] == name) & (sub["model"] == model)].sort_values("severity")
            if g.empty:
                continue
            xs = [0, *(int(s) for s in g["severity"])]
            ys = [clean.get(model, math.nan) * 100.0, *(g["top1"] * 100.0)]
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color=colour[model], label=model)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 100)
        top = int(sub["severity"].max())
        ax.set_xticks(range(top + 1), labels=["clean", *(str(s) for s in range(1, top + 1))])
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    _axis_labels(axes, cols=5, xlabel="severity")
    fig.suptitle(title, fontsize=10)
    _legend(fig, axes)
    return _save(fig, path)


def level_curves(*, curves: pd.DataFrame, suite: str, title: str, path: Path) -> Path | None:
    """One panel per parametric set: top-1 vs the level value (σ, contrast, noise width, ...),
    levels evenly spaced in severity order and labelled with their values (model-vs-human style)."""
    sub = curves[curves["suite"] == suite]
    if sub.empty:
        return None
    models = sorted(set(curves["model"]))
    colour = _colours(models)
    sets = sorted(set(sub["set"]))
    fig, axes = _grid(len(sets), cols=4, cell=(3.0, 2.4))
    for ax, name in zip(axes, sets, strict=True):
        g_set = sub[sub["set"] == name]
        levels = g_set.drop_duplicates("severity").sort_values("severity")
        pos = {int(s): i for i, s in enumerate(levels["severity"])}
        for model in models:
            g = g_set[g_set["model"] == model].sort_values("severity")
            if g.empty:
                continue
            xs = [pos[int(s)] for s in g["severity"]]
            ax.plot(
                xs,
                g["top1"] * 100.0,
                marker="o",
                markersize=3,
                linewidth=1.2,
                color=colour[model],
                label=model,
            )
        labels = [str(v) for v in levels["level"]]
        tilt = 45 if max(map(len, labels)) > 4 else 0
        ax.set_xticks(range(len(levels)), labels=labels, fontsize=7, rotation=tilt)
        ax.set_xlabel(str(levels["level_label"].iloc[0]), fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 100)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    _axis_labels(axes, cols=4, xlabel=None)
    fig.suptitle(title, fontsize=10)
    _legend(fig, axes)
    return _save(fig, path)

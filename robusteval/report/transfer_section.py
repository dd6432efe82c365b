"""The Transfer section: accuracy vs shots, the LP - VP gap vs model size, ECE, freezing's trade-off.

Reads ``runs/<NAME>/transfer.jsonl`` (:class:`robusteval.transfer.records.TransferRecord`); the
final epoch's test top-1 and ECE of every cell, averaged over seeds (std over seeds as error bars).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robusteval.report.extensions import Section, SectionContext, register_section
from robusteval.report.figures import _colours, _figure, _save
from robusteval.report.markdown import pct, table
from robusteval.transfer.records import load_transfer_records, shots_label

_STYLE = {"lp": "-", "ilm-vp": "--", "finetune": ":", "freeze": "-."}


def _shots_order(labels: pd.Series) -> list[str]:
    nums = sorted({int(s) for s in labels if s != "full"})
    return [str(n) for n in nums] + (["full"] if (labels == "full").any() else [])


def cells_frame(run_dir: Path) -> pd.DataFrame:
    """One row per finished cell: model, dataset, method, shots (label), seed, top1, ece, ..."""
    rows = [
        {
            "model": r.model,
            "dataset": r.dataset,
            "method": r.method,
            "shots": shots_label(r.shots),
            "seed": r.seed,
            "top1": r.final_top1,
            "ece": r.final_ece,
            "top1_init": r.top1_init,
            "seconds": r.seconds,
            "params_m": r.params_m,
            "epochs": r.epochs,
            "n_train": r.n_train,
            "frozen_fraction": r.frozen_fraction,
            "scan_backend": r.scan_backend,
        }  # fmt: skip
        for r in load_transfer_records(run_dir)
    ]
    df = pd.DataFrame(rows)
    for col in ("top1_init", "frozen_fraction", "params_m"):  # None (not applicable) → NaN
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def accuracy_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of top-1 and ECE per (dataset, model, method, shots)."""
    g = cells.groupby(["dataset", "model", "method", "shots"], sort=False)
    out = g.agg(
        seeds=("seed", "nunique"), top1_mean=("top1", "mean"), top1_std=("top1", "std"),
        ece_mean=("ece", "mean"), top1_init_mean=("top1_init", "mean"), params_m=("params_m", "first"),
    ).reset_index()  # fmt: skip
    out["top1_std"] = out["top1_std"].fillna(0.0)
    return out


def gap_table(acc: pd.DataFrame) -> pd.DataFrame:
    """LP - ILM-VP top-1 per (model, dataset, shots) where both ran, with the model's size."""
    key = ["dataset", "model", "shots"]
    lp = acc[acc["method"] == "lp"].set_index(key)["top1_mean"]
    vp = acc[acc["method"] == "ilm-vp"].set_index(key)["top1_mean"]
    both = pd.concat({"lp": lp, "vp": vp}, axis=1).dropna()
    if both.empty:
        return pd.DataFrame(columns=[*key, "lp", "vp", "gap", "params_m"])
    both["gap"] = both["lp"] - both["vp"]
    size = acc.groupby("model")["params_m"].first()
    out = both.reset_index()
    out["params_m"] = out["model"].map(size)
    return out


def freeze_table(cells: pd.DataFrame) -> pd.DataFrame:
    """freeze vs finetune of the same (model, dataset, shots, seed): time saved, accuracy kept."""
    key = ["model", "dataset", "shots", "seed"]
    ft = cells.loc[cells["method"] == "finetune", [*key, "top1", "seconds"]]
    fz = cells.loc[cells["method"] == "freeze", [*key, "top1", "seconds", "frozen_fraction"]]
    pair = ft.merge(fz, on=key, suffixes=("_ft", "_fz"))
    if pair.empty:
        return pd.DataFrame(
            columns=[
                "model",
                "dataset",
                "shots",
                "seeds",
                "frozen_fraction",
                "time_saved",
                "top1_finetune",
                "top1_freeze",
                "accuracy_kept",
            ]
        )
    pair["time_saved"] = 1 - pair["seconds_fz"] / pair["seconds_ft"]
    pair["accuracy_kept"] = pair["top1_fz"] / pair["top1_ft"].where(pair["top1_ft"] > 0)
    g = pair.groupby(["model", "dataset", "shots"], sort=False)
    return g.agg(
        seeds=("seed", "nunique"), frozen_fraction=("frozen_fraction", "mean"), time_saved=("time_saved", "mean"),
        top1_finetune=("top1_ft", "mean"), top1_freeze=("top1_fz", "mean"), accuracy_kept=("accuracy_kept", "mean"),
    ).reset_index()  # fmt: skip


def _plot_shots(acc: pd.DataFrame, path: Path) -> Path:
    datasets = list(dict.fromkeys(acc["dataset"]))
    models = list(dict.fromkeys(acc["model"]))
    colours = _colours(models)
    fig = _figure(4.2 * len(datasets) + 2.6, 3.4)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dname in zip(axes, datasets, strict=True):
        sub = acc[acc["dataset"] == dname]
        order = _shots_order(sub["shots"])
        for (model, method), line in sub.groupby(["model", "method"], sort=False):
            line = line.set_index("shots").reindex(order).dropna(subset=["top1_mean"])
            x = [order.index(s) for s in line.index]
            ax.errorbar(
                x, 100 * line["top1_mean"], yerr=100 * line["top1_std"], capsize=3, marker="o", ms=3,
                color=colours[model], linestyle=_STYLE.get(method, "-"), label=f"{model} {method}",
            )  # fmt: skip
        ax.set_xticks(range(len(order)), order)
        ax.set_xlabel("shots per class")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(dname if len(dname) < 40 else dname[:37] + "...")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(fig, path)


def _plot_gap(gap: pd.DataFrame, path: Path) -> Path:
    per_model = gap.groupby("model").agg(gap=("gap", "mean"), params_m=("params_m", "first")).reset_index()
    fig = _figure(4.6, 3.4)
    ax = fig.subplots()
    ax.axhline(0, color="grey", lw=0.8)
    ax.scatter(per_model["params_m"], 100 * per_model["gap"], color="tab:blue")
    for _, r in per_model.iterrows():
        ax.annotate(
            r["model"], (r["params_m"], 100 * r["gap"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("LP - ILM-VP top-1 (points)")
    ax.set_title("LP - VP gap vs model size (mean over datasets, shots)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _pm(mean: float, std: float) -> str:
    return f"{pct(mean, 1)} ± {100 * std:.1f}" if np.isfinite(std) and std > 0 else pct(mean, 1)


@register_section("transfer", order=50)
def transfer_section(ctx: SectionContext) -> Section | None:
    """None when the run holds no transfer records."""
    cells = cells_frame(ctx.run_dir)
    if cells.empty:
        return None
    acc = accuracy_table(cells)
    lines = ["## Transfer", ""]
    lines += [
        f"{len(cells)} cells: {cells['model'].nunique()} models, {cells['dataset'].nunique()} datasets, "
        f"methods {', '.join(dict.fromkeys(cells['method']))}. Final-epoch test top-1, mean ± std over "
        "seeds; ECE is the standard 15-bin ECE over the whole test split (the study's code sums a "
        "per-batch ECE instead, which grows with the number of test batches).",
        "",
    ]
    fig = _plot_shots(acc, ctx.figures_dir / "transfer_shots.png")
    figures = [fig]
    lines += [f"![accuracy vs shots]({fig.relative_to(ctx.out_dir).as_posix()})", ""]
    for dname, sub in acc.groupby("dataset", sort=False):
        order = _shots_order(sub["shots"])
        rows = []
        for (model, method), g in sub.groupby(["model", "method"], sort=False):
            g = g.set_index("shots")
            rows.append(
                [model, method]
                + [
                    f"{_pm(g.at[s, 'top1_mean'], g.at[s, 'top1_std'])} ({pct(g.at[s, 'ece_mean'], 1)})"
                    if s in g.index else "--"
                    for s in order
                ]
            )  # fmt: skip
        lines += [f"**{dname}**: top-1 % ± std over seeds (ECE %), by shots per class", ""]
        lines += table(["model", "method", *order], rows)
        lines += [""]
    tables = {"transfer_cells": cells, "transfer_accuracy": acc}
    vp = acc[acc["method"] == "ilm-vp"].dropna(subset=["top1_init_mean"])
    if not vp.empty:
        lines += ["ILM-VP against its un-prompted baseline (same frequency mapping, no prompt):", ""]
        lines += table(
            ["dataset", "model", "shots", "baseline top-1 %", "ILM-VP top-1 %"],
            [
                [r.dataset, r.model, r.shots, pct(r.top1_init_mean, 1), pct(r.top1_mean, 1)]
                for r in vp.itertuples()
            ],
        )
        lines += [""]
    gap = gap_table(acc)
    if not gap.empty:
        tables["transfer_gap"] = gap
        gfig = _plot_gap(gap, ctx.figures_dir / "transfer_gap.png")
        figures.append(gfig)
        lines += [f"![LP - VP gap vs size]({gfig.relative_to(ctx.out_dir).as_posix()})", ""]
    frz = freeze_table(cells)
    if not frz.empty:
        tables["transfer_freeze"] = frz
        lines += ["Gradient freezing against full fine-tuning of the same cells:", ""]
        lines += table(
            ["model", "dataset", "shots", "frozen weights %", "time saved %", "finetune top-1 %", "freeze top-1 %", "accuracy kept %"],
            [
                [r.model, r.dataset, r.shots, pct(r.frozen_fraction, 0), pct(r.time_saved, 1),
                 pct(r.top1_finetune, 1), pct(r.top1_freeze, 1), pct(r.accuracy_kept, 1)]
                for r in frz.itertuples()
            ],
        )  # fmt: skip
        lines += [""]
    return Section(lines=lines, tables=tables, figures=figures)

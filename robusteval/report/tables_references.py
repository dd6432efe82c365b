"""Published figures beside ours: the seed study's and CLIP-Mamba's numbers, and the rows the
zero-shot comparison reads."""

from __future__ import annotations

import math

import pandas as pd

from robusteval import metrics
from robusteval.references import CLIP_MAMBA_ZERO_SHOT, SEED_STUDY_FIGURES
from robusteval.report.records import CORRUPTION_SUITES, OOD_SUITES, Run
from robusteval.report.tables_accuracy import _frame, _sort, clean_accuracy

_PAPER_COLUMNS = [
    "source",
    "paper_model",
    "same_model",
    "set",
    "paper_top1",
    "model",
    "kind",
    "top1",
    "ours_at",
]


def paper_table(run: Run, cells: pd.DataFrame) -> pd.DataFrame:
    """The seed study's and CLIP-Mamba's published figures beside each of our models' accuracy
    on the same set (at the study's severity when the spec names it, else the mean over severities)."""
    clean = clean_accuracy(cells)
    rows = []
    for fig in (*SEED_STUDY_FIGURES, *CLIP_MAMBA_ZERO_SHOT):
        for model in run.models:
            if fig.set == "clean":
                top1, at = clean.get(model, (math.nan, math.nan))[0], "clean"
            else:
                g = cells[
                    (cells["model"] == model) & (cells["set"] == fig.set) & (cells["suite"] == "study21")
                ]
                level = run.set_info(fig.set, "study21").study_level
                at_level = g[g["severity"] == level] if level is not None else g.iloc[0:0]
                if len(at_level):
                    top1, at = float(at_level["top1"].iloc[0]), f"severity {level}"
                else:
                    top1 = metrics.mean_over_severities(dict(enumerate(g["top1"])))
                    at = "mean over severities" if len(g) else ""
            rows.append(
                {
                    "source": fig.source,
                    "paper_model": fig.model,
                    "same_model": fig.ours,
                    "set": fig.set,
                    "paper_top1": fig.top1,
                    "model": model,
                    "kind": run.kinds.get(model, "classifier"),
                    "top1": top1,
                    "ours_at": at,
                }
            )
    return _frame(rows, _PAPER_COLUMNS)


_ZS_COLUMNS = ["model", "kind", "suite", "set", "label_space", "top1"]


def zero_shot_table(cells: pd.DataFrame, set_acc: pd.DataFrame) -> pd.DataFrame:
    """Top-1 of every model (zero-shot CLIP and supervised alike) on clean, each corrupted set
    (mean over severities) and each OOD set — the rows the zero-shot comparison reads."""
    clean = cells[cells["clean"]][_ZS_COLUMNS]
    keep = set_acc[set_acc["suite"].isin((*CORRUPTION_SUITES, *OOD_SUITES))][_ZS_COLUMNS]
    df = pd.concat([clean, keep], ignore_index=True) if len(clean) else keep
    return _sort(df.reset_index(drop=True), ["suite", "set", "label_space", "model"])

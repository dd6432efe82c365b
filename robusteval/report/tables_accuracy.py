"""Accuracy tables derived from a run's records: per cell, per set (mean over severities), the
per-model summary and the OOD sets beside clean accuracy; and the helpers every table shares
(:func:`fmt_level`, clean accuracy per label space, stable sorting).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from robusteval import metrics
from robusteval.report.records import (
    CORRUPTION_SUITES,
    MAIN_LABEL_SPACE,
    OOD_SUITES,
    Run,
    is_clean,
    num,
    suite_rank,
)


def fmt_level(value: Any) -> str:
    """A level value as the report prints it: ``3``, ``1.5``, ``inf``, or the text itself."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        v = float(value)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v.is_integer():
            return str(int(v))
        return f"{v:g}"
    if isinstance(value, (list, tuple)):
        return "–".join(fmt_level(v) for v in value)
    return str(value)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


# --- per cell -------------------------------------------------------------------------------

_CELL_COLUMNS = [
    "model", "kind", "suite", "set", "severity", "level", "level_label", "label_space", "subset",
    "clean", "n", "top1", "top5", "ece", "ece_from", "seconds", "img_per_s", "cell", "preds",
]  # fmt: skip


def _cell_ece(run: Run, rec: dict[str, Any]) -> tuple[float, str]:
    preds = run.preds(rec)
    if preds is None:
        return num(rec.get("ece")), "record"
    mask = metrics.known_labels(preds.labels)
    correct = metrics.topk_correct(top5=preds.top5, labels=preds.labels, k=1)[mask]
    return metrics.expected_calibration_error(confidence=preds.top5_prob[mask, 0], correct=correct), "preds"


def cells_table(run: Run) -> pd.DataFrame:
    """One row per scored cell (model, set, severity) with its level value and recomputed ECE."""
    rows = []
    for rec in run.records:
        suite = str(rec["suite"])
        info = run.set_info(str(rec["set"]), suite)
        sev = rec.get("severity")
        params = rec.get("params") if isinstance(rec.get("params"), dict) else {}
        value = params["value"] if "value" in params else info.values.get(sev) if sev is not None else None
        ece, ece_from = _cell_ece(run, rec)
        rows.append(
            {
                "model": rec["model"],
                "kind": run.kinds.get(rec["model"], "classifier"),
                "suite": suite,
                "set": str(rec["set"]),
                "severity": None if sev is None else int(sev),
                "level": fmt_level(value) if value is not None else ("" if sev is None else str(sev)),
                "level_label": info.level_label,
                "label_space": str(rec.get("label_space") or MAIN_LABEL_SPACE),
                "subset": rec.get("subset") or "",
                "clean": is_clean(rec),
                "n": int(num(rec.get("n")) if math.isfinite(num(rec.get("n"))) else 0),
                "top1": num(rec.get("top1")),
                "top5": num(rec.get("top5")),
                "ece": ece,
                "ece_from": ece_from,
                "seconds": num(rec.get("seconds")),
                "img_per_s": num(rec.get("img_per_s")),
                "cell": str(rec.get("cell") or ""),
                "preds": str(rec.get("preds") or ""),
            }
        )
    df = _frame(rows, _CELL_COLUMNS)
    df["severity"] = df["severity"].astype("Int64")
    return df


def _main_clean(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["clean"] & (cells["label_space"] == MAIN_LABEL_SPACE)]


def corruption_label_space(cells: pd.DataFrame) -> str:
    """The label space corrupted sets were scored in (ImageNet-1k unless the run is, e.g., 16-class).

    Clean accuracy beside mCA, relative robustness and CE must come from this same label space.
    """
    sub = cells[cells["suite"].isin(CORRUPTION_SUITES) & ~cells["clean"]]
    spaces = sorted(set(sub["label_space"]))
    return MAIN_LABEL_SPACE if not spaces or MAIN_LABEL_SPACE in spaces else spaces[0]


def clean_accuracy(
    cells: pd.DataFrame, *, label_space: str = MAIN_LABEL_SPACE
) -> dict[str, tuple[float, float]]:
    """Model → (top-1, top-5) on clean images in ``label_space`` (the largest clean cell wins)."""
    sub = cells[cells["clean"] & (cells["label_space"] == label_space)]
    out: dict[str, tuple[float, float]] = {}
    for model, grp in sub.groupby("model", sort=True):
        best = grp.sort_values(["n", "set", "subset"], kind="stable").iloc[-1]
        out[str(model)] = (float(best["top1"]), float(best["top5"]))
    return out


# --- per set --------------------------------------------------------------------------------

_SET_COLUMNS = ["model", "kind", "suite", "set", "label_space", "n_severities", "top1", "top5", "ece"]


def _by_severity(grp: pd.DataFrame, column: str) -> dict[int, float]:
    """Severity → value of one set's cells (a set scored without severities counts as level 0)."""
    return {
        (0 if pd.isna(s) else int(s)): float(v) for s, v in zip(grp["severity"], grp[column], strict=True)
    }


def set_accuracy_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (model, set): accuracy and ECE averaged over the set's severities (non-clean sets)."""
    rows = []
    sub = cells[~cells["clean"]]
    for (model, kind, suite, name, space), grp in sub.groupby(
        ["model", "kind", "suite", "set", "label_space"], sort=True
    ):
        rows.append(
            {
                "model": model,
                "kind": kind,
                "suite": suite,
                "set": name,
                "label_space": space,
                "n_severities": len(grp),
                "top1": metrics.mean_over_severities(_by_severity(grp, "top1")),
                "top5": metrics.mean_over_severities(_by_severity(grp, "top5")),
                "ece": metrics.mean_over_severities(_by_severity(grp, "ece")),
            }
        )
    return _sort(_frame(rows, _SET_COLUMNS), ["suite", "set", "label_space", "model"])


def _sort_column(column: pd.Series) -> pd.Series:
    """Sort key of one column: suites in report order, the main label space first, rest as is."""
    if column.name == "suite":
        return column.map(lambda v: "{:02d}{}".format(*suite_rank(str(v))))
    if column.name == "label_space":
        return column.map(lambda v: ("0" if v == MAIN_LABEL_SPACE else "1") + str(v))
    return column


def _sort(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """``df`` sorted by the columns ``by`` in order (stable), index reset."""
    if df.empty:
        return df.reset_index(drop=True)
    return df.sort_values(by, key=_sort_column, kind="stable").reset_index(drop=True)


# --- summary --------------------------------------------------------------------------------

_SUMMARY_COLUMNS = [
    "model", "kind", "top1", "top5", "mCA", "mCA_sets", "relative_robustness",
    "best_set", "best_top1", "worst_set", "worst_top1", "acc16", "acc16_sets",
]  # fmt: skip


def summary_table(
    cells: pd.DataFrame, set_acc: pd.DataFrame, models: list[str], kinds: dict[str, str]
) -> pd.DataFrame:
    """Per model: clean top-1/top-5, mCA over the study's transformations, relative robustness,
    best and worst transformation (ties broken by name), mean 16-class OOD accuracy."""
    clean = clean_accuracy(cells, label_space=corruption_label_space(cells))
    rows = []
    for model in models:
        top1, top5 = clean.get(model, (math.nan, math.nan))
        study = set_acc[(set_acc["model"] == model) & (set_acc["suite"] == "study21")]
        by_set = {
            str(s): float(v) for s, v in zip(study["set"], study["top1"], strict=True) if math.isfinite(v)
        }
        mca = metrics.mean_corrupted_accuracy(by_set)
        ranked = sorted(by_set.items(), key=lambda kv: (-kv[1], kv[0]))
        mvh = set_acc[(set_acc["model"] == model) & (set_acc["suite"] == "modelvshuman16")]
        rows.append(
            {
                "model": model,
                "kind": kinds.get(model, "classifier"),
                "top1": top1,
                "top5": top5,
                "mCA": mca,
                "mCA_sets": len(by_set),
                "relative_robustness": metrics.relative_robustness(mca=mca, clean=top1),
                "best_set": ranked[0][0] if ranked else "",
                "best_top1": ranked[0][1] if ranked else math.nan,
                "worst_set": ranked[-1][0] if ranked else "",
                "worst_top1": ranked[-1][1] if ranked else math.nan,
                "acc16": metrics.mean_of(mvh["top1"]),
                "acc16_sets": len(mvh),
            }
        )
    return _frame(rows, _SUMMARY_COLUMNS)


_OOD_COLUMNS = [
    "model", "kind", "suite", "set", "label_space", "n", "top1", "top5", "clean_top1", "drop", "top1_lo", "top1_hi",
]  # fmt: skip


def ood_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Each OOD cell beside the same model's clean accuracy on the same label space (``nan`` if none
    was scored, e.g. the 16-class stimuli have no clean counterpart)."""
    rows = []
    sub = cells[cells["suite"].isin(OOD_SUITES) & ~cells["clean"]]
    baselines: dict[str, dict[str, tuple[float, float]]] = {}
    for rec in sub.itertuples(index=False):
        space = rec.label_space
        if space not in baselines:
            baselines[space] = clean_accuracy(cells, label_space=space)
        base = baselines[space].get(rec.model, (math.nan, math.nan))[0]
        rows.append(
            {
                "model": rec.model,
                "kind": rec.kind,
                "suite": rec.suite,
                "set": rec.set,
                "label_space": space,
                "n": rec.n,
                "top1": rec.top1,
                "top5": rec.top5,
                "clean_top1": base,
                "drop": base - rec.top1,
                "top1_lo": getattr(rec, "top1_lo", math.nan),
                "top1_hi": getattr(rec, "top1_hi", math.nan),
            }
        )
    return _sort(_frame(rows, _OOD_COLUMNS), ["suite", "set", "model"])

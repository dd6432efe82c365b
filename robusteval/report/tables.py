"""Tidy tables derived from a run's records: one row per observation, sorted, nothing typed by hand.

Accuracies, errors and ECE are fractions in [0, 1]; ``nan`` marks a value the records do not
support (a missing cell, an undefined ratio). :func:`build_tables` derives every table the report,
the gates and the CSV/JSON exports use, so they can never disagree.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robusteval import metrics
from robusteval.references import CLIP_MAMBA_ZERO_SHOT, SEED_STUDY_FIGURES
from robusteval.report.records import (
    CORRUPTION_SUITES,
    CURVE_SUITES,
    MAIN_LABEL_SPACE,
    OOD_SUITES,
    Run,
    is_clean,
    num,
    suite_rank,
)


@dataclass(frozen=True)
class Tables:
    """Every derived table (pandas DataFrames, tidy); field names are the export file names."""

    cells: pd.DataFrame
    set_accuracy: pd.DataFrame
    summary: pd.DataFrame
    ood: pd.DataFrame
    corruption_error: pd.DataFrame
    mce: pd.DataFrame
    ece: pd.DataFrame
    kappa: pd.DataFrame
    curves: pd.DataFrame
    paper: pd.DataFrame
    zero_shot: pd.DataFrame
    provenance: pd.DataFrame
    versions: pd.DataFrame
    spec_hashes: pd.DataFrame
    paired: pd.DataFrame
    power: pd.DataFrame
    ood_detection: pd.DataFrame
    real: pd.DataFrame

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


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


# --- corruption errors ----------------------------------------------------------------------

_CE_COLUMNS = ["model", "suite", "set", "normalisation", "reference", "n_severities", "ce", "relative_ce"]
_MCE_COLUMNS = ["model", "suite", "normalisation", "reference", "n_sets", "mce", "relative_mce"]


def _errors(cells: pd.DataFrame, model: str, name: str, space: str) -> dict[int, float]:
    g = cells[(cells["model"] == model) & (cells["set"] == name) & (cells["label_space"] == space)]
    return {int(s): 1.0 - float(v) for s, v in zip(g["severity"].fillna(0), g["top1"], strict=True)}


def corruption_error_tables(
    cells: pd.DataFrame, *, baseline: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CE per (model, set) and mCE per (model, suite), under each normalisation that applies.

    ``baseline``: the model whose errors normalise CE on every corruption suite (study21,
    imagenet-c). AlexNet normalisation (published errors) applies to ImageNet-C sets regardless.
    """
    space = corruption_label_space(cells)
    clean_err = {m: 1.0 - v[0] for m, v in clean_accuracy(cells, label_space=space).items()}
    sub = cells[cells["suite"].isin(CORRUPTION_SUITES) & ~cells["clean"]]
    keys = sorted(
        {(r.suite, r.set, r.label_space) for r in sub.itertuples(index=False)},
        key=lambda k: (suite_rank(k[0]), k[1], k[2]),
    )
    models = sorted(set(sub["model"]))
    rows = []
    for (suite, name, space), model in itertools.product(keys, models):
        errs = _errors(cells, model, name, space)
        if not errs:
            continue
        if baseline is not None:
            base = _errors(cells, baseline, name, space)
            rows.append(
                {
                    "model": model,
                    "suite": suite,
                    "set": name,
                    "normalisation": "baseline",
                    "reference": baseline,
                    "n_severities": len(errs),
                    "ce": metrics.corruption_error(errors=errs, baseline_errors=base),
                    "relative_ce": metrics.relative_corruption_error(
                        errors=errs,
                        clean_error=clean_err.get(model, math.nan),
                        baseline_errors=base,
                        baseline_clean_error=clean_err.get(baseline, math.nan),
                    ),
                }
            )
        corruption = metrics.imagenet_c_name(name, suite=suite)
        if corruption is not None:
            rows.append(
                {
                    "model": model,
                    "suite": suite,
                    "set": name,
                    "normalisation": "alexnet",
                    "reference": "AlexNet",
                    "n_severities": len(errs),
                    "ce": metrics.alexnet_corruption_error(corruption=corruption, errors=errs),
                    "relative_ce": metrics.alexnet_relative_corruption_error(
                        corruption=corruption, errors=errs, clean_error=clean_err.get(model, math.nan)
                    ),
                }
            )
    ce = _frame(rows, _CE_COLUMNS)
    mrows = []
    for (model, suite, norm, ref), grp in ce.groupby(
        ["model", "suite", "normalisation", "reference"], sort=True
    ):
        mrows.append(
            {
                "model": model,
                "suite": suite,
                "normalisation": norm,
                "reference": ref,
                "n_sets": int(grp["ce"].notna().sum()),
                "mce": metrics.mean_of(grp["ce"]),
                "relative_mce": metrics.mean_of(grp["relative_ce"]),
            }
        )
    ce = _sort(ce, ["normalisation", "suite", "set", "model"])
    mce = _frame(mrows, _MCE_COLUMNS)
    return ce, _sort(mce, ["normalisation", "suite", "model"])


# --- calibration and consistency ------------------------------------------------------------

_ECE_COLUMNS = ["model", "kind", "suite", "set", "label_space", "ece"]


def ece_table(cells: pd.DataFrame, set_acc: pd.DataFrame) -> pd.DataFrame:
    """ECE (15 bins, top-1 probability) per model on clean cells and per set (mean over severities)."""
    clean = cells[cells["clean"]][["model", "kind", "suite", "set", "label_space", "ece"]]
    df = pd.concat([clean, set_acc[_ECE_COLUMNS]], ignore_index=True) if len(clean) else set_acc[_ECE_COLUMNS]
    return _sort(df.reset_index(drop=True), ["suite", "set", "label_space", "model"])


_KAPPA_COLUMNS = [
    "model_a",
    "model_b",
    "suite",
    "set",
    "severity",
    "label_space",
    "n",
    "acc_a",
    "acc_b",
    "c_obs",
    "c_exp",
    "kappa",
]


def _correct_by_id(run: Run, rec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids sorted, top-1 correct) of a cell's images with known labels; ``None`` without preds."""
    preds = run.preds(rec)
    if preds is None:
        return None
    mask = metrics.known_labels(preds.labels)
    correct = metrics.topk_correct(top5=preds.top5, labels=preds.labels, k=1)[mask]
    ids = preds.ids[mask]
    order = np.argsort(ids, kind="stable")
    return ids[order], correct[order]


def kappa_table(run: Run) -> pd.DataFrame:
    """Cohen's kappa error consistency for every model pair on every cell both scored (same ids).

    Predictions are read one cell at a time (all models of it), so memory stays bounded by one cell.
    """
    groups: dict[tuple, dict[str, dict[str, Any]]] = {}
    for rec in run.records:
        key = (
            str(rec["suite"]),
            str(rec["set"]),
            rec.get("severity"),
            str(rec.get("label_space") or MAIN_LABEL_SPACE),
            str(rec.get("subset") or ""),
        )
        groups.setdefault(key, {})[str(rec["model"])] = rec
    rows = []
    for (suite, name, sev, space, _subset), by_model in groups.items():
        if len(by_model) < 2:
            continue
        correct = {m: _correct_by_id(run, rec) for m, rec in by_model.items()}
        for a, b in itertools.combinations(sorted(by_model), 2):
            ca, cb = correct[a], correct[b]
            if ca is None or cb is None:
                continue
            _, ia, ib = np.intersect1d(ca[0], cb[0], return_indices=True)
            k = metrics.error_consistency(correct_a=ca[1][ia], correct_b=cb[1][ib])
            rows.append(
                {
                    "model_a": a,
                    "model_b": b,
                    "suite": suite,
                    "set": name,
                    "severity": sev,
                    "label_space": space,
                    "n": k.n,
                    "acc_a": k.acc_a,
                    "acc_b": k.acc_b,
                    "c_obs": k.c_obs,
                    "c_exp": k.c_exp,
                    "kappa": k.kappa,
                }
            )
    df = _frame(rows, _KAPPA_COLUMNS)
    df["severity"] = df["severity"].astype("Int64")
    return _sort(df, ["suite", "set", "label_space", "severity", "model_a", "model_b"])


# --- curves, references, zero-shot ----------------------------------------------------------

_CURVE_COLUMNS = ["model", "kind", "suite", "set", "severity", "level", "level_label", "top1"]


def curves_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per level of the parametric sets (frequency, ood-parametric), for curves."""
    sub = cells[cells["suite"].isin(CURVE_SUITES) & ~cells["clean"]]
    return _sort(sub[_CURVE_COLUMNS].reset_index(drop=True), ["suite", "set", "severity", "model"])


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


# --- provenance -----------------------------------------------------------------------------

_PROV_COLUMNS = [
    "model", "kind", "weights_source", "weights_sha256", "preprocess", "data_config", "device", "amp",
    "forward_batch", "cells", "created_first", "created_last", "commands", "zero_shot",
]  # fmt: skip


def _distinct(values: list[Any]) -> str:
    seen = sorted(
        {
            json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
            for v in values
            if v not in (None, "", {})
        }
    )
    return "\n".join(seen)  # one distinct value per line (values such as preprocess hold "; ")


def provenance_tables(run: Run) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per model: weights identity, preprocessing, device settings, record time span and the
    commands recorded; every versions key with its values; every spec hash per set and severity."""
    rows = []
    for model in run.models:
        recs = [r for r in run.records if r["model"] == model]
        weights = [r.get("weights") or {} for r in recs]
        created = sorted(str(r["created"]) for r in recs if r.get("created"))
        rows.append(
            {
                "model": model,
                "kind": run.kinds.get(model, "classifier"),
                "weights_source": _distinct([w.get("source") for w in weights]),
                "weights_sha256": _distinct([w.get("sha256") for w in weights]),
                "preprocess": _distinct([r.get("preprocess") for r in recs]),
                "data_config": _distinct([r.get("data_config") for r in recs]),
                "device": _distinct([r.get("device") for r in recs]),
                "amp": _distinct([r.get("amp") for r in recs]),
                "forward_batch": _distinct([r.get("forward_batch") for r in recs]),
                "cells": len(recs),
                "created_first": created[0] if created else "",
                "created_last": created[-1] if created else "",
                "commands": _distinct([r.get("command") for r in recs]),
                "zero_shot": _distinct([r.get("zero_shot") for r in recs]),
            }
        )
    prov = _frame(rows, _PROV_COLUMNS)

    versions: dict[tuple[str, str], set[str]] = {}
    for rec in run.records:
        for key, val in (rec.get("versions") or {}).items():
            versions.setdefault((str(key), str(val)), set()).add(str(rec["model"]))
    vrows = [
        {"package": k, "version": v, "models": ", ".join(sorted(ms))}
        for (k, v), ms in sorted(versions.items())
    ]

    hashes: dict[tuple[str, int, str], int] = {}
    for rec in run.records:
        if rec.get("spec_hash") and rec.get("severity") is not None:
            key = (str(rec["set"]), int(rec["severity"]), str(rec["spec_hash"]))
            hashes[key] = hashes.get(key, 0) + 1
    hrows = [
        {"set": s, "severity": sev, "spec_hash": h, "cells": n} for (s, sev, h), n in sorted(hashes.items())
    ]
    return (
        prov,
        _frame(vrows, ["package", "version", "models"]),
        _frame(hrows, ["set", "severity", "spec_hash", "cells"]),
    )


def build_tables(run: Run, *, baseline: str | None, real_labels: Path | None = None) -> Tables:
    """Every table of the report from ``run``; ``baseline`` names the CE-normalising model.

    Accuracy tables carry ``<metric>_lo`` / ``<metric>_hi`` 95% interval columns
    (:mod:`robusteval.report.intervals`); ``paired`` and ``power`` hold the paired model comparisons.
    ``real_labels``: ReaL's ``real.json``, for the ``real`` table (empty without it).
    """
    from robusteval.report import detection, intervals, real

    cells = cells_table(run)
    set_acc = set_accuracy_table(cells)
    ce, mce = corruption_error_tables(cells, baseline=baseline)
    prov, versions, hashes = provenance_tables(run)
    cor = intervals.Correctness(run)
    summary = summary_table(cells, set_acc, run.models, run.kinds)
    summary = intervals.add_summary_intervals(run, cells, summary, cor, space=corruption_label_space(cells))
    mce = intervals.add_mce_intervals(run, cells, ce, mce, cor)
    set_acc = intervals.add_set_intervals(run, cells, set_acc, cor)
    paired = intervals.paired_table(run, cor)
    cells = intervals.add_cell_intervals(cells)
    return Tables(
        cells=cells,
        set_accuracy=set_acc,
        summary=summary,
        ood=ood_table(cells),
        corruption_error=ce,
        mce=mce,
        ece=ece_table(cells, set_acc),
        kappa=kappa_table(run),
        curves=curves_table(cells),
        paper=paper_table(run, cells),
        zero_shot=zero_shot_table(cells, set_acc),
        provenance=prov,
        versions=versions,
        spec_hashes=hashes,
        paired=paired,
        power=intervals.power_table(paired),
        ood_detection=detection.ood_detection_table(run, cells),
        real=real.real_table(run, cells, real.read_real_labels(real_labels))
        if real_labels is not None
        else real.real_table(run, cells.iloc[0:0], []),
    )

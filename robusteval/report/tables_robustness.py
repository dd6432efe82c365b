"""Robustness tables beyond accuracy: corruption error (CE, mCE), calibration (ECE), error
consistency (Cohen's kappa) and the per-level curves of the parametric sets."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from robusteval import metrics
from robusteval.report.records import CORRUPTION_SUITES, CURVE_SUITES, MAIN_LABEL_SPACE, Run, suite_rank
from robusteval.report.tables_accuracy import _frame, _sort, clean_accuracy, corruption_label_space

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


# --- curves ---------------------------------------------------------------------------------

_CURVE_COLUMNS = ["model", "kind", "suite", "set", "severity", "level", "level_label", "top1"]


def curves_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per level of the parametric sets (frequency, ood-parametric), for curves."""
    sub = cells[cells["suite"].isin(CURVE_SUITES) & ~cells["clean"]]
    return _sort(sub[_CURVE_COLUMNS].reset_index(drop=True), ["suite", "set", "severity", "model"])

"""Intervals and paired tests for the report's tables, from the records and the saved predictions.

Glue between the run (cells, per-image correctness from ``preds/*.npz``) and :mod:`robusteval.stats`:

- one cell: Wilson interval from the record's ``n`` and ``top1``/``top5``;
- a mean over cells (a set's mean over severities, mCA, relative robustness, mCE, 16-class mean):
  percentile bootstrap over images (:data:`robusteval.stats.N_BOOT` replicates, seed
  :data:`robusteval.stats.SEED`), every cell of the statistic resampled with the same images;
- every model pair on every set: paired difference (Agresti-Min), exact McNemar p, Holm over the
  pair's sets, a verdict; and the power note (images per class to detect a 1-point difference).

Columns ``<metric>_lo`` / ``<metric>_hi`` are fractions like the metric; ``nan`` where the records do
not support an interval (no saved predictions for a bootstrap, no ``n`` for Wilson).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from robusteval import metrics, stats
from robusteval.report.records import DETECTION_SUITES, MAIN_LABEL_SPACE, Run

ALPHA = 0.05
#: The difference the power note sizes a study for (fraction: 1 point).
POWER_DELTA = 0.01
POWER = 0.8
#: Classes per label space for the power note's "images per class" (others: from the labels seen).
CLASSES = {"imagenet1k": 1000, "imagenet-r200": 200, "imagenet-a200": 200, "modelvshuman16": 16}


@dataclass
class Correctness:
    """Per-image top-1 correctness of cells, read once: ids interned to ints to keep memory small."""

    run: Run
    _ids: dict[str, int] = field(default_factory=dict)
    _cells: dict[str, tuple[np.ndarray, np.ndarray] | None] = field(default_factory=dict)

    def of(self, rec: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        """(image index int64 [n] sorted, correct bool [n]) of a record's known-label images."""
        key = str(rec.get("cell") or rec.get("preds") or id(rec))
        if key not in self._cells:
            preds = self.run.preds(rec)
            if preds is None:
                self._cells[key] = None
            else:
                mask = metrics.known_labels(preds.labels)
                ok = metrics.topk_correct(top5=preds.top5, labels=preds.labels, k=1)[mask]
                idx = np.array(
                    [self._ids.setdefault(i, len(self._ids)) for i in preds.ids[mask]], dtype=np.int64
                )
                order = np.argsort(idx, kind="stable")
                self._cells[key] = (idx[order], ok[order].astype(bool))
        return self._cells[key]

    def matrix(self, recs: Iterable[Mapping[str, Any]]) -> np.ndarray | None:
        """float [n_images, n_cells]: 0/1 correctness on the union of the cells' images, ``nan`` where a
        cell lacks an image; ``None`` when any cell has no saved predictions."""
        cols = [self.of(r) for r in recs]
        if not cols or any(c is None for c in cols):
            return None
        universe = np.unique(np.concatenate([c[0] for c in cols]))  # type: ignore[index]
        out = np.full((len(universe), len(cols)), np.nan)
        for j, (idx, ok) in enumerate(cols):  # type: ignore[misc]
            out[np.searchsorted(universe, idx), j] = ok
        return out


def _boot(x: np.ndarray | None, statistic) -> tuple[float, float]:
    if x is None:
        return (math.nan, math.nan)
    _, lo, hi = stats.bootstrap_interval(x, statistic)
    return (lo, hi)


def _linear(weights: np.ndarray):
    return lambda acc: acc @ weights


def _wilson(n: Any, acc: Any) -> tuple[float, float]:
    try:
        n, acc = int(n), float(acc)
    except (TypeError, ValueError):
        return (math.nan, math.nan)
    if n <= 0 or not math.isfinite(acc):
        return (math.nan, math.nan)
    return stats.wilson_interval(k=round(acc * n), n=n)


def _records_of(run: Run, cells: pd.DataFrame) -> list[dict[str, Any]]:
    """The record of each row of ``cells`` (``cells_table`` keeps the run's record order)."""
    assert len(cells) == len(run.records)
    return run.records


def _by_severity_index(sub: pd.DataFrame) -> dict[int, int]:
    return {(0 if pd.isna(s) else int(s)): int(i) for s, i in zip(sub["severity"], sub.index, strict=True)}


# --- per cell and per set ---------------------------------------------------------------------


def add_cell_intervals(cells: pd.DataFrame) -> pd.DataFrame:
    """``top1_lo``/``top1_hi``/``top5_lo``/``top5_hi``: Wilson intervals of each cell."""
    out = cells.copy()
    for metric in ("top1", "top5"):
        bounds = [_wilson(n, a) for n, a in zip(cells["n"], cells[metric], strict=True)]
        out[f"{metric}_lo"] = [b[0] for b in bounds]
        out[f"{metric}_hi"] = [b[1] for b in bounds]
    return out


def _set_records(run: Run, cells: pd.DataFrame, mask: pd.Series) -> list[dict[str, Any]]:
    recs = _records_of(run, cells)
    return [recs[i] for i in np.flatnonzero(mask.to_numpy())]


def add_set_intervals(run: Run, cells: pd.DataFrame, set_acc: pd.DataFrame, cor: Correctness) -> pd.DataFrame:
    """``top1_lo``/``top1_hi`` per (model, set): Wilson for one level, bootstrap for a mean of levels."""
    lo, hi = [], []
    noclean = ~cells["clean"]
    for r in set_acc.itertuples(index=False):
        m = (
            noclean
            & (cells["model"] == r.model)
            & (cells["set"] == r.set)
            & (cells["label_space"] == r.label_space)
        )
        sub = cells[m]
        if len(sub) == 1:
            b = _wilson(sub["n"].iloc[0], sub["top1"].iloc[0])
        else:
            x = cor.matrix(_set_records(run, cells, m))
            b = _boot(x, _linear(np.full(len(sub), 1.0 / len(sub))))
        lo.append(b[0])
        hi.append(b[1])
    out = set_acc.copy()
    out["top1_lo"], out["top1_hi"] = lo, hi
    return out


# --- summary -------------------------------------------------------------------------------------


def _clean_record(cells: pd.DataFrame, model: str, space: str) -> int | None:
    sub = cells[cells["clean"] & (cells["label_space"] == space) & (cells["model"] == model)]
    if sub.empty:
        return None
    return int(sub.sort_values(["n", "set", "subset"], kind="stable").index[-1])


def add_summary_intervals(
    run: Run, cells: pd.DataFrame, summary: pd.DataFrame, cor: Correctness, *, space: str
) -> pd.DataFrame:
    """Wilson for clean top-1/top-5; bootstrap over images for mCA, relative robustness and acc16."""
    recs = _records_of(run, cells)
    cols: dict[str, list[float]] = {
        k: []
        for k in (
            "top1_lo",
            "top1_hi",
            "top5_lo",
            "top5_hi",
            "mCA_lo",
            "mCA_hi",
            "rr_lo",
            "rr_hi",
            "acc16_lo",
            "acc16_hi",
        )
    }
    for model in summary["model"]:
        ci = _clean_record(cells, model, space)
        for metric in ("top1", "top5"):
            b = _wilson(cells.loc[ci, "n"], cells.loc[ci, metric]) if ci is not None else (math.nan, math.nan)
            cols[f"{metric}_lo"].append(b[0])
            cols[f"{metric}_hi"].append(b[1])
        study = cells[
            ~cells["clean"]
            & (cells["model"] == model)
            & (cells["suite"] == "study21")
            & cells["top1"].notna()
        ]
        w = _set_mean_weights(study)
        rows = list(study.index)
        x = cor.matrix([recs[i] for i in rows]) if rows else None
        mca = _boot(x, _linear(w)) if rows else (math.nan, math.nan)
        if rows and ci is not None:
            xr = cor.matrix([*(recs[i] for i in rows), recs[ci]])
            rr = _boot(
                xr, lambda acc, w=w: np.where(acc[..., -1] > 0, (acc[..., :-1] @ w) / acc[..., -1], np.nan)
            )
        else:
            rr = (math.nan, math.nan)
        mvh = cells[~cells["clean"] & (cells["model"] == model) & (cells["suite"] == "modelvshuman16")]
        mrows = list(mvh.index)
        acc16 = (
            _boot(cor.matrix([recs[i] for i in mrows]), _linear(_set_mean_weights(mvh)))
            if mrows
            else (math.nan, math.nan)
        )
        for key, b in (("mCA", mca), ("rr", rr), ("acc16", acc16)):
            cols[f"{key}_lo"].append(b[0])
            cols[f"{key}_hi"].append(b[1])
    out = summary.copy()
    for key, vals in cols.items():
        out[key.replace("rr_", "relative_robustness_")] = vals
    return out


def _set_mean_weights(sub: pd.DataFrame) -> np.ndarray:
    """Weights over ``sub``'s rows whose dot product with their accuracies is the mean over sets of
    each set's mean over levels (every set weighs the same)."""
    sizes = sub.groupby("set")["set"].transform("size").to_numpy(dtype=float)
    n_sets = sub["set"].nunique()
    return 1.0 / (sizes * n_sets) if len(sub) else np.zeros(0)


def add_mce_intervals(
    run: Run, cells: pd.DataFrame, ce: pd.DataFrame, mce: pd.DataFrame, cor: Correctness
) -> pd.DataFrame:
    """``mce_lo``/``mce_hi``: bootstrap over images of mCE (the baseline model resampled with the model)."""
    recs = _records_of(run, cells)
    lo, hi = [], []
    for r in mce.itertuples(index=False):
        sets = ce[
            (ce["model"] == r.model) & (ce["suite"] == r.suite) & (ce["normalisation"] == r.normalisation)
        ]
        sets = sets[sets["ce"].notna()]
        rows: list[int] = []
        parts: list[tuple[list[int], list[int], str]] = []  # (model cols, baseline cols, set)
        for name in sets["set"]:
            sel = (
                (cells["set"] == name) & (cells["suite"] == r.suite) & ~cells["clean"] & cells["top1"].notna()
            )
            mine = _by_severity_index(cells[sel & (cells["model"] == r.model)])
            if r.normalisation == "baseline":
                base = _by_severity_index(cells[sel & (cells["model"] == r.reference)])
                common = sorted(set(mine) & set(base))
                mi, bi = [mine[s] for s in common], [base[s] for s in common]
            else:
                mi, bi = list(mine.values()), []
            a = len(rows)
            rows += mi + bi
            parts.append((list(range(a, a + len(mi))), list(range(a + len(mi), len(rows))), str(name)))
        if not rows:
            lo.append(math.nan)
            hi.append(math.nan)
            continue
        x = cor.matrix([recs[i] for i in rows])
        if r.normalisation == "baseline":

            def stat(acc, parts=parts):
                ces = [(1 - acc[..., m]).sum(-1) / (1 - acc[..., b]).sum(-1) for m, b, _ in parts]
                return np.mean(ces, axis=0)
        else:

            def stat(acc, parts=parts, suite=r.suite):
                ces = [
                    (1 - acc[..., m]).mean(-1)
                    / metrics.ALEXNET_ERRORS[metrics.imagenet_c_name(n, suite=suite)]
                    for m, _, n in parts
                ]
                return np.mean(ces, axis=0)

        b = _boot(x, stat)
        lo.append(b[0])
        hi.append(b[1])
    out = mce.copy()
    out["mce_lo"], out["mce_hi"] = lo, hi
    return out


# --- paired comparisons --------------------------------------------------------------------------

_PAIRED_COLUMNS = [
    "model_a", "model_b", "suite", "set", "label_space", "n", "only_a", "only_b",
    "acc_a", "acc_b", "diff", "diff_lo", "diff_hi", "p", "p_holm", "verdict",
]  # fmt: skip


def pooled_correctness(
    pairs: list[tuple[Correctness, Mapping[str, Any], Correctness, Mapping[str, Any]]],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Correctness of A and B on the images both scored (matched by id), pooled over the given
    (A's reader, A cell, B's reader, B cell) pairs; ``None`` when a cell has no saved predictions."""
    xa, xb = [], []
    for cor_a, ra, cor_b, rb in pairs:
        ca, cb = cor_a.of(ra), cor_b.of(rb)
        if ca is None or cb is None:
            return None
        _, ia, ib = np.intersect1d(ca[0], cb[0], return_indices=True)
        xa.append(ca[1][ia])
        xb.append(cb[1][ib])
    return (np.concatenate(xa), np.concatenate(xb)) if xa else None


def verdict(*, a: str, b: str, diff: float, p_holm: float, alpha: float = ALPHA) -> str:
    """``"a > b"``, ``"b > a"`` or ``"cannot tell"`` (Holm-adjusted p at ``alpha``)."""
    if not (math.isfinite(p_holm) and p_holm < alpha) or diff == 0:
        return "cannot tell"
    return f"{a} > {b}" if diff > 0 else f"{b} > {a}"


def paired_table(run: Run, cor: Correctness) -> pd.DataFrame:
    """Every model pair on every set both scored (a set's severities pooled, images matched by id):
    difference acc_a − acc_b with its Agresti-Min interval, exact McNemar p, Holm-adjusted p over the
    pair's family of sets, verdict."""
    groups: dict[tuple, dict[str, dict[Any, dict]]] = {}
    for rec in run.records:
        if rec["suite"] in DETECTION_SUITES:
            continue  # scored for detection, not accuracy
        key = (str(rec["suite"]), str(rec["set"]), str(rec.get("label_space") or MAIN_LABEL_SPACE))
        level = (rec.get("severity"), str(rec.get("subset") or ""))
        groups.setdefault(key, {}).setdefault(str(rec["model"]), {})[level] = rec
    rows = []
    for (suite, name, space), by_model in groups.items():
        for a, b in itertools.combinations(sorted(by_model), 2):
            levels = sorted(
                set(by_model[a]) & set(by_model[b]), key=lambda lv: (lv[0] is None, lv[0] or 0, lv[1])
            )
            pooled = pooled_correctness([(cor, by_model[a][lv], cor, by_model[b][lv]) for lv in levels])
            if pooled is None or len(pooled[0]) == 0:
                continue
            t = stats.paired_test(correct_a=pooled[0], correct_b=pooled[1])
            rows.append(
                {
                    "model_a": a, "model_b": b, "suite": suite, "set": name, "label_space": space, "n": t.n,
                    "only_a": t.b, "only_b": t.c, "acc_a": float(pooled[0].mean()), "acc_b": float(pooled[1].mean()),
                    "diff": t.diff, "diff_lo": t.lower, "diff_hi": t.upper, "p": t.p,
                }
            )  # fmt: skip
    df = pd.DataFrame(rows, columns=_PAIRED_COLUMNS[:-2])
    df["p_holm"] = math.nan
    for _, g in df.groupby(["model_a", "model_b"]):
        df.loc[g.index, "p_holm"] = stats.holm(g["p"].tolist())
    df["verdict"] = [
        verdict(a=r.model_a, b=r.model_b, diff=r.diff, p_holm=r.p_holm) for r in df.itertuples(index=False)
    ]
    return df[_PAIRED_COLUMNS]


_POWER_COLUMNS = [
    "model_a",
    "model_b",
    "label_space",
    "n",
    "discordance",
    "pairs_needed",
    "classes",
    "per_class_needed",
]


def power_table(paired: pd.DataFrame) -> pd.DataFrame:
    """Per model pair and label space: the observed discordance rate (pooled over sets) and the images
    per class one set needs for McNemar to detect a :data:`POWER_DELTA` difference (α 0.05, power 0.8)."""
    rows = []
    for (a, b, space), g in paired.groupby(["model_a", "model_b", "label_space"], sort=True):
        n = int(g["n"].sum())
        psi = float((g["only_a"].sum() + g["only_b"].sum()) / n) if n else math.nan
        need = stats.mcnemar_pairs_needed(discordance=psi, delta=POWER_DELTA, alpha=ALPHA, power=POWER)
        classes = CLASSES.get(str(space), 0)
        rows.append(
            {
                "model_a": a, "model_b": b, "label_space": space, "n": n, "discordance": psi,
                "pairs_needed": math.ceil(need) if math.isfinite(need) else math.nan,
                "classes": classes or math.nan,
                "per_class_needed": math.ceil(need / classes) if classes and math.isfinite(need) else math.nan,
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=_POWER_COLUMNS)

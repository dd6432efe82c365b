"""CI gates: ``--fail-under METRIC=VALUE`` parsed, then checked against the report's summary.

A gate reads ``METRIC=VALUE`` (every model) or ``MODEL:METRIC=VALUE`` (one model); several may be
given in one argument separated by commas. VALUE is a fraction in [0, 1] (``0.7``) or a
percentage (``70%``). METRIC is one of :data:`METRICS` or a set name (its top-1, mean over
severities), optionally with ``.lower`` or ``.upper`` for a bound of its 95% interval
(``top1.lower=0.75``: fail unless the data show top-1 is at least 75%). A gate fails when the value
is below VALUE, or when the run cannot compute it.

``--fail-if-worse-than RUN`` compares each model with the same model in a baseline run, set by set
on the images both scored (exact McNemar, Holm over the sets): it fails when a model is
significantly worse on some set (:func:`compare_runs`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from robusteval.errors import UserError

#: Gate metric → (summary column, what it means). Higher is better for all of them.
METRICS: dict[str, tuple[str, str]] = {
    "top1": ("top1", "clean top-1"),
    "top5": ("top5", "clean top-5"),
    "mCA": ("mCA", "mean accuracy over the study's transformations"),
    "relative_robustness": ("relative_robustness", "mCA / clean top-1"),
    "acc16": ("acc16", "mean 16-class OOD accuracy"),
}
_BOUNDS = {".lower": "lower", ".lo": "lower", ".upper": "upper", ".hi": "upper"}
_ALIASES = {
    "top-1": "top1",
    "top-5": "top5",
    "rr": "relative_robustness",
    "relative-robustness": "relative_robustness",
}


@dataclass(frozen=True)
class Gate:
    """One parsed gate: ``metric`` (a :data:`METRICS` key or a set name) must reach ``threshold``
    (fraction) for ``model`` (``None``: every model)."""

    text: str
    metric: str
    threshold: float
    model: str | None = None
    bound: str = ""  # "", "lower" or "upper": the point estimate or a bound of its 95% interval

    @property
    def label(self) -> str:
        return f"{self.metric}.{self.bound}" if self.bound else self.metric


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    model: str
    value: float
    passed: bool

    def describe(self) -> str:
        """``mobilenet_v2 mCA 0.4120 < 0.5000`` or ``... is missing``."""
        if not math.isfinite(self.value):
            return f"{self.model} {self.gate.label} is missing from this run"
        op = ">=" if self.passed else "<"
        return f"{self.model} {self.gate.label} {self.value:.4f} {op} {self.gate.threshold:.4f}"


def _threshold(text: str, raw: str) -> float:
    raw = raw.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UserError(
            f"--fail-under {text}: {raw!r} is not a fraction in 0..1", hint="write e.g. top1=0.7 or top1=70%"
        )
    return value


def parse_gates(texts: Iterable[str], *, models: Iterable[str], sets: Iterable[str]) -> list[Gate]:
    """Parse ``--fail-under`` arguments against the run's ``models`` and ``sets``.

    Unknown metrics, models or malformed values raise :class:`UserError` with the known names.
    """
    models, sets = sorted(models), sorted(sets)
    known = {name.lower(): name for name in METRICS} | {a: c for a, c in _ALIASES.items()}
    gates: list[Gate] = []
    for arg in texts:
        for text in (t.strip() for t in arg.split(",")):
            if not text:
                continue
            lhs, eq, rhs = text.partition("=")
            if not eq or not lhs.strip():
                raise UserError(
                    f"--fail-under {text}: expected METRIC=VALUE", hint="e.g. --fail-under mCA=0.5"
                )
            model, _, metric = lhs.strip().rpartition(":")
            metric, bound = metric.strip(), ""
            for suffix in _BOUNDS:
                if metric.lower().endswith(suffix) and metric[: -len(suffix)]:
                    metric, bound = metric[: -len(suffix)], _BOUNDS[suffix]
                    break
            if model and model not in models:
                raise UserError(
                    f"--fail-under {text}: no model {model!r} in this run; models: {', '.join(models)}"
                )
            if metric.lower() in known:
                metric = known[metric.lower()]
            elif metric not in sets:
                raise UserError(
                    f"--fail-under {text}: unknown metric {metric!r}; "
                    f"use {', '.join(METRICS)} or a set name of this run ({', '.join(sets)})"
                )
            gates.append(
                Gate(
                    text=text,
                    metric=metric,
                    threshold=_threshold(text, rhs),
                    model=model or None,
                    bound=bound,
                )
            )
    return gates


def _value(gate: Gate, model: str, summary: pd.DataFrame, set_accuracy: pd.DataFrame) -> float:
    suffix = {"": "", "lower": "_lo", "upper": "_hi"}[gate.bound]
    if gate.metric in METRICS:
        row = summary[summary["model"] == model]
        column = METRICS[gate.metric][0] + suffix
        return float(row[column].iloc[0]) if len(row) and column in row else math.nan
    row = set_accuracy[(set_accuracy["model"] == model) & (set_accuracy["set"] == gate.metric)]
    column = "top1" + suffix
    return float(row[column].mean()) if len(row) and column in row else math.nan


def evaluate_gates(
    gates: list[Gate], *, summary: pd.DataFrame, set_accuracy: pd.DataFrame
) -> list[GateResult]:
    """Check every gate for its model (or every model in ``summary``), in gate order then model order."""
    results = []
    for gate in gates:
        for model in [gate.model] if gate.model else sorted(summary["model"]):
            value = _value(gate, model, summary, set_accuracy)
            passed = math.isfinite(value) and value >= gate.threshold
            results.append(GateResult(gate=gate, model=model, value=value, passed=passed))
    return results


def failure_message(results: list[GateResult]) -> str | None:
    """One line naming each failed gate, or ``None`` when all passed."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return None
    head = "gate failed" if len(failed) == 1 else f"{len(failed)} gates failed"
    return f"{head}: " + "; ".join(f"--fail-under {r.gate.text} ({r.describe()})" for r in failed)


# --- --fail-if-worse-than ---------------------------------------------------------------------


@dataclass(frozen=True)
class Regression:
    """One model on one set against the baseline run: ``diff`` = this run − baseline (fraction) on
    ``n`` paired images, its interval, Holm-adjusted McNemar ``p_holm``; ``worse`` when significant."""

    model: str
    suite: str
    set: str
    label_space: str
    n: int
    diff: float
    lower: float
    upper: float
    p_holm: float
    worse: bool

    def describe(self) -> str:
        return (
            f"{self.model} on {self.set}: {100 * self.diff:+.1f} points "
            f"[{100 * self.lower:.1f}, {100 * self.upper:.1f}], p = {self.p_holm:.3g}"
        )


def compare_runs(run, baseline_run, *, alpha: float = 0.05) -> list[Regression]:
    """Every model of both runs on every (suite, set, label space, level) both scored, images matched
    by id and pooled over levels; Holm over each model's sets. ``run``/``baseline_run``: loaded runs."""
    from robusteval import stats
    from robusteval.report.intervals import Correctness, pooled_correctness

    cur = Correctness(run)
    base = Correctness(baseline_run, _ids=cur._ids)

    def index(r) -> dict[tuple, dict[tuple, dict]]:
        out: dict[tuple, dict[tuple, dict]] = {}
        for rec in r.records:
            key = (str(rec["model"]), str(rec["suite"]), str(rec["set"]), str(rec.get("label_space") or ""))
            out.setdefault(key, {})[(rec.get("severity"), str(rec.get("subset") or ""))] = rec
        return out

    mine, theirs = index(run), index(baseline_run)
    rows = []
    for key in sorted(set(mine) & set(theirs)):
        levels = sorted(set(mine[key]) & set(theirs[key]), key=str)
        pooled = pooled_correctness([(cur, mine[key][lv], base, theirs[key][lv]) for lv in levels])
        if pooled is None or len(pooled[0]) == 0:
            continue
        rows.append((key, stats.paired_test(correct_a=pooled[0], correct_b=pooled[1])))
    out = []
    for model in sorted({k[0] for k, _ in rows}):
        mrows = [(k, t) for k, t in rows if k[0] == model]
        adjusted = stats.holm([t.p for _, t in mrows])
        for (k, t), p in zip(mrows, adjusted, strict=True):
            out.append(
                Regression(
                    model=model, suite=k[1], set=k[2], label_space=k[3], n=t.n, diff=t.diff,
                    lower=t.lower, upper=t.upper, p_holm=p, worse=bool(t.diff < 0 and p < alpha),
                )
            )  # fmt: skip
    return out


def regression_message(regressions: list[Regression], *, baseline: str) -> str | None:
    """One line naming each significant regression against ``baseline``, or ``None``."""
    worse = [r for r in regressions if r.worse]
    if not worse:
        return None
    return f"--fail-if-worse-than {baseline}: significantly worse on {len(worse)} set(s): " + "; ".join(
        r.describe() for r in worse
    )

"""CI gates: ``--fail-under METRIC=VALUE`` parsed, then checked against the report's summary.

A gate reads ``METRIC=VALUE`` (every model) or ``MODEL:METRIC=VALUE`` (one model); several may be
given in one argument separated by commas. VALUE is a fraction in [0, 1] (``0.7``) or a
percentage (``70%``). METRIC is one of :data:`METRICS` or a set name (its top-1, mean over
severities). A gate fails when the value is below VALUE, or when the run cannot compute it.
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


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    model: str
    value: float
    passed: bool

    def describe(self) -> str:
        """``mobilenet_v2 mCA 0.4120 < 0.5000`` or ``... is missing``."""
        if not math.isfinite(self.value):
            return f"{self.model} {self.gate.metric} is missing from this run"
        op = ">=" if self.passed else "<"
        return f"{self.model} {self.gate.metric} {self.value:.4f} {op} {self.gate.threshold:.4f}"


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
            metric = metric.strip()
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
            gates.append(Gate(text=text, metric=metric, threshold=_threshold(text, rhs), model=model or None))
    return gates


def _value(metric: str, model: str, summary: pd.DataFrame, set_accuracy: pd.DataFrame) -> float:
    if metric in METRICS:
        row = summary[summary["model"] == model]
        return float(row[METRICS[metric][0]].iloc[0]) if len(row) else math.nan
    row = set_accuracy[(set_accuracy["model"] == model) & (set_accuracy["set"] == metric)]
    return float(row["top1"].mean()) if len(row) else math.nan


def evaluate_gates(
    gates: list[Gate], *, summary: pd.DataFrame, set_accuracy: pd.DataFrame
) -> list[GateResult]:
    """Check every gate for its model (or every model in ``summary``), in gate order then model order."""
    results = []
    for gate in gates:
        for model in [gate.model] if gate.model else sorted(summary["model"]):
            value = _value(gate.metric, model, summary, set_accuracy)
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

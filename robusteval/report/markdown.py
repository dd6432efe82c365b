"""The markdown building blocks of report.md: byte-stable for fixed records.

Stability rules: rows and columns in sorted (or fixed suite) order; every number through one of
the formatters below; no clock, host or path enters the text except what the records hold. The
sections are in ``sections_*.py``; :mod:`robusteval.report.document` assembles them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from robusteval.report.gates import GateResult, Regression
from robusteval.report.records import MAIN_LABEL_SPACE
from robusteval.suites import suite_title

DASH = "—"
STUDY_SETS = 21


def pct(x: float, digits: int = 2) -> str:
    """A fraction as a percentage with fixed decimals (``0.839`` → ``83.90``); ``—`` if undefined."""
    return f"{100.0 * x:.{digits}f}" if _ok(x) else DASH


def pm(x: float, lo: float, hi: float, digits: int = 2, *, scale: float = 100.0) -> str:
    """A value with half the width of its 95% interval: ``83.00 ±7.2`` (``—`` parts left out)."""
    if not _ok(x):
        return DASH
    head = f"{scale * x:.{digits}f}"
    if not (_ok(lo) and _ok(hi)):
        return head
    return f"{head} ±{scale * (hi - lo) / 2:.{max(1, digits - 1)}f}"


def pval(p: float) -> str:
    """``p = 0.021``, ``p < 0.0001``."""
    if not _ok(p):
        return f"p = {DASH}"
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def fixed(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if _ok(x) else DASH


def _ok(x: object) -> bool:
    try:
        return x is not None and not pd.isna(x) and math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[object]], *, align: str | None = None) -> list[str]:
    """A GitHub markdown table; ``align`` has one of ``l``/``r`` per column (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": "---", "r": "--:"}
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def details(summary: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _suite_title(suite: str) -> str:
    return suite_title(suite)


@dataclass(frozen=True)
class ReportInputs:
    """What the writer needs besides the tables: names, figure paths (relative to report.md),
    gate results and the command that made the report."""

    run: str
    models: list[str]
    kinds: dict[str, str]
    baseline: str | None
    command: str
    figures: dict[str, str] = field(default_factory=dict)
    gates: list[GateResult] = field(default_factory=list)
    regressions: list[Regression] = field(default_factory=list)
    worse_than: str | None = None
    n_cells: int = 0
    n_images: int = 0
    extra: list[list[str]] = field(default_factory=list)  # sections of other stages, rendered in order


def _set_label(suite: str, name: str, space: str) -> str:
    return name if space == MAIN_LABEL_SPACE else f"{name} ({space})"


def _figure(inp: ReportInputs, key: str, alt: str) -> list[str]:
    return [f"![{alt}]({inp.figures[key]})", ""] if key in inp.figures else []

"""Report sections of the other stages (transfer, sharpness, explain, ...), each registered once.

A stage adds its section to ``report.md`` with one decorated function in its own module under
``robusteval/report/`` and one line in :data:`SECTION_MODULES`::

    @register_section("transfer", order=50)
    def transfer_section(ctx: SectionContext) -> Section | None:
        '''None when the run holds no transfer records.'''

Sections are rendered in ascending ``order`` after the score sections and before provenance; the
tables a section returns are written beside the score tables (CSV + JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from robusteval.registry import Registry, import_modules


@dataclass(frozen=True)
class SectionContext:
    """Where the run is and where the report goes (``figures_dir`` exists; paths are absolute)."""

    run_dir: Path
    out_dir: Path
    figures_dir: Path


@dataclass
class Section:
    """Markdown lines (figure links relative to report.md), tidy tables by name, figures written."""

    lines: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)


SectionFn = Callable[[SectionContext], Section | None]

SECTIONS: Registry[SectionFn] = Registry("report section")

#: One line per module that registers a section; a module not written yet is skipped.
SECTION_MODULES: list[str] = [
    "robusteval.report.transfer_section",
    "robusteval.report.explain_section",
    "robusteval.report.sharpness_section",
]


def register_section(name: str, *, order: int) -> Callable[[SectionFn], SectionFn]:
    """Decorator: ``fn(ctx) -> Section | None`` renders the section ``name`` (``order``: position)."""
    return SECTIONS.register(name, order=order)


def load_sections() -> None:
    import_modules(SECTION_MODULES)


def render_sections(ctx: SectionContext) -> list[Section]:
    """Every registered section that has something to show for this run, in order."""
    load_sections()
    out = []
    for entry in sorted(SECTIONS, key=lambda e: (e.meta["order"], e.name)):
        got = entry.fn(ctx)
        if got is not None:
            out.append(got)
    return out

"""`robusteval list transforms|suites|models`: what can be asked for, as rich tables."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from robusteval.cli import app
from robusteval.cli.common import console, user_errors


class What(str, Enum):
    transforms = "transforms"
    suites = "suites"
    models = "models"
    sets = "sets"


def _fmt_params(params: dict) -> str:
    return json.dumps(params, separators=(",", "="))[1:-1].replace('"', "") or "—"


def _transforms_table(suite: str | None) -> Table:
    from robusteval.corrupt.spec import load_specs

    specs = [s for s in load_specs().values() if suite in (None, s.suite)]
    width = max((len(s.levels) for s in specs), default=5)
    table = Table(title=f"{len(specs)} transformations" + (f" in suite {suite}" if suite else ""))
    table.add_column("name", style="bold")
    table.add_column("suite")
    for i in range(1, width + 1):
        table.add_column(str(i), overflow="fold")
    for s in specs:
        cells = [_fmt_params(s.params(i)) if i <= len(s.levels) else "" for i in range(1, width + 1)]
        if s.study_level:
            cells[s.study_level - 1] = f"[green]{cells[s.study_level - 1]}[/] *"
        if s.single_level:
            cells[0] += " (single level)"
        table.add_row(s.name, s.suite, *cells)
    table.caption = "* the seed study's setting; columns are severities (levels for parametric suites)"
    return table


def _suites_table() -> Table:
    from robusteval.corrupt.spec import load_specs, suites

    table = Table(title="suites")
    for col in ("suite", "sets", "levels", "members"):
        table.add_column(col)
    specs = load_specs()
    for name, members in suites().items():
        levels = sum(len(specs[m].levels) for m in members)
        table.add_row(name, str(len(members)), str(levels), ", ".join(members))
    return table


def _models_table() -> Table:
    from robusteval.models import list_models

    table = Table(title="models")
    for col in ("name", "family", "kind", "input", "interp", "crop", "upstream", "paper top-1"):
        table.add_column(col)
    for card in list_models():
        d = card.data
        table.add_row(
            card.name, card.family, card.kind, str(d.input_size), d.interpolation, f"{d.crop_pct:g}",
            card.upstream, f"{card.paper_top1:.1f}" if card.paper_top1 else "",
        )  # fmt: skip
    table.caption = "plus any timm model as timm:<name>"
    return table


def _sets_table() -> Table:
    from robusteval.datasets.ood import set_catalogue

    table = Table(title="OOD sets and val subsets")
    for col in ("name", "kind", "suite"):
        table.add_column(col, no_wrap=True)
    for col in ("layout", "metric"):
        table.add_column(col, overflow="fold")
    for row in set_catalogue():
        table.add_row(row["name"], row["kind"], row["suite"], row["layout"], row["metric"])
    return table


@app.command("list")
def list_(
    what: Annotated[What, typer.Argument(help="transforms, suites or models")],
    suite: Annotated[str | None, typer.Option(help="only transforms of this suite")] = None,
) -> None:
    """Show the registered transformations (with their 5 severities), suites, or models."""
    with user_errors():
        table = {
            What.transforms: lambda: _transforms_table(suite),
            What.suites: _suites_table,
            What.models: _models_table,
            What.sets: _sets_table,
        }[what]()
    console.print(table)

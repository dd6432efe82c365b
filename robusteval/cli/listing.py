"""`robusteval list transforms|suites|models`: what can be asked for (a table, plain lines when piped, or JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated

import typer
from rich.markup import escape
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


@dataclass
class Listing:
    """A listing as data: rendered as a rich table on a terminal, tab-separated lines when piped,
    or JSON with ``--json``. The first column holds the names a user types; it never wraps."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""


def _transforms(suite: str | None) -> Listing:
    from robusteval.corrupt.spec import load_specs

    specs = [s for s in load_specs().values() if suite in (None, s.suite)]
    width = max((len(s.levels) for s in specs), default=5)
    out = Listing(
        title=f"{len(specs)} transformations" + (f" in suite {suite}" if suite else ""),
        columns=["name", "suite", *(str(i) for i in range(1, width + 1))],
        caption="columns are severities (levels for parametric suites); * marks the seed study's setting",
    )
    for s in specs:
        cells = [_fmt_params(s.params(i)) if i <= len(s.levels) else "" for i in range(1, width + 1)]
        if s.study_level:
            cells[s.study_level - 1] += " *"
        if s.single_level:
            cells[0] += " (single level)"
        out.rows.append([s.name, s.suite, *cells])
    return out


def _suites(suite: str | None) -> Listing:
    from robusteval.corrupt.spec import load_specs, suites

    out = Listing(title="suites", columns=["suite", "sets", "levels", "members"])
    specs = load_specs()
    for name, members in suites().items():
        levels = sum(len(specs[m].levels) for m in members)
        out.rows.append([name, str(len(members)), str(levels), ", ".join(members)])
    return out


def _models(suite: str | None) -> Listing:
    from robusteval.models import list_models

    out = Listing(
        title="models",
        columns=["name", "family", "kind", "input", "interp", "crop", "upstream", "paper top-1"],
        caption="plus any timm model as timm:<name> and any open_clip model as openclip:<arch>",
    )
    for card in list_models():
        d = card.data
        out.rows.append([
            card.name, card.family, card.kind, str(d.input_size), d.interpolation, f"{d.crop_pct:g}",
            card.upstream, f"{card.paper_top1:.1f}" if card.paper_top1 else "",
        ])  # fmt: skip
    return out


def _sets(suite: str | None) -> Listing:
    from robusteval.datasets.ood import set_catalogue

    out = Listing(title="OOD sets and val subsets", columns=["name", "kind", "suite", "layout", "metric"])
    for row in set_catalogue():
        out.rows.append([row["name"], row["kind"], row["suite"], row["layout"], row["metric"]])
    return out


LISTINGS: dict[str, Callable[[str | None], Listing]] = {
    "transforms": _transforms,
    "suites": _suites,
    "models": _models,
    "sets": _sets,
}


def _rich_table(listing: Listing) -> Table:
    table = Table(title=listing.title, caption=listing.caption or None)
    for i, col in enumerate(listing.columns):
        if i == 0:  # the names a user must type: never wrapped, never cut
            width = max([len(col), *(len(r[0]) for r in listing.rows)])
            table.add_column(col, style="bold", no_wrap=True, min_width=width)
        else:
            table.add_column(col, overflow="fold")
    for row in listing.rows:
        table.add_row(*(escape(c) for c in row))
    return table


@app.command("list")
def list_(
    what: Annotated[What, typer.Argument(help="transforms, suites, models or sets")],
    suite: Annotated[str | None, typer.Option(help="only transforms of this suite")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per row")] = False,
) -> None:
    """Show the registered transformations (with their 5 severities), suites, or models.

    On a terminal: a table. Piped: one tab-separated row a line (header first), for grep and cut.
    """
    with user_errors():
        listing = LISTINGS[what.value](suite)
    if as_json:
        typer.echo(json.dumps([dict(zip(listing.columns, r, strict=True)) for r in listing.rows], indent=1))
    elif console.is_terminal:
        console.print(_rich_table(listing))
    else:
        for row in [listing.columns, *listing.rows]:
            typer.echo("\t".join(row))

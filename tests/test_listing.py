"""`robusteval list`: every name a user types appears whole, piped output is one row a line, --json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from robusteval.cli import app
from robusteval.corrupt.spec import load_specs, suites
from robusteval.datasets.ood import set_catalogue
from robusteval.models import list_models

runner = CliRunner()


def _names(what: str) -> list[str]:
    return {
        "transforms": lambda: list(load_specs()),
        "suites": lambda: list(suites()),
        "models": lambda: [c.name for c in list_models()],
        "sets": lambda: [r["name"] for r in set_catalogue()],
    }[what]()


@pytest.mark.parametrize("what", ["transforms", "suites", "models", "sets"])
def test_piped_listing_is_one_row_a_line_with_whole_names(what):
    res = runner.invoke(app, ["list", what], terminal_width=40)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split("\t")[0] in ("name", "suite")
    first = [line.split("\t")[0] for line in lines[1:]]
    assert first == _names(what)
    assert len({len(line.split("\t")) for line in lines}) == 1  # a rectangular table


@pytest.mark.parametrize("what", ["transforms", "suites", "models", "sets"])
def test_json_listing(what):
    res = runner.invoke(app, ["list", what, "--json"])
    rows = json.loads(res.output)
    key = "suite" if what == "suites" else "name"
    assert [r[key] for r in rows] == _names(what)


def test_terminal_table_never_cuts_a_name():
    from rich.console import Console

    from robusteval.cli import listing

    table = listing._rich_table(listing.LISTINGS["models"](None))
    longest = max(len(n) for n in _names("models"))
    assert table.columns[0].no_wrap and table.columns[0].min_width >= longest
    console = Console(width=80, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    for name in _names("models"):
        assert name in text

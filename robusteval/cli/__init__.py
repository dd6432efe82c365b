"""The command line: thin Typer commands that parse, call one library function, and render.

This package is the only place that imports typer or rich. Each command module registers its
commands on :data:`app` when imported.
"""

from __future__ import annotations

import typer

from robusteval.registry import import_modules

app = typer.Typer(
    name="robusteval",
    help="How vision backbones hold up when images shift: corrupt, score, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One line per command module; importing a module registers its commands.
COMMAND_MODULES = (
    "listing",
    "corrupt",
    "score",
    "report",
    "demo",
    "export",
    "transfer",
    "explain",
    "sharpness",
)
import_modules([f"robusteval.cli.{name}" for name in COMMAND_MODULES])

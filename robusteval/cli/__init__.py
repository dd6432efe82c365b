"""The command line: thin Typer commands that parse, call one library function, and render.

This package is the only place that imports typer or rich. Each command module registers its
commands on :data:`app` when imported.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="robusteval",
    help="How vision backbones hold up when images shift: corrupt, score, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One line per command module; importing a module registers its commands.
for _mod in ("listing", "corrupt", "score", "report", "demo", "sharpness"):
    try:
        importlib.import_module(f"robusteval.cli.{_mod}")
    except ModuleNotFoundError as _err:  # a stage not built yet is simply absent
        if _err.name != f"robusteval.cli.{_mod}":
            raise

"""`robusteval export`: a scored run's records in an anchor's file shape (RobustBench, CLIP_benchmark, timm, model-vs-human)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from robusteval.cli import app
from robusteval.cli.common import console, user_errors


@app.command("export")
def export(
    run: Annotated[str, typer.Option("--run", help="Run name: reads RUNS_DIR/NAME/records.jsonl.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="robustbench, clip-benchmark, timm-csv or model-vs-human (see README: Export)."
        ),
    ],
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Folder holding the runs.")] = Path("runs"),
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder [default: RUNS_DIR/NAME/export/FORMAT].")
    ] = None,
) -> None:
    """Write a scored run's numbers in an anchor's own format, to put them beside its published tables."""
    from robusteval.export import export_run

    with user_errors():
        written = export_run(
            run_dir=runs_dir / run,
            fmt=fmt,
            out_dir=out if out is not None else runs_dir / run / "export" / fmt,
        )
    console.print(
        f"export {escape(fmt)}: {len(written)} files under {escape(str(out or runs_dir / run / 'export' / fmt))}",
        highlight=False,
        soft_wrap=True,
    )

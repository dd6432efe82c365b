"""`robusteval report`: records of a scored run → report.md, tables, figures; CI gates."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from robusteval.cli import app
from robusteval.cli.common import ListOptionsCommand, console, err_console, user_errors


@app.command("report", cls=ListOptionsCommand)
def report(
    run: str = typer.Option(..., "--run", help="Run name: reads RUNS_DIR/NAME/records.jsonl."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder holding the runs."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Model whose errors normalise CE/mCE (ImageNet-C sets also get AlexNet)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder \\[default: RUNS_DIR/NAME/report]."),
    fail_under: list[str] = typer.Option(
        [],
        "--fail-under",
        metavar="METRIC=VALUE",
        help="Exit 1 when a metric is below VALUE: top1, top5, mCA, relative_robustness, acc16 or a set "
        "name; METRIC.lower / METRIC.upper for a bound of its 95% interval; MODEL:METRIC=VALUE for one "
        "model; VALUE 0.7 or 70%. Repeatable.",
    ),
    fail_if_worse_than: str | None = typer.Option(
        None,
        "--fail-if-worse-than",
        metavar="RUN",
        help="Exit 1 when a model is significantly worse than in baseline run RUN on some set "
        "(paired exact McNemar on the same images, Holm over sets).",
    ),
    real_labels: Path | None = typer.Option(
        None, "--real-labels", help="ImageNet-ReaL's real.json: adds ReaL top-1 of the clean val cells."
    ),
) -> None:
    """Write report.md, CSV/JSON tables and PNG figures from a scored run; check CI gates."""
    from robusteval.report import make_report

    with user_errors():
        result = make_report(
            run_dir=runs_dir / run,
            out_dir=out if out is not None else runs_dir / run / "report",
            baseline=baseline,
            fail_under=list(fail_under),
            worse_than=fail_if_worse_than,
            real_labels=real_labels,
        )
    console.print(
        f"report: {escape(str(result.report))} ({len(result.models)} models, {result.cells} cells, "
        f"{len(result.figures)} figures, {len(result.tables)} table files)",
        highlight=False,
        soft_wrap=True,
    )
    if result.step_summary is not None:
        console.print(
            f"summary appended to {escape(str(result.step_summary))}", highlight=False, soft_wrap=True
        )
    if result.failure:
        err_console.print(f"[bold red]error:[/] {escape(result.failure)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)

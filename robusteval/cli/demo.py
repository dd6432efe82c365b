"""`robusteval demo`: corrupt → score → report on the embedded stimuli (or --data) in minutes."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from robusteval.cli import app
from robusteval.cli.common import console, err_console, progress_bar, user_errors


@app.command()
def demo(
    data: Annotated[
        Path | None, typer.Option(help="your val images (default: embedded 16-class stimuli)")
    ] = None,
    out: Annotated[Path, typer.Option(help="where sets, runs and the report go")] = Path("robusteval-demo"),
    model: Annotated[str, typer.Option(help="a registered model with weights available")] = "mobilenet_v2",
    severity: Annotated[int, typer.Option(min=1, max=5, help="severity of every transformation")] = 3,
    per_class: Annotated[int, typer.Option(min=1, help="images per class")] = 4,
    workers: Annotated[int | None, typer.Option(min=1, help="processes (default: all cores)")] = None,
) -> None:
    """Run the whole loop on a small sample: 21 transformations, a real model, a markdown report."""
    from robusteval.demo import DemoHooks, run_demo

    stack = contextlib.ExitStack()
    state: dict = {}

    def stage(name: str, total: int) -> None:
        stack.close()
        state["advance"] = stack.enter_context(progress_bar(name, total))

    hooks = DemoHooks(
        stage=stage,
        advance=lambda n: state["advance"](n),
        message=lambda line: err_console.print(f"[dim]{line}[/]", highlight=False),
    )
    with user_errors(), stack:
        result = run_demo(out=out, data=data, model=model, severity=severity, per_class=per_class,
                          workers=workers, hooks=hooks)  # fmt: skip
    console.print(
        f"[bold green]demo done[/]: {result.n_images} images from {result.data}, "
        f"{result.corrupt.written + result.corrupt.reused} corrupted images, model {model}"
    )
    summary = next((p for p in result.report.tables if p.name == "summary.csv"), None)
    if summary is not None:
        console.print(_summary_table(summary))
    console.print(f"report: [bold]{result.report_md}[/]")


def _summary_table(path: Path):
    """The report's summary.csv (fractions) as a rich table in percent, the columns a first look needs."""
    import csv

    from rich.table import Table

    def pct(value: str) -> str:
        return f"{100 * float(value):.1f}" if value not in ("", "nan") else "—"

    table = Table(title="summary (top-1 %)", title_justify="left")
    for col in ("model", "clean", "mCA (sets)", "relative robustness", "best", "worst"):
        table.add_column(col, justify="left" if col in ("model", "best", "worst") else "right")
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            rr = r["relative_robustness"]
            table.add_row(
                r["model"],
                pct(r["top1"]),
                f"{pct(r['mCA'])} ({r['mCA_sets']})",
                f"{float(rr):.3f}" if rr not in ("", "nan") else "—",
                f"{r['best_set']} {pct(r['best_top1'])}",
                f"{r['worst_set']} {pct(r['worst_top1'])}",
            )
    return table

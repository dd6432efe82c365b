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
        import pandas as pd

        console.print(pd.read_csv(summary).to_string(index=False))
    console.print(f"report: [bold]{result.report_md}[/]")

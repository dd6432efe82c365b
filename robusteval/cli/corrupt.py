"""`robusteval corrupt`: write corrupted copies of a val set as an ImageNet-C style tree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from robusteval.cli import app
from robusteval.cli.common import (
    ListOptionsCommand,
    console,
    err_console,
    progress_bar,
    split_names,
    user_errors,
)
from robusteval.cpus import usable_cpus


@app.command(cls=ListOptionsCommand)
def corrupt(
    data: Annotated[
        Path, typer.Option("--data", help="val images: ImageFolder, labels.csv, ILSVRC or LOC layout")
    ],
    out: Annotated[Path, typer.Option("--out", help="output folder (OUT/<set>/<severity>/<wnid>/)")],
    transform: Annotated[
        list[str] | None,
        typer.Option("--transform", "-t", help="set names: space or comma separated, or repeated"),
    ] = None,
    suite: Annotated[
        str | None, typer.Option(help="study21, frequency, ood-parametric or imagenet-c")
    ] = None,
    severity: Annotated[
        list[int] | None, typer.Option("--severity", "-s", help="levels 1..5: space separated or repeated")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="explicit labels file")] = None,
    per_class: Annotated[int | None, typer.Option(min=1, help="sample N images per class")] = None,
    seed: Annotated[int, typer.Option(help="seeds the sample and every output")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="processes")] = usable_cpus(),
    verify: Annotated[bool, typer.Option(help="re-hash finished outputs before skipping them")] = True,
) -> None:
    """Corrupt val images with registered transformations at chosen severities (resumable)."""
    from robusteval.corrupt.stage import run_corrupt

    with user_errors():
        bar: dict = {}

        def on_total(n: int) -> None:
            bar["ctx"] = progress_bar("corrupt", n, unit="img")
            bar["advance"] = bar["ctx"].__enter__()

        def on_skip(skip: dict) -> None:
            err_console.print(
                f"[yellow]skip[/] {escape(skip['source'])}: {escape(skip['reason'])}",
                highlight=False,
                soft_wrap=True,
            )

        try:
            summary = run_corrupt(
                data=data, out=out, transforms=split_names(transform) or None, suite=suite,
                severities=severity, labels=labels, per_class=per_class, seed=seed, workers=workers, verify=verify,
                progress=lambda n: bar["advance"](n), on_total=on_total, on_skip=on_skip,
            )  # fmt: skip
        finally:
            if "ctx" in bar:
                bar["ctx"].__exit__(None, None, None)
    from robusteval.distributed import is_root

    if not is_root():  # torchrun: rank 0 alone renders
        return
    sets = escape(", ".join(f"{name}:{','.join(map(str, sev))}" for name, sev in summary.sets))
    console.print(
        f"[bold green]done[/] {summary.n_images} images × \\[{sets}] → {escape(str(summary.out))}: "
        f"{summary.written} written, {summary.reused} already done, {summary.replaced} rewritten "
        f"(other seed/spec/source), {len(summary.skips)} skipped, "
        f"{summary.seconds:.1f} s ({summary.images_per_s:.1f} img/s)",
        soft_wrap=True,
    )

"""`robusteval score`: run models over clean, corrupted and OOD sets into runs/<NAME>/records.jsonl."""

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


@app.command(cls=ListOptionsCommand)
def score(
    models: Annotated[
        list[str], typer.Option("--models", "-m", help="model names: space or comma separated, or repeated")
    ],
    run: Annotated[
        str,
        typer.Option(
            "--run", "--run-name", help="run name: results go to RUNS_DIR/NAME/ (under torchrun: --run-name)"
        ),
    ],
    sets: Annotated[
        Path | None, typer.Option("--sets", help="corrupted tree (--out of `robusteval corrupt`)")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="clean val images (any layout `corrupt` reads)")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="explicit labels file for --data")] = None,
    ood: Annotated[
        list[str] | None,
        typer.Option(
            "--ood", help="NAME=DIR; NAME: imagenet-a, imagenet-r, imagenet-sketch, imagenetv2, mvh"
        ),
    ] = None,
    transforms: Annotated[
        list[str] | None,
        typer.Option(
            "--transforms", "-t", help="corrupt --data on the fly with these sets (space or comma separated)"
        ),
    ] = None,
    suite: Annotated[
        str | None, typer.Option(help="on the fly: every set of this suite (e.g. study21)")
    ] = None,
    severity: Annotated[
        list[int] | None,
        typer.Option("--severity", "-s", help="on the fly: levels 1..5, space separated (default all)"),
    ] = None,
    transform_impl: Annotated[
        str, typer.Option(help="on the fly: auto, torch (GPU batches) or imgaug")
    ] = "auto",
    seed: Annotated[
        int, typer.Option(help="on the fly: seed of every corrupted image (as `corrupt --seed`)")
    ] = 0,
    runs_dir: Annotated[Path, typer.Option(help="folder of runs")] = Path("runs"),
    batch_size: Annotated[int, typer.Option(min=1, help="images per batch (halved on CUDA OOM)")] = 64,
    amp: Annotated[
        str | None, typer.Option(help="bf16, fp16 or off (default: bf16 on CUDA, off on CPU)")
    ] = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory format")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile every model")] = False,
    device: Annotated[
        str | None, typer.Option(help="cuda, cuda:N or cpu (default: cuda when available)")
    ] = None,
    scan_backend: Annotated[
        str, typer.Option(help="VMamba selective scan: auto, mamba, triton or torch")
    ] = "auto",
    weights: Annotated[
        list[str] | None,
        typer.Option(
            "--weights",
            help="MODEL=PATH, MODEL=none (random init) or MODEL=default; PATH alone with one model",
        ),
    ] = None,
    trust_checkpoint: Annotated[
        bool, typer.Option("--trust-checkpoint", help="allow pickled checkpoints")
    ] = False,
    templates: Annotated[
        str | None,
        typer.Option(help="CLIP zero-shot prompts: openai80, clip-mamba7 or a file (one per line)"),
    ] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="decode processes (0: in-process)")] = None,
    subset: Annotated[
        str | None,
        typer.Option(help="score only a fixed subset of --data: robustbench5k (RobustBench's 5,000 ids)"),
    ] = None,
    gpu_decode: Annotated[
        bool | None,
        typer.Option(
            "--gpu-decode/--cpu-decode",
            help="JPEGs on CUDA: nvJPEG, or PIL in the workers [default: nvJPEG only with < 4 workers]",
            show_default=False,
        ),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(min=1, help="launch torchrun with N processes, one per GPU of this node (NCCL)"),
    ] = None,
    procs: Annotated[
        int | None,
        typer.Option(min=1, help="launch torchrun with N processes on any device (with --device cpu: gloo)"),
    ] = None,
) -> None:
    """Score models on clean, corrupted and OOD sets (each image decoded once, resumable per cell)."""
    from robusteval.distributed import is_root
    from robusteval.runs import Record
    from robusteval.score.engine import ScoreRequest, run_score
    from robusteval.score.sets import parse_pairs

    if gpus or procs:
        _launch(gpus=gpus, procs=procs)
        return
    with user_errors():
        names = split_names(transforms)
        if suite:
            from robusteval.corrupt.spec import suite_sets

            names += [s.name for s in suite_sets(suite) if s.name not in names]
        model_names = split_names(models)
        if len(model_names) == 1:  # one model: a bare --weights PATH is its weights
            weights = [w if "=" in w else f"{model_names[0]}={w}" for w in weights or []]
        ood_pairs = parse_pairs(ood, option="--ood", example="imagenet-r=/data/imagenet-r")
        weight_pairs = parse_pairs(weights, option="--weights", example="vmamba_b=/ckpt/vssm_base.pth")
        req = ScoreRequest(
            models=model_names, run=run, runs_dir=runs_dir, sets_dir=sets, data=data, labels=labels,
            ood=ood_pairs, transforms=names, severities=severity or None,
            transform_impl=transform_impl, seed=seed, batch_size=batch_size, amp=amp,
            channels_last=channels_last, compile=compile, device=device, scan_backend=scan_backend,
            weights=dict(weight_pairs), trust_checkpoint=trust_checkpoint,
            workers=workers, gpu_decode=gpu_decode, templates=templates, subset=subset,
        )  # fmt: skip
        bar: dict = {}

        def on_total(n: int) -> None:
            bar["ctx"] = progress_bar(f"score {run}", n, unit="img")
            bar["advance"] = bar["ctx"].__enter__()

        def on_message(line: str) -> None:
            err_console.print(f"[yellow]{escape(line)}[/]", highlight=False, soft_wrap=True)

        def on_cell(rec: Record) -> None:  # each cell's result as soon as it is written
            sev = "" if rec.severity is None else f" s{rec.severity}"
            space = f" [{rec.label_space}]" if rec.label_space != "imagenet1k" else ""
            top1 = "--" if rec.top1 is None else f"{100 * rec.top1:.2f}%"
            console.print(
                escape(f"{rec.model:>20}  {rec.set}{sev}{space}: top-1 {top1}  (n={rec.n})"),
                highlight=False,
                soft_wrap=True,
            )

        try:
            summary = run_score(
                req, progress=lambda n: bar["advance"](n), on_total=on_total, on_message=on_message,
                on_cell=on_cell,
            )  # fmt: skip
        finally:
            if "ctx" in bar:
                bar["ctx"].__exit__(None, None, None)
    if not is_root():  # torchrun: rank 0 alone renders
        return
    console.print(
        f"[bold green]done[/] {len(summary.written)} cells written, {summary.reused} already finished, "
        f"{summary.skipped_images} images skipped, {summary.seconds:.1f} s → {escape(str(summary.run_dir))}",
        soft_wrap=True,
    )


def _launch(*, gpus: int | None, procs: int | None) -> None:
    """``--gpus N`` / ``--procs N``: the same command under torchrun (robusteval.distributed.launch)."""
    import sys

    from robusteval.distributed.launch import check_gpus, launch, strip_launch_options

    with user_errors():
        if gpus and procs:
            from robusteval.errors import UserError

            raise UserError("pass --gpus N or --procs N, not both")
        if gpus:
            check_gpus(gpus)
        rc = launch(gpus or procs or 1, strip_launch_options(sys.argv[1:]))
    if rc:
        raise typer.Exit(rc)

"""`robusteval transfer`: few-shot linear probing, ILM-VP, fine-tuning and freezing → transfer.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
def transfer(
    models: Annotated[
        list[str], typer.Option("--models", "-m", help="model names: space or comma separated, or repeated")
    ],
    dataset: Annotated[
        list[str],
        typer.Option(
            "--dataset",
            "-d",
            help="cifar10 svhn gtsrb dtd flowers102 oxford_pets eurosat, or imagefolder:TRAIN_DIR,TEST_DIR",
        ),
    ],
    run: Annotated[str, typer.Option("--run", help="run name: results go to RUNS_DIR/NAME/transfer.jsonl")],
    root: Annotated[
        Path | None, typer.Option("--root", help="folder holding the datasets in torchvision's layout")
    ] = None,
    download: Annotated[
        bool, typer.Option("--download", help="let torchvision download missing datasets (online)")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="md5-check dataset files as torchvision does")
    ] = True,
    method: Annotated[
        list[str] | None, typer.Option("--method", help="lp, ilm-vp, finetune, freeze [default: lp]")
    ] = None,
    shots: Annotated[
        list[str] | None,
        typer.Option("--shots", help="images per class: integers or `full` [default: 1 10 50 100 full]"),
    ] = None,
    seeds: Annotated[list[int] | None, typer.Option("--seeds", help="seeds [default: 1 2 3]")] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="override every method's epochs (lp/ilm-vp 100, finetune 10)")
    ] = None,
    runs_dir: Annotated[Path, typer.Option(help="folder of runs")] = Path("runs"),
    device: Annotated[
        str | None, typer.Option(help="cuda, cuda:N or cpu (default: cuda when available)")
    ] = None,
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA")] = True,
    workers: Annotated[
        int | None, typer.Option(min=0, help="decode processes (default 8 on CUDA, 0 on CPU)")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="images per batch of feature, mapping and test passes")
    ] = 256,
    weights: Annotated[
        list[str] | None,
        typer.Option("--weights", help="MODEL=PATH, MODEL=none (random init) or MODEL=default"),
    ] = None,
) -> None:
    """Transfer models to downstream datasets (resumable per model, dataset, method, shots, seed)."""
    from robusteval.errors import UserError
    from robusteval.score.sets import parse_pairs
    from robusteval.transfer.records import parse_shots
    from robusteval.transfer.stage import TransferRequest, run_transfer

    with user_errors():
        model_names = split_names(models)
        shot_values = []
        for v in split_names(shots) or ["1", "10", "50", "100", "full"]:
            try:
                shot_values.append(parse_shots(v))
            except ValueError:
                raise UserError(f"--shots {v!r}: expected a positive integer or `full`") from None
        if len(model_names) == 1:
            weights = [w if "=" in w else f"{model_names[0]}={w}" for w in weights or []]
        pairs = parse_pairs(weights, option="--weights", example="vmamba_t=/ckpt/vssm_tiny.pth")
        req = TransferRequest(
            models=model_names, datasets=[n for v in dataset for n in v.split()], methods=split_names(method) or ["lp"],
            shots=shot_values, seeds=seeds or [1, 2, 3], run=run, runs_dir=runs_dir, root=root,
            download=download, verify=verify, epochs=epochs, device=device, amp=amp, workers=workers,
            feature_batch=batch_size, weights=dict(pairs),
        )  # fmt: skip
        bar: dict = {}

        def on_total(n: int) -> None:
            bar["ctx"] = progress_bar(f"transfer {run}", n, unit="cell")
            bar["advance"] = bar["ctx"].__enter__()

        def on_message(line: str) -> None:
            err_console.print(f"[cyan]{line}[/]", highlight=False, soft_wrap=True)

        try:
            summary = run_transfer(
                req, progress=lambda n: bar["advance"](n), on_total=on_total, on_message=on_message
            )
        finally:
            if "ctx" in bar:
                bar["ctx"].__exit__(None, None, None)
    for rec in summary.written:
        k = "full" if rec.shots is None else f"{rec.shots}-shot"
        console.print(
            f"{rec.model:>20}  {rec.dataset} {rec.method} {k} seed {rec.seed}: "
            f"top-1 {100 * rec.final_top1:.2f}%  ECE {100 * rec.final_ece:.2f}%",
            highlight=False,
        )
    console.print(
        f"[bold green]done[/] {len(summary.written)} cells written, {summary.reused} already finished, "
        f"{summary.seconds:.1f} s → {summary.run_dir}"
    )

"""`robusteval sharpness`: the Hessian spectrum of each model's loss on clean and shifted images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robusteval.cli import app
from robusteval.cli.common import ListOptionsCommand, console, progress_bar, split_names, user_errors


@app.command(cls=ListOptionsCommand)
def sharpness(
    models: Annotated[
        list[str], typer.Option("--models", "-m", help="model names, space or comma separated")
    ],
    data: Annotated[
        Path, typer.Option("--data", help="clean ImageNet val images (the sample is drawn here)")
    ],
    run: Annotated[str, typer.Option("--run", help="run name: records go to RUNS_DIR/NAME/sharpness.jsonl")],
    sets: Annotated[
        Path | None, typer.Option("--sets", help="corrupted tree (--out of `robusteval corrupt`)")
    ] = None,
    transforms: Annotated[
        list[str] | None,
        typer.Option("--transforms", "-t", help="corrupt the sample on the fly with these sets"),
    ] = None,
    severity: Annotated[
        list[int] | None, typer.Option("--severity", "-s", help="on the fly: levels 1..5 (default all)")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="explicit labels file for --data")] = None,
    images: Annotated[int, typer.Option(min=2, help="images in the fixed, seeded sample")] = 1000,
    batch: Annotated[int, typer.Option("--batch", min=1, help="images per forward/backward")] = 64,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="largest eigenvalues (Lanczos)")] = 5,
    eig_tol: Annotated[float, typer.Option(help="Lanczos (ARPACK) relative tolerance")] = 1e-3,
    eig_maxiter: Annotated[int | None, typer.Option(help="Lanczos restart limit")] = None,
    eig_ncv: Annotated[
        int | None, typer.Option(help="Lanczos vectors per restart (default max(2k+1, 20))")
    ] = None,
    trace: Annotated[bool, typer.Option("--trace", help="Hutchinson trace with its standard error")] = False,
    trace_probes: Annotated[int, typer.Option(min=2, help="Hutchinson probes")] = 30,
    density: Annotated[bool, typer.Option("--density", help="spectral density (stochastic Lanczos)")] = False,
    density_ncv: Annotated[int, typer.Option(min=4, help="Lanczos steps for the density")] = 64,
    per_block: Annotated[bool, typer.Option("--per-block", help="one Hessian block per stage")] = False,
    blocks: Annotated[
        list[str] | None, typer.Option("--blocks", help="module prefixes, one Hessian block each")
    ] = None,
    no_clean: Annotated[bool, typer.Option("--no-clean", help="skip the clean set")] = False,
    seed: Annotated[int, typer.Option(help="sample, probe and Lanczos start seed")] = 0,
    corrupt_seed: Annotated[int, typer.Option(help="on the fly: seed of the corrupted images")] = 0,
    runs_dir: Annotated[Path, typer.Option(help="folder of runs")] = Path("runs"),
    device: Annotated[
        str | None, typer.Option(help="cuda, cuda:N or cpu (default: cuda when available)")
    ] = None,
    dtype: Annotated[str, typer.Option(help="float32 or float64")] = "float32",
    scan_backend: Annotated[
        str, typer.Option(help="selective scan: only torch (exact second derivatives)")
    ] = "torch",
    weights: Annotated[
        list[str] | None, typer.Option("--weights", help="MODEL=PATH, MODEL=none or MODEL=default")
    ] = None,
    trust_checkpoint: Annotated[
        bool, typer.Option("--trust-checkpoint", help="allow pickled checkpoints")
    ] = False,
    templates: Annotated[str | None, typer.Option(help="CLIP zero-shot prompts")] = None,
) -> None:
    """Top-k Hessian eigenvalues, trace and spectral density of each model's loss, per set and severity."""
    from robusteval.score.sets import parse_pairs
    from robusteval.sharpness.stage import SharpnessRequest, run_sharpness

    with user_errors():
        names = split_names(models)
        if len(names) == 1:
            weights = [w if "=" in w else f"{names[0]}={w}" for w in weights or []]
        pairs = parse_pairs(weights, option="--weights", example="mobilenet_v2=/ckpt/mnv2.pth")
        req = SharpnessRequest(
            models=names, run=run, data=data, runs_dir=runs_dir, labels=labels, sets_dir=sets,
            transforms=split_names(transforms), severities=severity or None, images=images,
            batch_size=batch, top_k=top_k, eig_tol=eig_tol, eig_maxiter=eig_maxiter, eig_ncv=eig_ncv, trace=trace,
            trace_probes=trace_probes, density=density, density_ncv=density_ncv, per_block=per_block,
            blocks=split_names(blocks), seed=seed, corrupt_seed=corrupt_seed, clean=not no_clean,
            device=device, dtype=dtype, scan_backend=scan_backend, weights=dict(pairs),
            trust_checkpoint=trust_checkpoint, templates=templates,
        )  # fmt: skip
        bar: dict = {}

        def on_total(n: int) -> None:
            bar["ctx"] = progress_bar(f"sharpness {run}", n, unit="cell")
            bar["advance"] = bar["ctx"].__enter__()

        try:
            summary = run_sharpness(req, progress=lambda n: bar["advance"](n), on_total=on_total)
        finally:
            if "ctx" in bar:
                bar["ctx"].__exit__(None, None, None)
    for r in summary.written:
        sev = "" if r.severity is None else f" s{r.severity}"
        tr = "" if r.trace is None else f"  trace {r.trace:.4g} ± {r.trace_stderr:.2g}"
        group = "" if r.group == "all" else f" [{r.group}]"
        console.print(
            f"{r.model:>20}  {r.set}{sev}{group}: λ_max {r.lam_max:.4g}{tr}  (n={r.n_images})",
            highlight=False,
        )
    console.print(
        f"[bold green]done[/] {len(summary.written)} cells written, {summary.reused} already finished, "
        f"{summary.seconds:.1f} s → {summary.run_dir}"
    )

"""`robusteval explain`: attribution maps for the images a shift flipped, as PNG grids + explain.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from robusteval.cli import app
from robusteval.cli.common import ListOptionsCommand, console, progress_bar, split_names, user_errors


@app.command(cls=ListOptionsCommand)
def explain(
    run: Annotated[str, typer.Option("--run", help="scored run: RUNS_DIR/NAME/")],
    models: Annotated[list[str], typer.Option("--model", "--models", "-m", help="models (space separated)")],
    set_name: Annotated[str, typer.Option("--set", help="shifted set scored in the run, e.g. perspective")],
    severity: Annotated[int, typer.Option("--severity", "-s", min=1, help="its severity")],
    n: Annotated[int, typer.Option("--n", min=1, help="images (rows of each grid)")] = 16,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="gradcam, hirescam, gradcam++, xgradcam, eigencam, layercam, ig, occlusion [default: gradcam]",
        ),
    ] = None,
    select: Annotated[
        str, typer.Option(help="flipped (right clean, wrong shifted), wrong or random (seeded)")
    ] = "flipped",
    out: Annotated[Path | None, typer.Option(help="output folder [default: the run folder]")] = None,
    data: Annotated[Path | None, typer.Option(help="the clean val images the run scored")] = None,
    sets: Annotated[Path | None, typer.Option(help="the corrupted tree the run scored (tree sets)")] = None,
    runs_dir: Annotated[Path, typer.Option(help="folder of runs")] = Path("runs"),
    seed: Annotated[int, typer.Option(help="order of the selection (ties, --select random)")] = 0,
    transform_seed: Annotated[
        int | None, typer.Option(help="on-the-fly seed [default: the one the score record names]")
    ] = None,
    weights: Annotated[
        list[str] | None, typer.Option("--weights", help="MODEL=PATH or MODEL=none (random init)")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cuda, cuda:N or cpu (default: cuda when available)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="images per attribution batch")] = 16,
) -> None:
    """Attribution maps (true and predicted class) for the images a shift made the models get wrong."""
    from robusteval.explain.stage import DEFAULT_METHODS, ExplainRequest, run_explain
    from robusteval.score.sets import parse_pairs

    with user_errors():
        req = ExplainRequest(
            run=run, models=split_names(models), set_name=set_name, severity=severity, runs_dir=runs_dir, n=n,
            methods=split_names(method) or list(DEFAULT_METHODS), select=select, seed=seed, out=out,
            data=data, sets=sets, transform_seed=transform_seed,
            weights=dict(parse_pairs(weights, option="--weights", example="vmamba_b=/ckpt/vssm_base.pth")),
            device=device, batch_size=batch_size,
        )  # fmt: skip
        bar: dict = {}

        def on_total(total: int) -> None:
            bar["ctx"] = progress_bar(f"explain {run}", total, unit="map")
            bar["advance"] = bar["ctx"].__enter__()

        try:
            summary = run_explain(req, progress=lambda k: bar["advance"](k), on_total=on_total)
        finally:
            if "ctx" in bar:
                bar["ctx"].__exit__(None, None, None)
    by_grid: dict[tuple[str, str], list] = {}
    for r in summary.records:
        by_grid.setdefault((r.model, r.method), []).append(r)
    for (model, meth), recs in by_grid.items():
        faith = sum(r.faithfulness_pred for r in recs) / len(recs)
        match = sum(r.pred_matches_score for r in recs)
        console.print(
            f"{model:>20}  {meth}: {len(recs)} images, mean faithfulness (pred class) {faith:+.2f}, "
            f"{match}/{len(recs)} predictions as scored",
            highlight=False,
        )
    for g in summary.grids:
        console.print(f"grid: {escape(str(g))}", highlight=False, soft_wrap=True)
    console.print(
        f"[bold green]done[/] {len(summary.records)} records → {escape(str(summary.records_path))} "
        f"({summary.seconds:.1f} s)",
        soft_wrap=True,
    )

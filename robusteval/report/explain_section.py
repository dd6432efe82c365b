"""The "Failures" report section: the explain stage's grids with their faithfulness numbers."""

from __future__ import annotations

import shutil

import pandas as pd

from robusteval.report.extensions import Section, SectionContext, register_section


@register_section("failures", order=60)
def failures_section(ctx: SectionContext) -> Section | None:
    """None when the run holds no ``explain.jsonl``; each grid shows its latest invocation's records."""
    from robusteval.explain.records import EXPLAIN_RECORDS, ExplainRecord
    from robusteval.jsonl import read_records

    recs: list[ExplainRecord] = []
    for raw in read_records(ctx.run_dir / EXPLAIN_RECORDS):
        try:
            recs.append(ExplainRecord.from_dict(raw))
        except TypeError:
            continue
    if not recs:
        return None
    newest: dict[str, str] = {}
    for r in recs:  # a grid file is rewritten by each invocation: only its newest records describe it
        newest[r.grid] = max(newest.get(r.grid, ""), r.created)
    latest = {(r.grid, r.method, r.image_id): r for r in recs if r.created == newest[r.grid]}
    df = pd.DataFrame([r.to_dict() for r in latest.values()])
    lines = [
        "## Failures",
        "",
        "Images the shift made the models get wrong, with attribution maps over the shifted image for the "
        "true and the predicted class (`robusteval explain`). Faithfulness: deletion-curve gap (random "
        "patch order minus map order, over the intact probability); above 0, the map's top patches carry "
        "the class more than random ones.",
        "",
    ]
    figures = []
    summary = (
        df.groupby(["model", "set", "severity", "method", "select", "grid"], sort=True)
        .agg(
            images=("image_id", "count"),
            faithfulness_true=("faithfulness_true", "mean"),
            faithfulness_pred=("faithfulness_pred", "mean"),
            rank_corr_true_pred=("map_rank_corr_true_pred", "mean"),
            as_scored=("pred_matches_score", "mean"),
        )
        .reset_index()
    )
    for grid, rows in summary.groupby("grid", sort=True):
        first = rows.iloc[0]
        src = ctx.run_dir / str(grid)
        lines += [
            f"### {first['model']} — {first['set']} severity {first['severity']} ({first['select']})",
            "",
        ]
        lines += [
            "| method | images | faithfulness (true) | faithfulness (pred) | rank corr true/pred | as scored |"
        ]
        lines += ["|---|---:|---:|---:|---:|---:|"]
        for _, r in rows.iterrows():
            lines.append(
                f"| {r['method']} | {r['images']} | {r['faithfulness_true']:+.3f} | {r['faithfulness_pred']:+.3f} "
                f"| {r['rank_corr_true_pred']:.2f} | {100 * r['as_scored']:.0f}% |"
            )
        lines.append("")
        if src.is_file():
            dst = ctx.figures_dir / f"failures_{src.name}"
            shutil.copyfile(src, dst)
            figures.append(dst)
            lines += [
                f"![{first['model']} {first['set']} s{first['severity']}]({dst.relative_to(ctx.out_dir).as_posix()})",
                "",
            ]
        else:
            lines += [f"(grid {grid} is missing from the run folder)", ""]
    return Section(lines=lines, tables={"failures": summary.drop(columns=["grid"])}, figures=figures)

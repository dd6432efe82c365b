"""Report sections on accuracy: the summary (with OOD sets), ImageNet-ReaL, each suite's accuracy
matrix with per-severity detail, the seed study's figures beside ours, and zero-shot CLIP."""

from __future__ import annotations

import math

import pandas as pd

from robusteval.references import CLIP_MAMBA, SEED_STUDY
from robusteval.report.markdown import (
    DASH,
    STUDY_SETS,
    ReportInputs,
    _figure,
    _suite_title,
    details,
    pct,
    pm,
    table,
)
from robusteval.report.records import MAIN_LABEL_SPACE
from robusteval.report.tables import Tables


def summary_section(t: Tables, inp: ReportInputs) -> list[str]:
    rows = []
    for r in t.summary.itertuples(index=False):
        rows.append(
            [
                r.model,
                r.kind,
                pm(r.top1, r.top1_lo, r.top1_hi),
                pm(r.top5, r.top5_lo, r.top5_hi),
                f"{pm(r.mCA, r.mCA_lo, r.mCA_hi)} ({r.mCA_sets}/{STUDY_SETS})" if r.mCA_sets else DASH,
                pm(r.relative_robustness, r.relative_robustness_lo, r.relative_robustness_hi, 3, scale=1.0),
                f"{r.best_set} ({pct(r.best_top1)})" if r.best_set else DASH,
                f"{r.worst_set} ({pct(r.worst_top1)})" if r.worst_set else DASH,
                f"{pm(r.acc16, r.acc16_lo, r.acc16_hi)} ({r.acc16_sets} sets)" if r.acc16_sets else DASH,
            ]
        )
    out = [
        "## Summary",
        "",
        *table(
            [
                "model",
                "kind",
                "clean top-1",
                "clean top-5",
                "mCA (sets)",
                "relative robustness",
                "best transformation",
                "worst transformation",
                "16-class OOD",
            ],
            rows,
            align="llrrrrllr",
        ),
        "",
        f"mCA: mean top-1 over the study's transformations, each averaged over its severities "
        f"(the count says how many of the {STUDY_SETS} this run covers). Relative robustness: mCA / "
        "clean top-1. Best and worst: the transformations with the highest and lowest mean top-1 "
        "(the study's Figure 2a/2b view).",
        "",
    ]
    if not t.ood.empty:
        orows = [
            [r.model, r.set, r.label_space, pm(r.top1, r.top1_lo, r.top1_hi), pct(r.clean_top1), pct(r.drop)]
            for r in t.ood.itertuples(index=False)
        ]
        out += [
            "### Out-of-distribution sets",
            "",
            *table(
                ["model", "set", "label space", "top-1", "clean top-1, same classes", "drop"],
                orows,
                align="lllrrr",
            ),
            "",
            "Each OOD set beside the same model's clean accuracy on the same label space (ImageNet-A/R: "
            "logits masked to their 200 classes, clean val scored on those classes); 16-class sets have "
            "no clean counterpart.",
            "",
        ]
    return out


def real_section(t: Tables, inp: ReportInputs) -> list[str]:
    if t.real.empty:
        return []
    rows = [
        [r.model, r.set, r.n_real, pct(r.top1), pm(r.real_top1, r.real_top1_lo, r.real_top1_hi)]
        for r in t.real.itertuples(index=False)
    ]
    return [
        "### ImageNet-ReaL",
        "",
        *table(
            ["model", "set", "images with ReaL labels", "top-1 (original labels)", "ReaL top-1"],
            rows,
            align="llrrr",
        ),
        "",
        "ReaL top-1 (Beyer et al. 2020): the top-1 class counts as right when it is in the image's "
        "re-annotated label list; images the re-annotation dropped are left out.",
        "",
    ]


def _matrix(t: Tables, suite: str, models: list[str]) -> list[str]:
    sub = t.set_accuracy[t.set_accuracy["suite"] == suite]
    sets = sorted(set(sub["set"]))
    look = {(r.model, r.set): r for r in sub.itertuples(index=False)}
    rows = []
    for name in sets:
        sev = max((look[(m, name)].n_severities for m in models if (m, name) in look), default=0)
        rows.append([name, sev, *(_pm_row(look[(m, name)]) if (m, name) in look else DASH for m in models)])
    if suite == "study21":
        mca = {r.model: pm(r.mCA, r.mCA_lo, r.mCA_hi) for r in t.summary.itertuples(index=False)}
        rows.append(["**mCA**", "", *(mca.get(m, DASH) for m in models)])
    else:
        rows.append(["**mean**", "", *(pct(sub[sub["model"] == m]["top1"].mean()) for m in models)])
    return table(["set", "severities", *models], rows)


def _pm_row(r: object) -> str:
    return pm(r.top1, r.top1_lo, r.top1_hi)  # type: ignore[attr-defined]


def _per_severity(t: Tables, suite: str, model: str, clean_top1: float) -> list[str]:
    sub = t.cells[(t.cells["suite"] == suite) & (t.cells["model"] == model) & ~t.cells["clean"]]
    if sub.empty:
        return []
    max_sev = int(sub["severity"].max())
    means = t.set_accuracy[(t.set_accuracy["suite"] == suite) & (t.set_accuracy["model"] == model)]
    mean_of = dict(zip(means["set"], means["top1"], strict=True))
    rows = []
    for name, g in sub.groupby("set", sort=True):
        by_sev = {int(s): v for s, v in zip(g["severity"], g["top1"], strict=True)}
        rows.append(
            [
                name,
                pct(clean_top1),
                *(pct(by_sev[s]) if s in by_sev else DASH for s in range(1, max_sev + 1)),
                pct(mean_of.get(name, math.nan)),
            ]
        )
    body = table(["set", "clean", *(str(s) for s in range(1, max_sev + 1)), "mean"], rows)
    return details(f"Per-severity top-1: {model}", body)


def accuracy_section(t: Tables, inp: ReportInputs, suite: str) -> list[str]:
    if t.set_accuracy[t.set_accuracy["suite"] == suite].empty:
        return []
    clean = dict(zip(t.summary["model"], t.summary["top1"], strict=True))
    out = [
        f"## Accuracy under {_suite_title(suite)}",
        "",
        *_figure(inp, f"heatmap_{suite}", f"top-1 heatmap, {suite}"),
        "Mean top-1 over severities:",
        "",
        *_matrix(t, suite, inp.models),
        "",
        *_figure(inp, f"severity_{suite}", f"top-1 vs severity, {suite}"),
    ]
    for model in inp.models:
        out += _per_severity(t, suite, model, clean.get(model, math.nan))
    return out


def paper_section(t: Tables, inp: ReportInputs) -> list[str]:
    sub = t.paper[t.paper["source"] == SEED_STUDY]
    if sub.empty:
        return []
    rows = []
    for name, g in sub.groupby("set", sort=False):
        look = dict(zip(g["model"], g["top1"], strict=True))
        ats = sorted({a for a in g["ours_at"] if a})
        rows.append(
            [
                name,
                pct(g["paper_top1"].iloc[0]),
                *(pct(look.get(m, math.nan)) for m in inp.models),
                ", ".join(ats) or DASH,
            ]
        )
    return [
        "### The seed study's figures beside ours",
        "",
        *table(
            ["set", "the paper's VMamba-B", *inp.models, "ours measured at"],
            rows,
            align="lr" + "r" * len(inp.models) + "l",
        ),
        "",
        f"The paper's column is quoted from {SEED_STUDY} (ImageNet val, the study's own protocol); "
        "ours are this run's numbers at the severity the study used where the set spec names it, "
        f"else the mean over severities. {_same_model_note(sub, inp)}",
        "",
    ]


def _same_model_note(sub: pd.DataFrame, inp: ReportInputs) -> str:
    names = sorted(set(sub["same_model"]))
    here = [n for n in names if n in inp.models]
    listed = ", ".join(f"`{n}`" for n in names)
    return f"The paper's model is our {listed}" + ("." if here else " (not in this run).")


def zero_shot_section(t: Tables, inp: ReportInputs) -> list[str]:
    clip = [m for m in inp.models if inp.kinds.get(m) == "clip"]
    paper = t.paper[t.paper["source"] == CLIP_MAMBA]
    ref_rows = []
    for r in paper.drop_duplicates("paper_model").itertuples(index=False):
        ours = paper[(paper["paper_model"] == r.paper_model) & (paper["model"] == r.same_model)]
        ref_rows.append(
            [
                r.paper_model,
                pct(r.paper_top1, 1),
                f"`{r.same_model}`",
                pct(ours["top1"].iloc[0]) if len(ours) else "not in this run",
            ]
        )
    ref = [
        f"The paper's zero-shot ImageNet-1k top-1 ({CLIP_MAMBA}, full val, the paper's templates) beside "
        "this run's clean top-1 of the same model:",
        "",
        *table(
            ["the paper's model", "the paper's top-1", "our name", "this run, clean"], ref_rows, align="lrlr"
        ),
        "",
    ]
    out = ["## Zero-shot (CLIP models)", ""]
    if not clip:
        return [*out, "No CLIP (kind `clip`) models in this run.", "", *ref]
    order = clip + [m for m in inp.models if m not in clip]
    header = [*(f"{m} (zero-shot)" for m in clip), *(f"{m} (supervised)" for m in order[len(clip) :])]
    zs = t.zero_shot
    look = {(r.model, r.suite, r.set, r.label_space): r.top1 for r in zs.itertuples(index=False)}
    keys = []
    for r in zs.itertuples(index=False):
        if (r.suite, r.set, r.label_space) not in keys:
            keys.append((r.suite, r.set, r.label_space))
    rows = []
    for suite, name, space in keys:
        label = name if space == MAIN_LABEL_SPACE else f"{name} ({space})"
        rows.append([label, suite, *(pct(look.get((m, suite, name, space), math.nan)) for m in order)])
    heads = dict(zip(t.provenance["model"], t.provenance["zero_shot"], strict=True))
    head_lines = [
        f"- `{m}`: " + (f"`{heads[m]}`" if heads.get(m) else "prompt templates not recorded") for m in clip
    ]
    return [
        *out,
        "Zero-shot top-1 of the CLIP models (head built from ImageNet class names × prompt templates) "
        "beside the supervised models on the same cells; corrupted sets are averaged over severities.",
        "",
        "Zero-shot heads:",
        "",
        *head_lines,
        "",
        *table(["set", "suite", *header], rows, align="ll" + "r" * len(order)),
        "",
        *ref,
    ]

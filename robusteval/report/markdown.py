"""report.md from the derived tables: byte-stable for fixed records.

Stability rules: rows and columns in sorted (or fixed suite) order; every number through one of
the formatters below; no clock, host or path enters the text except what the records hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from robusteval.references import ALEXNET_CLEAN_ERROR, ALEXNET_SOURCE, CLIP_MAMBA, SEED_STUDY
from robusteval.report.gates import GateResult
from robusteval.report.records import CORRUPTION_SUITES, CURVE_SUITES, MAIN_LABEL_SPACE, suite_rank
from robusteval.report.tables import Tables

DASH = "—"
STUDY_SETS = 21

_SUITE_TITLES = {
    "study21": "the study's transformations",
    "imagenet-c": "ImageNet-C corruptions",
    "frequency": "frequency sets",
    "ood-parametric": "parametric OOD sets",
    "ood": "OOD datasets",
    "modelvshuman16": "16-class model-vs-human sets",
}


def pct(x: float, digits: int = 2) -> str:
    """A fraction as a percentage with fixed decimals (``0.839`` → ``83.90``); ``—`` if undefined."""
    return f"{100.0 * x:.{digits}f}" if _ok(x) else DASH


def fixed(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if _ok(x) else DASH


def _ok(x: object) -> bool:
    try:
        return x is not None and not pd.isna(x) and math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[object]], *, align: str | None = None) -> list[str]:
    """A GitHub markdown table; ``align`` has one of ``l``/``r`` per column (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": "---", "r": "--:"}
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def details(summary: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _ce_cell(row: object) -> str:
    return f"{pct(row.ce, 1)} ({pct(row.relative_ce, 1)})"  # type: ignore[attr-defined]


def _suite_title(suite: str) -> str:
    return _SUITE_TITLES.get(suite, f"suite {suite}")


@dataclass(frozen=True)
class ReportInputs:
    """What the writer needs besides the tables: names, figure paths (relative to report.md),
    gate results and the command that made the report."""

    run: str
    models: list[str]
    kinds: dict[str, str]
    baseline: str | None
    command: str
    figures: dict[str, str] = field(default_factory=dict)
    gates: list[GateResult] = field(default_factory=list)
    n_cells: int = 0
    n_images: int = 0
    extra: list[list[str]] = field(default_factory=list)  # sections of other stages, rendered in order


# --- sections -------------------------------------------------------------------------------


def _header(t: Tables, inp: ReportInputs) -> list[str]:
    kinds = ", ".join(f"{m} ({inp.kinds.get(m, 'classifier')})" for m in inp.models)
    return [
        f"# robusteval report: run `{inp.run}`",
        "",
        f"{len(inp.models)} models: {kinds}. {inp.n_cells} scored cells, {inp.n_images:,} images scored "
        "in all (records schema 1).",
        "",
        "Accuracies are top-1 in percent unless a column says otherwise; "
        f"{DASH} marks a value the records do not support. Every number below is derived from "
        "`records.jsonl` and `preds/*.npz`; the tables are also in `tables/` as CSV and JSON. "
        "Corrupted and parametric sets are scored on their stored 224-px crops (resize to the model's "
        "input and normalise, no second crop); clean images go through each model's own preprocessing.",
        "",
    ]


def summary_section(t: Tables, inp: ReportInputs) -> list[str]:
    rows = []
    for r in t.summary.itertuples(index=False):
        rows.append(
            [
                r.model,
                r.kind,
                pct(r.top1),
                pct(r.top5),
                f"{pct(r.mCA)} ({r.mCA_sets}/{STUDY_SETS})" if r.mCA_sets else DASH,
                fixed(r.relative_robustness),
                f"{r.best_set} ({pct(r.best_top1)})" if r.best_set else DASH,
                f"{r.worst_set} ({pct(r.worst_top1)})" if r.worst_set else DASH,
                f"{pct(r.acc16)} ({r.acc16_sets} sets)" if r.acc16_sets else DASH,
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
            [r.model, r.set, r.label_space, pct(r.top1), pct(r.clean_top1), pct(r.drop)]
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


def gates_section(inp: ReportInputs) -> list[str]:
    if not inp.gates:
        return []
    rows = [
        [
            f"`--fail-under {g.gate.text}`",
            g.model,
            fixed(g.value, 4),
            fixed(g.gate.threshold, 4),
            "pass" if g.passed else "**FAIL**",
        ]
        for g in inp.gates
    ]
    return [
        "## Gates",
        "",
        *table(["gate", "model", "value", "threshold", "result"], rows, align="llrrl"),
        "",
    ]


def _figure(inp: ReportInputs, key: str, alt: str) -> list[str]:
    return [f"![{alt}]({inp.figures[key]})", ""] if key in inp.figures else []


def _matrix(t: Tables, suite: str, models: list[str]) -> list[str]:
    sub = t.set_accuracy[t.set_accuracy["suite"] == suite]
    sets = sorted(set(sub["set"]))
    look = {(r.model, r.set): r for r in sub.itertuples(index=False)}
    rows = []
    for name in sets:
        sev = max((look[(m, name)].n_severities for m in models if (m, name) in look), default=0)
        rows.append([name, sev, *(pct(look[(m, name)].top1) if (m, name) in look else DASH for m in models)])
    if suite == "study21":
        mca = {r.model: r.mCA for r in t.summary.itertuples(index=False)}
        rows.append(["**mCA**", "", *(pct(mca.get(m, math.nan)) for m in models)])
    else:
        rows.append(["**mean**", "", *(pct(sub[sub["model"] == m]["top1"].mean()) for m in models)])
    return table(["set", "severities", *models], rows)


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


def ce_section(t: Tables, inp: ReportInputs) -> list[str]:
    out = ["## Corruption error (CE, mCE)", ""]
    if t.corruption_error.empty and not (t.cells["suite"].isin(CORRUPTION_SUITES)).any():
        return [*out, "Not computed: the run has no corruption sets (suites study21, imagenet-c).", ""]
    norms = []
    if inp.baseline is not None:
        norms.append(
            f"baseline model `{inp.baseline}`: CE = Σ_s E_s(model) / Σ_s E_s({inp.baseline}); relative CE = "
            f"Σ_s (E_s − E_clean) / Σ_s (E_s − E_clean) of {inp.baseline}"
        )
    if (t.corruption_error["normalisation"] == "alexnet").any():
        norms.append(
            "AlexNet for the ImageNet-C corruptions: CE = mean_s E_s / E_AlexNet, relative CE = "
            f"(mean_s E_s − E_clean) / (E_AlexNet − {ALEXNET_CLEAN_ERROR}), with the published errors "
            f"({ALEXNET_SOURCE})"
        )
    if not norms:
        return [
            *out,
            "Not computed: no `--baseline MODEL` was given and the run has no ImageNet-C sets. "
            "Type `robusteval report --run NAME --baseline MODEL` to normalise by one of this run's models.",
            "",
        ]
    out += ["Normalisation used: " + "; ".join(norms) + ". CE and mCE in percent (100 = as fragile as the reference); lower is better. "
            "Each cell: CE (relative CE); "
            f"relative CE is {DASH} where the reference loses no accuracy.", ""]  # fmt: skip
    for (norm, ref, suite), g in sorted(
        t.corruption_error.groupby(["normalisation", "reference", "suite"]),
        key=lambda kv: (kv[0][0] != "baseline", suite_rank(kv[0][2])),
    ):
        title = f"baseline `{ref}`" if norm == "baseline" else "AlexNet (published errors)"
        look = {(r.model, r.set): r for r in g.itertuples(index=False)}
        rows = [
            [name, *(_ce_cell(look[(m, name)]) if (m, name) in look else DASH for m in inp.models)]
            for name in sorted(set(g["set"]))
        ]
        m = t.mce[(t.mce["normalisation"] == norm) & (t.mce["reference"] == ref) & (t.mce["suite"] == suite)]
        mlook = {r.model: r for r in m.itertuples(index=False)}
        rows.append(["**mCE**", *(pct(mlook[x].mce, 1) if x in mlook else DASH for x in inp.models)])
        rows.append(
            ["**relative mCE**", *(pct(mlook[x].relative_mce, 1) if x in mlook else DASH for x in inp.models)]
        )
        rows.append(["sets in mCE", *(str(mlook[x].n_sets) if x in mlook else DASH for x in inp.models)])
        out += [
            f"### {_upper_first(_suite_title(suite))}, normalised by {title}",
            "",
            *table(["set", *inp.models], rows),
            "",
        ]
    return out


def curves_section(t: Tables, inp: ReportInputs) -> list[str]:
    if t.curves.empty:
        return []
    out = [
        "## Frequency and parametric curves",
        "",
        "Top-1 against the level of each parametric set (σ of the low-/high-pass filter, contrast, "
        "noise width, ...), levels evenly spaced, in the style of model-vs-human.",
        "",
    ]
    for suite in sorted(set(t.curves["suite"]), key=suite_rank):
        out += _figure(inp, f"curves_{suite}", f"top-1 vs level, {suite}")
        sub = t.curves[t.curves["suite"] == suite]
        for name, g in sub.groupby("set", sort=True):
            look = {(r.model, int(r.severity)): r.top1 for r in g.itertuples(index=False)}
            levels = g.drop_duplicates("severity").sort_values("severity")
            label = str(levels["level_label"].iloc[0])
            rows = [
                [lvl, *(pct(look.get((m, int(s)), math.nan)) for m in inp.models)]
                for s, lvl in zip(levels["severity"], levels["level"], strict=True)
            ]
            out += details(f"{name} ({suite}): top-1 per {label}", table([label, *inp.models], rows))
    return out


def ece_section(t: Tables, inp: ReportInputs) -> list[str]:
    if t.ece.empty:
        return []
    look = {(r.model, r.suite, r.set, r.label_space): r.ece for r in t.ece.itertuples(index=False)}
    keys = []
    for r in t.ece.itertuples(index=False):
        k = (r.suite, r.set, r.label_space)
        if k not in keys:
            keys.append(k)
    rows = []
    for suite, name, space in keys:
        label = name if space == MAIN_LABEL_SPACE else f"{name} ({space})"
        rows.append([label, suite, *(pct(look.get((m, suite, name, space), math.nan)) for m in inp.models)])
    return [
        "## Calibration (ECE)",
        "",
        "Expected calibration error in percent: 15 equal-width bins of the top-1 softmax probability, "
        "recomputed from the saved predictions (the record's own value where none were saved); "
        "corrupted sets averaged over severities. Lower is better.",
        "",
        *details(
            "ECE per set", table(["set", "suite", *inp.models], rows, align="ll" + "r" * len(inp.models))
        ),
    ]


def kappa_section(t: Tables, inp: ReportInputs) -> list[str]:
    out = ["## Error consistency (Cohen's kappa)", ""]
    if t.kappa.empty:
        why = "needs two models with saved predictions on the same images"
        return [*out, f"Not computed: {why}.", ""]
    k = t.kappa
    suites = sorted(set(k["suite"]), key=suite_rank)
    rows = []
    for (a, b), g in k.groupby(["model_a", "model_b"], sort=True):
        per = [fixed(g[g["suite"] == s]["kappa"].mean()) for s in suites]
        rows.append([f"{a} / {b}", *per, fixed(g["kappa"].mean())])
    detail_rows = []
    for (a, b, suite, name), g in k.groupby(["model_a", "model_b", "suite", "set"], sort=True):
        detail_rows.append(
            [
                f"{a} / {b}",
                suite,
                name,
                int(g["n"].sum()),
                fixed(g["c_obs"].mean()),
                fixed(g["c_exp"].mean()),
                fixed(g["kappa"].mean()),
            ]
        )
    detail_rows.sort(key=lambda r: (r[0], suite_rank(r[1]), r[2]))
    return [
        *out,
        "κ = (c_obs − c_exp) / (1 − c_exp) on per-image top-1 correctness, where c_obs is the fraction "
        "of images both models got right or both got wrong and c_exp = p_a p_b + (1 − p_a)(1 − p_b) "
        "follows from their accuracies (Geirhos et al. 2020). Computed per cell (set × severity) over "
        "the images both scored, then averaged; 0 means no more shared errors than chance.",
        "",
        *table(["models", *suites, "all cells"], rows),
        "",
        *details(
            "Kappa per set",
            table(
                ["models", "suite", "set", "images", "c_obs", "c_exp", "kappa"], detail_rows, align="lllrrrr"
            ),
        ),
    ]


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


def _lines(value: object, *, code: bool = False) -> str:
    """A table's multi-valued cell (one value per line) as markdown: ``<br>`` between values."""
    parts = [p for p in str(value or "").split("\n") if p]
    if not parts:
        return DASH
    return "<br>".join(f"`{p}`" if code else p for p in parts)


def provenance_section(t: Tables, inp: ReportInputs) -> list[str]:
    rows = list(t.provenance.itertuples(index=False))
    prov_rows = [
        [r.model, r.kind, _lines(r.weights_source), _lines(r.weights_sha256, code=True), r.cells]
        for r in rows
    ]
    cfg_rows = [
        [
            r.model,
            _lines(r.preprocess),
            _lines(r.data_config, code=True),
            _lines(r.device),
            _lines(r.amp),
            _lines(r.forward_batch),
        ]
        for r in rows
    ]
    span = [
        f"{r.model}: {r.created_first} … {r.created_last}"
        for r in t.provenance.itertuples(index=False)
        if r.created_first
    ]
    commands = sorted({c for r in t.provenance.itertuples(index=False) for c in r.commands.split("\n") if c})
    out = [
        "## Provenance",
        "",
        f"Report command: `{inp.command}`",
        "",
    ]
    if commands:
        out += ["Score commands recorded:", "", *(f"- `{c}`" for c in commands), ""]
    out += [
        "Weights:",
        "",
        *table(["model", "kind", "weights source", "sha256", "cells"], prov_rows, align="lllll"),
        "",
        "Data configs and scoring settings:",
        "",
        *table(
            ["model", "preprocess", "data config", "device", "amp", "forward batch"], cfg_rows, align="llllll"
        ),
        "",
    ]
    if span:
        out += ["Records created: " + "; ".join(span) + ".", ""]
    if not t.versions.empty:
        vrows = [[r.package, r.version, r.models] for r in t.versions.itertuples(index=False)]
        out += details("Versions", table(["package", "version", "models"], vrows, align="lll"))
    if not t.spec_hashes.empty:
        hrows = []
        for name, g in t.spec_hashes.groupby("set", sort=True):
            parts = [f"{int(s)}:`{h}`" for s, h in zip(g["severity"], g["spec_hash"], strict=True)]
            flag = " (differs between cells)" if g["severity"].duplicated().any() else ""
            hrows.append([name, " ".join(parts) + flag])
        out += details("Set spec hashes (severity:hash)", table(["set", "spec hashes"], hrows, align="ll"))
    return out


def render_report(t: Tables, inp: ReportInputs) -> str:
    """The whole report.md text (ends with one newline)."""
    suites = sorted(
        set(t.set_accuracy["suite"]) - set(CURVE_SUITES) - {"ood", "modelvshuman16"}, key=suite_rank
    )
    parts: list[str] = [*_header(t, inp), *summary_section(t, inp), *gates_section(inp)]
    if "study21" not in suites:
        parts += paper_section(t, inp)
    for suite in suites:
        parts += accuracy_section(t, inp, suite)
        if suite == "study21":
            parts += paper_section(t, inp)
    parts += ce_section(t, inp)
    parts += curves_section(t, inp)
    parts += ece_section(t, inp)
    parts += kappa_section(t, inp)
    parts += zero_shot_section(t, inp)
    for lines in inp.extra:
        parts += lines
    parts += provenance_section(t, inp)
    text = "\n".join(parts).rstrip("\n") + "\n"
    return text


def render_summary(t: Tables, inp: ReportInputs) -> str:
    """The short text for ``$GITHUB_STEP_SUMMARY``: title, summary table, OOD table, gates."""
    parts = [f"## robusteval: run `{inp.run}`", "", *summary_section(t, inp)[2:], *gates_section(inp)]
    return "\n".join(parts).rstrip("\n") + "\n"

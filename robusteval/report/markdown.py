"""report.md from the derived tables: byte-stable for fixed records.

Stability rules: rows and columns in sorted (or fixed suite) order; every number through one of
the formatters below; no clock, host or path enters the text except what the records hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from robusteval import stats
from robusteval.references import ALEXNET_CLEAN_ERROR, ALEXNET_SOURCE, CLIP_MAMBA, SEED_STUDY
from robusteval.report.gates import GateResult, Regression
from robusteval.report.records import (
    CORRUPTION_SUITES,
    CURVE_SUITES,
    DETECTION_SUITES,
    MAIN_LABEL_SPACE,
    suite_rank,
)
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
    "imagenet-c-bar": "ImageNet-C-bar corruptions",
    "imagenet-3dcc": "ImageNet-3DCC corruptions",
}


def pct(x: float, digits: int = 2) -> str:
    """A fraction as a percentage with fixed decimals (``0.839`` → ``83.90``); ``—`` if undefined."""
    return f"{100.0 * x:.{digits}f}" if _ok(x) else DASH


def pm(x: float, lo: float, hi: float, digits: int = 2, *, scale: float = 100.0) -> str:
    """A value with half the width of its 95% interval: ``83.00 ±7.2`` (``—`` parts left out)."""
    if not _ok(x):
        return DASH
    head = f"{scale * x:.{digits}f}"
    if not (_ok(lo) and _ok(hi)):
        return head
    return f"{head} ±{scale * (hi - lo) / 2:.{max(1, digits - 1)}f}"


def pval(p: float) -> str:
    """``p = 0.021``, ``p < 0.0001``."""
    if not _ok(p):
        return f"p = {DASH}"
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


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
    regressions: list[Regression] = field(default_factory=list)
    worse_than: str | None = None
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
        "`±` is half the width of the 95% interval (Wilson for one cell; for a mean over cells, such "
        "as a set's mean over severities, mCA, relative robustness and mCE, a percentile bootstrap over "
        f"images, {stats.N_BOOT} replicates, seed {stats.SEED}); the bounds are the `_lo` / `_hi` "
        "columns of the tables. Comparisons between models are paired on the same images (see Claims).",
        "",
    ]


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


def detection_section(t: Tables, inp: ReportInputs) -> list[str]:
    if t.ood_detection.empty:
        return []
    rows = [
        [r.model, r.set, r.clean_set or DASH, r.n_ood, r.n_clean, pct(r.auroc), pct(r.aupr)]
        for r in t.ood_detection.itertuples(index=False)
    ]
    return [
        "### OOD detection",
        "",
        *table(
            ["model", "OOD set", "in-distribution", "OOD images", "clean images", "AUROC", "AUPR"],
            rows,
            align="lllrrrr",
        ),
        "",
        "Max-softmax detection (higher is better): the OOD images are the positive class, the same "
        "model's clean val on the same classes the negative one, the score is minus the top-1 "
        "probability; AUPR is average precision with the OOD images positive (ImageNet-O's convention).",
        "",
    ]


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


def _set_label(suite: str, name: str, space: str) -> str:
    return name if space == MAIN_LABEL_SPACE else f"{name} ({space})"


def claim_text(r: object) -> str:
    """One paired comparison in words, e.g. ``b > a on fog: +3.1 points [1.2, 5.0], p = 0.001``
    (Holm-adjusted p; the interval is of the winner minus the loser)."""
    where = _set_label(r.suite, r.set, r.label_space)  # type: ignore[attr-defined]
    d, lo, hi = 100 * r.diff, 100 * r.diff_lo, 100 * r.diff_hi  # type: ignore[attr-defined]
    if r.verdict == "cannot tell":  # type: ignore[attr-defined]
        return (
            f"cannot tell {r.model_a} from {r.model_b} on {where}: {d:+.1f} points [{lo:.1f}, {hi:.1f}], "  # type: ignore[attr-defined]
            f"{pval(r.p_holm)}"  # type: ignore[attr-defined]
        )
    if d < 0:
        d, lo, hi = -d, -hi, -lo
    return f"{r.verdict} on {where}: {d:+.1f} points [{lo:.1f}, {hi:.1f}], {pval(r.p_holm)}"  # type: ignore[attr-defined]


def claims_section(t: Tables, inp: ReportInputs) -> list[str]:
    out = ["## Claims (paired comparisons)", ""]
    if t.paired.empty:
        return [*out, "Not computed: needs two models with saved predictions on the same images.", ""]
    p = t.paired.assign(_sig=t.paired["verdict"] != "cannot tell")
    p = p.sort_values(["_sig", "p_holm", "suite", "set"], ascending=[False, True, True, True], kind="stable")
    rows = [[claim_text(r), r.n, pval(r.p)] for r in p.itertuples(index=False)]
    n_sig = int(p["_sig"].sum())
    out += [
        "Every pair of models on every set both scored, on the same images (a set's severities pooled): "
        "the difference in top-1 (points) with its 95% interval (Agresti-Min, paired), the exact McNemar "
        "p-value on the images exactly one model got right, Holm-corrected over each pair's family of "
        f"sets. A claim is made where the corrected p < 0.05; elsewhere the data cannot tell (the "
        "intervals are per comparison, not adjusted for multiplicity). "
        f"{n_sig} of {len(p)} comparisons support a claim.",
        "",
        *table(["claim (Holm-corrected p)", "images", "uncorrected p"], rows, align="lrr"),
        "",
    ]
    if not t.power.empty:
        prow = [
            [
                f"{r.model_a} / {r.model_b}",
                r.label_space,
                r.n,
                pct(r.discordance, 1),
                DASH if not _ok(r.pairs_needed) else f"{int(r.pairs_needed):,}",
                DASH if not _ok(r.per_class_needed) else f"{int(r.per_class_needed):,}",
            ]
            for r in t.power.itertuples(index=False)
        ]
        out += [
            "Power: the images one set needs for McNemar's test to detect a 1-point difference "
            "(α = 0.05, power 0.8) at each pair's observed disagreement rate (images exactly one model "
            "got right, pooled over sets; Connor 1987).",
            "",
            *table(
                ["models", "label space", "images compared", "disagreement %", "images needed", "per class"],
                prow,
                align="llrrrr",
            ),
            "",
        ]
    return out


def regressions_section(inp: ReportInputs) -> list[str]:
    if inp.worse_than is None:
        return []
    worse = [r for r in inp.regressions if r.worse]
    head = [f"## Against baseline run `{inp.worse_than}`", ""]
    text = (
        f"Each model against itself in run `{inp.worse_than}` on every set both runs scored ({len(inp.regressions)} "
        "model × set comparisons, paired on the same images, exact McNemar, Holm over each model's sets)."
    )
    if not worse:
        return [*head, text + " No model is significantly worse on any set.", ""]
    rows = [
        [r.model, _set_label(r.suite, r.set, r.label_space), r.describe().split(": ", 1)[1]] for r in worse
    ]
    return [
        *head,
        text + f" Significantly worse on {len(worse)}:",
        "",
        *table(["model", "set", "difference"], rows, align="lll"),
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
        rows.append(
            [
                "**mCE**",
                *(
                    pm(mlook[x].mce, mlook[x].mce_lo, mlook[x].mce_hi, 1) if x in mlook else DASH
                    for x in inp.models
                ),
            ]
        )
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
        set(t.set_accuracy["suite"]) - set(CURVE_SUITES) - {"ood", "modelvshuman16", *DETECTION_SUITES},
        key=suite_rank,
    )
    parts: list[str] = [
        *_header(t, inp),
        *summary_section(t, inp),
        *real_section(t, inp),
        *detection_section(t, inp),
        *gates_section(inp),
        *regressions_section(inp),
        *claims_section(t, inp),
    ]
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
    parts = [
        f"## robusteval: run `{inp.run}`",
        "",
        *summary_section(t, inp)[2:],
        *gates_section(inp),
        *regressions_section(inp),
    ]
    return "\n".join(parts).rstrip("\n") + "\n"

"""Report sections on robustness beyond accuracy: corruption error (CE, mCE), frequency and
parametric curves, calibration (ECE) and error consistency (Cohen's kappa)."""

from __future__ import annotations

import math

from robusteval.references import ALEXNET_CLEAN_ERROR, ALEXNET_SOURCE
from robusteval.report.markdown import (
    DASH,
    ReportInputs,
    _figure,
    _suite_title,
    _upper_first,
    details,
    fixed,
    pct,
    pm,
    table,
)
from robusteval.report.records import CORRUPTION_SUITES, MAIN_LABEL_SPACE, suite_rank
from robusteval.report.tables import Tables


def _ce_cell(row: object) -> str:
    return f"{pct(row.ce, 1)} ({pct(row.relative_ce, 1)})"  # type: ignore[attr-defined]


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

"""Report sections of statistical comparisons and checks: OOD detection, CI gates, regressions
against a baseline run, and the paired claims between models with their power."""

from __future__ import annotations

from robusteval.report.markdown import DASH, ReportInputs, _ok, _set_label, fixed, pct, pval, table
from robusteval.report.tables import Tables


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

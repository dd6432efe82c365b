"""report.md and the CI step summary, assembled from the sections in their fixed order."""

from __future__ import annotations

from robusteval import stats
from robusteval.report.markdown import DASH, ReportInputs
from robusteval.report.records import CURVE_SUITES, DETECTION_SUITES, suite_rank
from robusteval.report.sections_accuracy import (
    accuracy_section,
    paper_section,
    real_section,
    summary_section,
    zero_shot_section,
)
from robusteval.report.sections_provenance import provenance_section
from robusteval.report.sections_robustness import ce_section, curves_section, ece_section, kappa_section
from robusteval.report.sections_stats import (
    claims_section,
    detection_section,
    gates_section,
    regressions_section,
)
from robusteval.report.tables import Tables


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

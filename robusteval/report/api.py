"""The report stage as one library call: records in, report.md + tables + figures out, gates checked."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from robusteval.errors import UserError
from robusteval.report import figures
from robusteval.report.document import render_report, render_summary
from robusteval.report.extensions import SectionContext, render_sections
from robusteval.report.gates import (
    GateResult,
    Regression,
    compare_runs,
    evaluate_gates,
    failure_message,
    parse_gates,
    regression_message,
)
from robusteval.report.markdown import ReportInputs
from robusteval.report.records import CORRUPTION_SUITES, SetInfo, load_run, suite_rank
from robusteval.report.tables import Tables, build_tables
from robusteval.report.tables_accuracy import clean_accuracy

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


@dataclass(frozen=True)
class ReportResult:
    """What :func:`make_report` wrote and how the gates went.

    ``failure`` is one line naming every failed gate (``None`` when all passed or none given).
    """

    report: Path
    tables: list[Path]
    figures: list[Path]
    gates: list[GateResult] = field(default_factory=list)
    failure: str | None = None
    step_summary: Path | None = None
    models: list[str] = field(default_factory=list)
    cells: int = 0
    regressions: list[Regression] = field(default_factory=list)

    @property
    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]


def _command(run: str, baseline: str | None, fail_under: list[str], worse_than: str | None = None) -> str:
    """The report command as a user would retype it (paths left out: they are machine-specific)."""
    argv = ["robusteval", "report", "--run", run]
    if baseline:
        argv += ["--baseline", baseline]
    for gate in fail_under:
        argv += ["--fail-under", gate]
    if worse_than:
        argv += ["--fail-if-worse-than", Path(worse_than).name]
    return shlex.join(argv)


def _baseline_run_dir(run_dir: Path, worse_than: str) -> Path:
    """``--fail-if-worse-than RUN``: a run name beside ``run_dir``, or a run folder path."""
    for cand in (run_dir.parent / worse_than, Path(worse_than)):
        if (cand / "records.jsonl").is_file():
            return cand
    raise UserError(
        f"--fail-if-worse-than {worse_than}: no run with records at {run_dir.parent / worse_than}",
        hint="name a scored run in the same --runs-dir, or give its folder path",
    )


def _write_tables(tables: Tables, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables.items():
        csv, js = out / f"{name}.csv", out / f"{name}.json"
        df.to_csv(csv, index=False, lineterminator="\n")
        js.write_text(df.to_json(orient="records", indent=1, double_precision=10) + "\n", encoding="utf-8")
        written += [csv, js]
    return written


def _draw(tables: Tables, out_dir: Path) -> dict[str, Path]:
    fig_dir = out_dir / "figures"
    clean = {m: v[0] for m, v in clean_accuracy(tables.cells).items()}
    drawn: dict[str, Path | None] = {}
    corr = sorted({s for s in tables.set_accuracy["suite"] if s in CORRUPTION_SUITES}, key=suite_rank)
    for suite in corr:
        drawn[f"heatmap_{suite}"] = figures.heatmap(
            set_accuracy=tables.set_accuracy,
            suite=suite,
            title=f"{suite}: top-1 (%), mean over severities",
            path=fig_dir / f"heatmap_{suite}.png",
        )
        drawn[f"severity_{suite}"] = figures.severity_curves(
            cells=tables.cells,
            clean=clean,
            suite=suite,
            title=f"{suite}: top-1 vs severity",
            path=fig_dir / f"severity_{suite}.png",
        )
    for suite in sorted(set(tables.curves["suite"]), key=suite_rank):
        drawn[f"curves_{suite}"] = figures.level_curves(
            curves=tables.curves,
            suite=suite,
            title=f"{suite}: top-1 vs level",
            path=fig_dir / f"curves_{suite}.png",
        )
    return {k: v for k, v in drawn.items() if v is not None}


def make_report(
    *,
    run_dir: Path,
    out_dir: Path,
    baseline: str | None,
    fail_under: list[str],
    sets: Mapping[str, SetInfo] | None = None,
    worse_than: str | None = None,
    real_labels: Path | None = None,
) -> ReportResult:
    """Write ``out_dir/report.md``, ``out_dir/tables/*.{csv,json}`` and ``out_dir/figures/*.png``
    from ``run_dir/records.jsonl``, then check the ``--fail-under`` gates.

    ``baseline``: a model of the run whose errors normalise CE/mCE (``None``: only AlexNet
    normalisation, for ImageNet-C sets). ``sets``: set facts (level labels, study severity);
    default the installed set specs. ``worse_than``: a baseline run (name beside ``run_dir`` or a
    folder) that no model may be significantly worse than on any set (paired test, Holm).
    ``real_labels``: ImageNet-ReaL's ``real.json`` for ReaL accuracy of the clean val cells. Appends the summary to ``$GITHUB_STEP_SUMMARY`` when set.
    Bad inputs raise :class:`UserError`; failed gates are returned, not raised.
    """
    if run_dir.is_dir():  # a missing run is reported below, before anything is created
        from robusteval.jsonl import writable_dir

        writable_dir(out_dir, option="--out")
    if not (run_dir / "records.jsonl").is_file():
        staged = _stage_only_report(run_dir=run_dir, out_dir=out_dir)
        if staged is not None:
            return staged
    run = load_run(run_dir=run_dir, sets=sets)
    if baseline is not None and baseline not in run.models:
        raise UserError(
            f"--baseline {baseline}: no such model in run {run.name}",
            hint=f"use one of: {', '.join(run.models)}",
        )
    gates = parse_gates(fail_under, models=run.models, sets={str(r["set"]) for r in run.records})
    tables = build_tables(run, baseline=baseline, real_labels=real_labels)
    results = evaluate_gates(gates, summary=tables.summary, set_accuracy=tables.set_accuracy)
    regressions: list[Regression] = []
    if worse_than is not None:
        base_dir = _baseline_run_dir(run_dir, worse_than)
        regressions = compare_runs(run, load_run(run_dir=base_dir, sets=sets))
        if not regressions:
            raise UserError(
                f"--fail-if-worse-than {worse_than}: no cell with saved predictions in both runs",
                hint="score the same models on the same sets in both runs",
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    written = _write_tables(tables, out_dir / "tables")
    drawn = _draw(tables, out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    extra = render_sections(SectionContext(run_dir=run_dir, out_dir=out_dir, figures_dir=out_dir / "figures"))
    for section in extra:
        written += _write_tables(section.tables, out_dir / "tables")
    inputs = ReportInputs(
        run=run.name,
        models=run.models,
        kinds=run.kinds,
        baseline=baseline,
        command=_command(run.name, baseline, fail_under, worse_than),
        figures={k: p.relative_to(out_dir).as_posix() for k, p in drawn.items()},
        gates=results,
        regressions=regressions,
        worse_than=Path(worse_than).name if worse_than else None,
        n_cells=len(run.records),
        n_images=int(tables.cells["n"].sum()),
        extra=[section.lines for section in extra],
    )
    report = out_dir / "report.md"
    report.write_text(render_report(tables, inputs), encoding="utf-8")

    step = os.environ.get(STEP_SUMMARY_ENV)
    step_path = Path(step) if step else None
    if step_path is not None:
        with step_path.open("a", encoding="utf-8") as fh:
            fh.write(render_summary(tables, inputs) + "\n")
    return ReportResult(
        report=report,
        tables=written,
        figures=sorted([*drawn.values(), *(f for section in extra for f in section.figures)]),
        gates=results,
        failure="; ".join(
            m
            for m in (failure_message(results), regression_message(regressions, baseline=str(worse_than)))
            if m
        )
        or None,
        regressions=regressions,
        step_summary=step_path,
        models=run.models,
        cells=len(run.records),
    )


def _stage_only_report(*, run_dir: Path, out_dir: Path) -> ReportResult | None:
    """A run of other stages only (no score records): a title and their sections; None if empty."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    extra = render_sections(SectionContext(run_dir=run_dir, out_dir=out_dir, figures_dir=out_dir / "figures"))
    if not extra:
        return None
    written: list[Path] = []
    for section in extra:
        written += _write_tables(section.tables, out_dir / "tables")
    lines = [f"# robusteval report: run `{run_dir.name}`", ""]
    for section in extra:
        lines += section.lines
    report = out_dir / "report.md"
    report.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
    return ReportResult(
        report=report, tables=written, figures=sorted(f for section in extra for f in section.figures)
    )

"""Tidy tables derived from a run's records: one row per observation, sorted, nothing typed by hand.

Accuracies, errors and ECE are fractions in [0, 1]; ``nan`` marks a value the records do not
support (a missing cell, an undefined ratio). :func:`build_tables` derives every table the report,
the gates and the CSV/JSON exports use, so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from robusteval.report.records import Run
from robusteval.report.tables_accuracy import (
    cells_table,
    corruption_label_space,
    ood_table,
    set_accuracy_table,
    summary_table,
)
from robusteval.report.tables_provenance import provenance_tables
from robusteval.report.tables_references import paper_table, zero_shot_table
from robusteval.report.tables_robustness import corruption_error_tables, curves_table, ece_table, kappa_table


@dataclass(frozen=True)
class Tables:
    """Every derived table (pandas DataFrames, tidy); field names are the export file names."""

    cells: pd.DataFrame
    set_accuracy: pd.DataFrame
    summary: pd.DataFrame
    ood: pd.DataFrame
    corruption_error: pd.DataFrame
    mce: pd.DataFrame
    ece: pd.DataFrame
    kappa: pd.DataFrame
    curves: pd.DataFrame
    paper: pd.DataFrame
    zero_shot: pd.DataFrame
    provenance: pd.DataFrame
    versions: pd.DataFrame
    spec_hashes: pd.DataFrame
    paired: pd.DataFrame
    power: pd.DataFrame
    ood_detection: pd.DataFrame
    real: pd.DataFrame

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def build_tables(run: Run, *, baseline: str | None, real_labels: Path | None = None) -> Tables:
    """Every table of the report from ``run``; ``baseline`` names the CE-normalising model.

    Accuracy tables carry ``<metric>_lo`` / ``<metric>_hi`` 95% interval columns
    (:mod:`robusteval.report.intervals`); ``paired`` and ``power`` hold the paired model comparisons.
    ``real_labels``: ReaL's ``real.json``, for the ``real`` table (empty without it).
    """
    from robusteval.report import detection, intervals, real

    cells = cells_table(run)
    set_acc = set_accuracy_table(cells)
    ce, mce = corruption_error_tables(cells, baseline=baseline)
    prov, versions, hashes = provenance_tables(run)
    cor = intervals.Correctness(run)
    summary = summary_table(cells, set_acc, run.models, run.kinds)
    summary = intervals.add_summary_intervals(run, cells, summary, cor, space=corruption_label_space(cells))
    mce = intervals.add_mce_intervals(run, cells, ce, mce, cor)
    set_acc = intervals.add_set_intervals(run, cells, set_acc, cor)
    paired = intervals.paired_table(run, cor)
    cells = intervals.add_cell_intervals(cells)
    return Tables(
        cells=cells,
        set_accuracy=set_acc,
        summary=summary,
        ood=ood_table(cells),
        corruption_error=ce,
        mce=mce,
        ece=ece_table(cells, set_acc),
        kappa=kappa_table(run),
        curves=curves_table(cells),
        paper=paper_table(run, cells),
        zero_shot=zero_shot_table(cells, set_acc),
        provenance=prov,
        versions=versions,
        spec_hashes=hashes,
        paired=paired,
        power=intervals.power_table(paired),
        ood_detection=detection.ood_detection_table(run, cells),
        real=real.real_table(run, cells, real.read_real_labels(real_labels))
        if real_labels is not None
        else real.real_table(run, cells.iloc[0:0], []),
    )

"""The report stage: score records → report.md, CSV/JSON tables, PNG figures, CI gates.

:func:`make_report` is the entry point; :mod:`metrics` holds the pure metric functions,
:mod:`tables` derives tidy tables from records (``tables_*``), :mod:`document` (its sections in
``sections_*``, their building blocks in :mod:`markdown`) and :mod:`figures` render them,
:mod:`gates` parses and checks ``--fail-under``.
"""

from robusteval.report.api import ReportResult, make_report

__all__ = ["ReportResult", "make_report"]

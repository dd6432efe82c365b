"""The export stage: a scored run's records written in the anchors' own file shapes.

Each format is one registered writer (``robusteval/export/formats.py``)::

    @register_export("timm-csv", description="...")
    def timm_csv(*, run: ExportRun, out: Path) -> list[Path]: ...

``export_run`` reads ``runs/<NAME>/records.jsonl`` (the last line of a cell wins) and the cells'
``preds/*.npz``, and calls the writer. Nothing here imports the report stage.
"""

from __future__ import annotations

from robusteval.export.api import EXPORTS, ExportRun, export_run, register_export

__all__ = ["EXPORTS", "ExportRun", "export_run", "register_export"]

"""ImageNet-ReaL accuracy (Beyer et al. 2020) of the clean val cells, from the saved predictions.

``real.json`` (the released file) is a list of 50,000 label lists, entry ``i`` for
``ILSVRC2012_val_{i+1:08d}``: the ImageNet-1k indices the re-annotation found correct (empty: the
image was dropped). ReaL top-1 is the fraction of the kept images whose top-1 class is in its list.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from robusteval import stats
from robusteval.errors import UserError
from robusteval.report.records import MAIN_LABEL_SPACE, Run

_VAL = re.compile(r"ILSVRC2012_val_(\d{8})")
_COLUMNS = ["model", "set", "n", "n_real", "top1", "real_top1", "real_top1_lo", "real_top1_hi"]


def read_real_labels(path: Path) -> list[list[int]]:
    """The released ``real.json``: a list of lists of class indices (0..999)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"--real-labels {path}: not a readable JSON file ({err})") from None
    if not isinstance(data, list) or not all(isinstance(x, list) for x in data):
        raise UserError(f"--real-labels {path}: expected a list of label lists (ReaL's real.json)")
    return data


def real_table(run: Run, cells: pd.DataFrame, labels: list[list[int]]) -> pd.DataFrame:
    """Per clean ImageNet-1k cell: images matched to a ReaL entry (by the val file number in the id)
    with a non-empty list, ReaL top-1 and its Wilson interval."""
    rows = []
    for i in np.flatnonzero((cells["clean"] & (cells["label_space"] == MAIN_LABEL_SPACE)).to_numpy()):
        preds = run.preds(run.records[i])
        if preds is None:
            continue
        hits = []
        for img, top1 in zip(preds.ids, preds.top5[:, 0], strict=True):
            m = _VAL.search(str(img))
            k = int(m.group(1)) - 1 if m else -1
            if 0 <= k < len(labels) and labels[k]:
                hits.append(int(top1) in labels[k])
        n = len(hits)
        acc = float(np.mean(hits)) if n else math.nan
        lo, hi = stats.wilson_interval(k=int(np.sum(hits)), n=n)
        row = cells.iloc[i]
        rows.append(
            {
                "model": row["model"], "set": row["set"], "n": int(row["n"]), "n_real": n, "top1": row["top1"],
                "real_top1": acc, "real_top1_lo": lo, "real_top1_hi": hi,
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=_COLUMNS)

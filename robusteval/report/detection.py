"""OOD detection (ImageNet-O): AUROC and AUPR of the max-softmax score, from the saved predictions.

The OOD cell (suite ``ood-detection``) is the positive class and the same model's clean cell on the
same label space (the clean val of the 200 classes) the negative one; the anomaly score is the
negative maximum softmax probability (Hendrycks & Gimpel 2017; Hendrycks et al. 2021 for ImageNet-O,
which reports AUPR with ImageNet-O as positive). Fractions in [0, 1]; higher is better.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from robusteval import stats
from robusteval.report.records import DETECTION_SUITES, Run

_COLUMNS = ["model", "kind", "set", "label_space", "n_ood", "n_clean", "clean_set", "auroc", "aupr"]


def ood_detection_table(run: Run, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, OOD detection set); ``nan`` metrics when either side has no predictions."""
    recs = run.records
    rows = []
    for i in np.flatnonzero(cells["suite"].isin(DETECTION_SUITES).to_numpy() & ~cells["clean"].to_numpy()):
        row = cells.iloc[i]
        clean = cells[
            cells["clean"] & (cells["model"] == row["model"]) & (cells["label_space"] == row["label_space"])
        ]
        auroc = aupr = math.nan
        n_clean, clean_name = 0, ""
        ood = run.preds(recs[i])
        if len(clean):
            j = int(clean.sort_values(["n", "set", "subset"], kind="stable").index[-1])
            clean_name = str(cells.loc[j, "subset"] or cells.loc[j, "set"])
            base = run.preds(recs[j])
            if ood is not None and base is not None:
                pos, neg = -ood.top5_prob[:, 0], -base.top5_prob[:, 0]
                n_clean = int(neg.size)
                auroc = stats.auroc(positive=pos, negative=neg)
                aupr = stats.average_precision(positive=pos, negative=neg)
        rows.append(
            {
                "model": row["model"], "kind": row["kind"], "set": row["set"], "label_space": row["label_space"],
                "n_ood": int(ood.top5_prob.shape[0]) if ood is not None else int(row["n"]), "n_clean": n_clean,
                "clean_set": clean_name, "auroc": auroc, "aupr": aupr,
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=_COLUMNS)

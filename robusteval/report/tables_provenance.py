"""Provenance tables: per model weights, preprocessing and settings; versions; set spec hashes."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from robusteval.report.records import Run
from robusteval.report.tables_accuracy import _frame

_PROV_COLUMNS = [
    "model", "kind", "weights_source", "weights_sha256", "preprocess", "data_config", "device", "amp",
    "forward_batch", "cells", "created_first", "created_last", "commands", "zero_shot",
]  # fmt: skip


def _distinct(values: list[Any]) -> str:
    seen = sorted(
        {
            json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
            for v in values
            if v not in (None, "", {})
        }
    )
    return "\n".join(seen)  # one distinct value per line (values such as preprocess hold "; ")


def provenance_tables(run: Run) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per model: weights identity, preprocessing, device settings, record time span and the
    commands recorded; every versions key with its values; every spec hash per set and severity."""
    rows = []
    for model in run.models:
        recs = [r for r in run.records if r["model"] == model]
        weights = [r.get("weights") or {} for r in recs]
        created = sorted(str(r["created"]) for r in recs if r.get("created"))
        rows.append(
            {
                "model": model,
                "kind": run.kinds.get(model, "classifier"),
                "weights_source": _distinct([w.get("source") for w in weights]),
                "weights_sha256": _distinct([w.get("sha256") for w in weights]),
                "preprocess": _distinct([r.get("preprocess") for r in recs]),
                "data_config": _distinct([r.get("data_config") for r in recs]),
                "device": _distinct([r.get("device") for r in recs]),
                "amp": _distinct([r.get("amp") for r in recs]),
                "forward_batch": _distinct([r.get("forward_batch") for r in recs]),
                "cells": len(recs),
                "created_first": created[0] if created else "",
                "created_last": created[-1] if created else "",
                "commands": _distinct([r.get("command") for r in recs]),
                "zero_shot": _distinct([r.get("zero_shot") for r in recs]),
            }
        )
    prov = _frame(rows, _PROV_COLUMNS)

    versions: dict[tuple[str, str], set[str]] = {}
    for rec in run.records:
        for key, val in (rec.get("versions") or {}).items():
            versions.setdefault((str(key), str(val)), set()).add(str(rec["model"]))
    vrows = [
        {"package": k, "version": v, "models": ", ".join(sorted(ms))}
        for (k, v), ms in sorted(versions.items())
    ]

    hashes: dict[tuple[str, int, str], int] = {}
    for rec in run.records:
        if rec.get("spec_hash") and rec.get("severity") is not None:
            key = (str(rec["set"]), int(rec["severity"]), str(rec["spec_hash"]))
            hashes[key] = hashes.get(key, 0) + 1
    hrows = [
        {"set": s, "severity": sev, "spec_hash": h, "cells": n} for (s, sev, h), n in sorted(hashes.items())
    ]
    return (
        prov,
        _frame(vrows, ["package", "version", "models"]),
        _frame(hrows, ["set", "severity", "spec_hash", "cells"]),
    )

"""The four anchor formats, one registered writer each; names that differ per anchor are tables.

- ``robustbench``: ``model_info/imagenet/corruptions/unaggregated_results.csv`` — one row per model,
  two header rows (corruption, severity), accuracies as fractions, as RobustBench's
  ``corruptions_evaluation`` writes it (``DataFrame`` with ``(corruption, severity)`` columns,
  read back with ``pd.read_csv(path, header=[0, 1], index_col=0)``) — and one
  ``model_info/imagenet/corruptions/<model>.json`` per model with RobustBench's ``ModelInfo`` fields
  (``clean_acc``, ``corruptions_acc``, ``corruptions_mce`` as percent strings rounded to 2 places).
- ``clip-benchmark``: one ``{dataset}_{pretrained}_{model}_{language}_{task}.json`` per (dataset,
  model), CLIP_benchmark's default output name and dump shape: ``dataset``, ``model``,
  ``pretrained``, ``task``, ``metrics`` (``acc1``, ``acc5``, ``mean_per_class_recall``, fractions),
  ``language``.
- ``timm-csv``: ``results-<dataset>.csv`` per dataset with timm's columns (``model, top1, top1_err,
  top5, top5_err, param_count, img_size, crop_pct, interpolation``; percent with 3 decimals,
  ``param_count`` in millions) and, for sets other than the clean val, ``top1_diff, top5_diff,
  rank_diff`` against ``results-imagenet.csv`` as timm's robustness files have them.
- ``model-vs-human``: ``raw-data/<dataset>/<dataset>_<model>_session-1.csv`` per 16-class set, the
  per-trial CSV (``subj,session,trial,rt,object_response,category,condition,imagename``) that
  model-vs-human's analysis reads.
"""

from __future__ import annotations

import csv
import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

from robusteval import metrics
from robusteval.export.api import MAIN_LABEL_SPACE, ExportRun, balanced_accuracy, register_export

#: Our set name → CLIP_benchmark dataset name (other sets keep their own name, prefixed ``robusteval/``).
CLIP_DATASETS = {
    "clean": "imagenet1k",
    "imagenet-a": "imagenet-a",
    "imagenet-r": "imagenet-r",
    "imagenet-sketch": "imagenet_sketch",
    "imagenetv2": "imagenetv2",
    "imagenet-o": "imagenet-o",
    "objectnet": "objectnet",
}
#: Our (set, label space) → timm results file stem; other sets: ``results-<set>[-s<severity>].csv``.
TIMM_FILES = {
    ("clean", "imagenet1k"): "imagenet",
    ("clean", "imagenet-r200"): "imagenet-r-clean",
    ("clean", "imagenet-a200"): "imagenet-a-clean",
    ("imagenet-r", "imagenet-r200"): "imagenet-r",
    ("imagenet-a", "imagenet-a200"): "imagenet-a",
    ("imagenet-sketch", "imagenet1k"): "sketch",
    ("imagenetv2", "imagenet1k"): "imagenetv2-matched-frequency",
    ("imagenet-real", "imagenet1k"): "imagenet-real",
}
TIMM_COLUMNS = [
    "model",
    "top1",
    "top1_err",
    "top5",
    "top5_err",
    "param_count",
    "img_size",
    "crop_pct",
    "interpolation",
]
TIMM_DIFF_COLUMNS = ["top1_diff", "top5_diff", "rank_diff"]
#: Our 16-class set name → model-vs-human dataset name (others: the name without ``mvh-``).
MVH_DATASETS = {
    "mvh-edges": "edge",
    "mvh-edge": "edge",
    "mvh-silhouettes": "silhouette",
    "mvh-filled-silhouettes": "silhouette",
    "mvh-silhouette": "silhouette",
    "mvh-cue-conflict": "cue-conflict",
    "mvh-stylized": "stylized",
    "mvh-sketch": "sketch",
}
MVH_COLUMNS = ["subj", "session", "trial", "rt", "object_response", "category", "condition", "imagename"]
#: RobustBench's ModelInfo fields, in its order.
ROBUSTBENCH_FIELDS = (
    "link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
    "architecture", "eps", "clean_acc", "reported", "corruptions_acc", "corruptions_acc_3d",
    "corruptions_mce", "corruptions_mce_3d", "autoattack_acc", "footnote",
)  # fmt: skip


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _main_clean(run: ExportRun, model: str) -> dict[str, Any] | None:
    """The model's largest clean cell on the ImageNet-1k label space."""
    cands = [
        r
        for r in run.records
        if r["model"] == model and run.is_clean(r) and run.label_space(r) == MAIN_LABEL_SPACE
    ]
    return max(cands, key=lambda r: (_num(r.get("n")), str(r.get("set")))) if cands else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "none"


# --- RobustBench ------------------------------------------------------------------------------


@register_export(
    "robustbench",
    description="RobustBench corruptions: unaggregated_results.csv (corruption × severity) + model-info JSON",
    files="model_info/imagenet/corruptions/{unaggregated_results.csv,<model>.json}; needs ImageNet-C cells",
)
def robustbench(*, run: ExportRun, out: Path) -> list[Path]:
    import pandas as pd

    acc: dict[str, dict[tuple[str, int], float]] = {}
    for r in run.records:
        name = metrics.imagenet_c_name(str(r["set"]), suite=str(r.get("suite")))
        if name is None or r.get("severity") is None or run.label_space(r) != MAIN_LABEL_SPACE:
            continue
        acc.setdefault(str(r["model"]), {})[(name, int(r["severity"]))] = _num(r.get("top1"))
    if not acc:
        return []
    folder = out / "model_info" / "imagenet" / "corruptions"
    folder.mkdir(parents=True, exist_ok=True)
    columns = sorted({k for v in acc.values() for k in v})
    df = pd.DataFrame(
        [[acc[m].get(c, math.nan) for c in columns] for m in sorted(acc)],
        index=sorted(acc),
        columns=pd.MultiIndex.from_tuples(columns),
    )
    table = folder / "unaggregated_results.csv"
    df.to_csv(table)
    written = [table]
    for model, cells in sorted(acc.items()):
        clean = _main_clean(run, model)
        by_corruption: dict[str, dict[int, float]] = {}
        for (name, sev), v in cells.items():
            by_corruption.setdefault(name, {})[sev] = 1.0 - v
        mce = metrics.mean_of(
            metrics.alexnet_corruption_error(corruption=c, errors=e) for c, e in by_corruption.items()
        )
        info: dict[str, Any] = dict.fromkeys(ROBUSTBENCH_FIELDS)
        info.update(
            name=model,
            dataset="imagenet",
            architecture=_card_family(model),
            clean_acc=_pct_str(_num(clean.get("top1")) if clean else math.nan),
            corruptions_acc=_pct_str(metrics.mean_of(cells.values())),
            corruptions_mce=_pct_str(mce),
            footnote=f"robusteval run {run.name}: {len(cells)} corruption × severity cells, "
            f"{int(min(_num(r.get('n')) for r in run.records if r['model'] == model))}+ images each",
        )
        path = folder / f"{_slug(model)}.json"
        path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _pct_str(x: float) -> str | None:
    return str(round(100.0 * x, 2)) if math.isfinite(x) else None


@cache
def _card(model: str):
    """The model card when ``model`` is a name robusteval knows (no import of every model module for
    names it does not: a run scored elsewhere simply has no card facts)."""
    from robusteval.models import MODELS, NAME_TO_MODULE, PREFIX_TO_MODULE, resolve

    known = model in MODELS or model in NAME_TO_MODULE or any(model.startswith(p) for p in PREFIX_TO_MODULE)
    if not known:
        return None
    try:
        return resolve(model).meta.get("card")
    except Exception:  # a family whose optional package is missing here
        return None


def _card_family(model: str) -> str | None:
    card = _card(model)
    return getattr(card, "family", None) if card is not None else None


# --- CLIP_benchmark ---------------------------------------------------------------------------


@register_export(
    "clip-benchmark",
    description="CLIP_benchmark: one JSON per (dataset, model) with acc1, acc5, mean_per_class_recall",
    files="{dataset}_{pretrained}_{model}_en_{task}.json",
)
def clip_benchmark(*, run: ExportRun, out: Path) -> list[Path]:
    written = []
    for r in run.records:
        name, space = str(r["set"]), run.label_space(r)
        if run.is_clean(r) and space != MAIN_LABEL_SPACE:
            continue  # a clean baseline on a subset's classes is not a CLIP_benchmark dataset
        dataset = CLIP_DATASETS.get("clean" if run.is_clean(r) else name, f"robusteval/{name}")
        if r.get("severity") is not None and not run.is_clean(r):
            dataset += f"_s{int(r['severity'])}"
        preds = run.preds(r)
        kind = str(r.get("model_kind") or getattr(_card(str(r["model"])), "kind", "classifier"))
        task = "zeroshot_classification" if kind == "clip" else "classification"
        pretrained = str((r.get("weights") or {}).get("source") or "none")
        dump = {
            "dataset": dataset,
            "model": str(r["model"]),
            "pretrained": pretrained,
            "task": task,
            "metrics": {
                "acc1": _num(r.get("top1")),
                "acc5": _num(r.get("top5")),
                "mean_per_class_recall": balanced_accuracy(preds) if preds is not None else None,
            },
            "language": "en",
        }
        fname = f"{dataset.replace('/', '_')}_{_slug(pretrained)}_{_slug(str(r['model']))}_en_{task}.json"
        path = out / fname
        path.write_text(json.dumps(dump) + "\n", encoding="utf-8")
        written.append(path)
    return sorted(written)


# --- timm results -----------------------------------------------------------------------------


def _timm_row(run: ExportRun, r: dict[str, Any]) -> dict[str, Any]:
    dc = r.get("data_config") if isinstance(r.get("data_config"), dict) else {}
    size = dc.get("input_size")
    if isinstance(size, (list, tuple)):
        size = size[-1]
    card = _card(str(r["model"]))
    params = getattr(card, "params_m", None) if card is not None else None
    top1, top5 = 100.0 * _num(r.get("top1")), 100.0 * _num(r.get("top5"))
    return {
        "model": str(r["model"]),
        "top1": f"{top1:.3f}",
        "top1_err": f"{100.0 - top1:.3f}",
        "top5": f"{top5:.3f}",
        "top5_err": f"{100.0 - top5:.3f}",
        "param_count": f"{params:,.2f}" if params else "",
        "img_size": "" if size is None else int(size),
        "crop_pct": "" if dc.get("crop_pct") is None else f"{float(dc['crop_pct']):.3f}",
        "interpolation": str(dc.get("interpolation") or ""),
    }


@register_export(
    "timm-csv",
    description="timm results-*.csv: model, top1, top1_err, top5, top5_err, param_count, img_size, crop_pct, interpolation",
    files="results-<dataset>.csv (results-imagenet.csv for the clean val)",
)
def timm_csv(*, run: ExportRun, out: Path) -> list[Path]:
    files: dict[str, list[dict[str, Any]]] = {}
    for r in run.records:
        name, space = ("clean" if run.is_clean(r) else str(r["set"])), run.label_space(r)
        stem = TIMM_FILES.get((name, space))
        if stem is None:
            stem = _slug(name if space == MAIN_LABEL_SPACE else f"{name}-{space}")
            if r.get("severity") is not None and not run.is_clean(r):
                stem += f"-s{int(r['severity'])}"
        files.setdefault(stem, []).append(_timm_row(run, r))

    def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda row: (-float(row["top1"]), row["model"]))

    clean = {row["model"]: (i, row) for i, row in enumerate(ranked(files.get("imagenet", [])))}
    written = []
    for stem, rows in sorted(files.items()):
        rows = ranked(rows)
        columns = list(TIMM_COLUMNS)
        if stem != "imagenet" and clean:
            columns += TIMM_DIFF_COLUMNS
            for i, row in enumerate(rows):
                base = clean.get(row["model"])
                if base is None:
                    row.update(top1_diff="", top5_diff="", rank_diff="")
                    continue
                rank, ref = base
                row["top1_diff"] = f"{float(row['top1']) - float(ref['top1']):.3f}"
                row["top5_diff"] = f"{float(row['top5']) - float(ref['top5']):.3f}"
                row["rank_diff"] = f"{rank - i:+d}" if rank != i else "0"
        path = out / f"results-{stem}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        written.append(path)
    return written


# --- model-vs-human ---------------------------------------------------------------------------


@register_export(
    "model-vs-human",
    description="model-vs-human per-trial CSV for its 16-class sets",
    files="raw-data/<dataset>/<dataset>_<model>_session-1.csv; needs 16-class cells with saved predictions",
)
def model_vs_human(*, run: ExportRun, out: Path) -> list[Path]:
    from robusteval.datasets.sixteen import CATEGORIES16

    written = []
    for r in run.records:
        if run.label_space(r) != "modelvshuman16" or run.is_clean(r):
            continue
        preds = run.preds(r)
        if preds is None:
            continue
        dataset = MVH_DATASETS.get(str(r["set"]), str(r["set"]).removeprefix("mvh-"))
        subj = str(r["model"]).replace("_", "-")  # model-vs-human's file names split on "_"
        folder = out / "raw-data" / dataset
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{dataset}_{subj}_session-1.csv"
        order = sorted(range(len(preds.ids)), key=lambda i: str(preds.ids[i]))
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(MVH_COLUMNS)
            trial = 0
            for i in order:
                label = int(preds.labels[i])
                if label < 0:
                    continue
                trial += 1
                response = CATEGORIES16[int(preds.top5[i, 0])]
                w.writerow(
                    [subj, 1, trial, "NaN", response, CATEGORIES16[label], 0, Path(str(preds.ids[i])).name]
                )
        written.append(path)
    return written

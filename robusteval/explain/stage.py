"""The explain stage as one library call: :func:`run_explain` (selection → regeneration → maps →
deletion curves → one PNG grid per model and set + ``explain.jsonl``)."""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.errors import UserError
from robusteval.explain.records import EXPLAIN_RECORDS, SCHEMA, ExplainRecord
from robusteval.explain.select import Selection, select_images

DEFAULT_METHODS = ("gradcam",)
#: Scan path requested for models that have a selective scan: the torch reference scan is
#: autograd-differentiable on CPU and GPU.
EXPLAIN_SCAN_BACKEND = "torch"


@dataclass
class ExplainRequest:
    """What ``robusteval explain`` was asked to do (``n``: images; ``seed``: selection order)."""

    run: str
    models: list[str]
    set_name: str
    severity: int
    runs_dir: Path = Path("runs")
    n: int = 16
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    select: str = "flipped"
    seed: int = 0
    out: Path | None = None  # default: the run folder
    data: Path | None = None
    sets: Path | None = None
    transform_seed: int | None = None  # default: the seed the score record names
    weights: dict[str, str] = field(default_factory=dict)
    device: str | None = None
    batch_size: int = 16


@dataclass
class ExplainSummary:
    out_dir: Path
    records_path: Path
    selection: Selection
    grids: list[Path] = field(default_factory=list)
    records: list[ExplainRecord] = field(default_factory=list)
    seconds: float = 0.0


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def grid_name(model: str, set_name: str, severity: int) -> str:
    return f"explain/{_safe(model)}__{_safe(set_name)}__s{severity}.png"


def load_explain_model(name: str, *, weights: str = "default", device: str = "cpu") -> tuple[Any, str | None]:
    """``create_model`` for attribution: the differentiable torch scan for models that have a scan.

    Returns ``(LoadedModel, scan backend used or None)``.
    """
    from robusteval.models import resolve
    from robusteval.models.factory import create_model

    takes_scan = "scan_backend" in inspect.signature(resolve(name).fn).parameters
    loaded = create_model(name, weights=weights, scan_backend=EXPLAIN_SCAN_BACKEND, device=device)
    return loaded, EXPLAIN_SCAN_BACKEND if takes_scan else None


def model_inputs(card: Any, images: list[np.ndarray], *, mode: str, device: str) -> tuple[Any, np.ndarray]:
    """The model's own preprocessing of uint8 HWC ``images`` (``mode``: ``eval`` for clean val,
    ``resize`` for shifted 224 crops) → (float32 NCHW normalised, uint8 NHWC of the pixels it sees)."""
    import torch

    from robusteval.score.preprocess import apply_view, make_view, normalize

    view = make_view(card.data, mode=mode)
    chw = [
        torch.from_numpy(np.array(im, dtype=np.uint8, copy=True)).permute(2, 0, 1).to(device) for im in images
    ]
    pixels = apply_view(chw, view)
    x = normalize(pixels, mean=card.data.mean, std=card.data.std).contiguous()
    return x, pixels.permute(0, 2, 3, 1).cpu().numpy()


def _probs(module: Any, x: Any, batch_size: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = [
            torch.softmax(module(x[i : i + batch_size]).float(), dim=1).cpu()
            for i in range(0, len(x), batch_size)
        ]
    return torch.cat(out).numpy()


def run_explain(
    req: ExplainRequest,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ExplainSummary:
    """Explain ``req.models`` on ``req.n`` images of ``req.set_name`` at ``req.severity``.

    ``on_total(n)`` gets the number of maps to compute; ``progress(n)`` the maps just finished.
    """
    from robusteval.devices import resolve_device
    from robusteval.explain.methods import METHODS
    from robusteval.explain.regen import regenerate, shift_source
    from robusteval.runs import RunStore

    t0 = time.perf_counter()
    if not req.models:
        raise UserError("no models given", hint="pass --model NAME")
    if not req.methods:
        raise UserError("no methods given", hint=f"pass --method, one of {', '.join(METHODS.names())}")
    for m in req.methods:
        METHODS.get(m)
    from robusteval.models import resolve

    for name in req.models:
        resolve(name)
    device = resolve_device(req.device)
    store = RunStore(req.runs_dir, req.run)
    sel = select_images(
        runs_dir=req.runs_dir, run=req.run, models=req.models, set_name=req.set_name, severity=req.severity,
        n=req.n, select=req.select, seed=req.seed,
    )  # fmt: skip
    out_dir = Path(req.out) if req.out is not None else store.dir
    summary = ExplainSummary(out_dir=out_dir, records_path=out_dir / EXPLAIN_RECORDS, selection=sel)
    if on_total:
        on_total(len(req.models) * len(req.methods) * len(sel.ids) * 2)
    images_by_source: dict[str, Any] = {}
    with store.lock():
        for name in req.models:
            source = shift_source(sel.shifted_records[name], seed=req.transform_seed)
            if source.label not in images_by_source:
                images_by_source[source.label] = regenerate(
                    sel.ids, set_name=req.set_name, severity=req.severity, source=source, data=req.data,
                    sets=req.sets,
                )  # fmt: skip
            recs, grid = _explain_model(
                name, req=req, sel=sel, images=images_by_source[source.label], source=source,
                out_dir=out_dir, device=device, progress=progress or (lambda n: None),
            )  # fmt: skip
            from robusteval.jsonl import append_records

            append_records(summary.records_path, [r.to_dict() for r in recs])
            summary.records += recs
            summary.grids.append(grid)
    summary.seconds = time.perf_counter() - t0
    return summary


def _explain_model(
    name: str, *, req: ExplainRequest, sel: Selection, images: Any, source: Any, out_dir: Path, device: str,
    progress: Callable[[int], None],
) -> tuple[list[ExplainRecord], Path]:  # fmt: skip
    from robusteval.datasets.imagenet import class_names
    from robusteval.devices import device_label
    from robusteval.explain.faithfulness import deletion, rank_correlation
    from robusteval.explain.grid import GridRow, short, write_grid
    from robusteval.explain.layers import cam_target
    from robusteval.explain.methods import METHODS, compute_maps

    names = class_names()
    loaded, scan = load_explain_model(name, weights=req.weights.get(name, "default"), device=device)
    module, card = loaded.module, loaded.card
    xc, clean_px = model_inputs(card, images.clean, mode="eval", device=device)
    xs, shift_px = model_inputs(card, images.shifted, mode="resize", device=device)
    pc, ps = _probs(module, xc, req.batch_size), _probs(module, xs, req.batch_size)
    labels = [int(v) for v in sel.labels]
    preds = [int(v) for v in ps.argmax(axis=1)]
    n = len(labels)
    layer = None
    if any(METHODS.get(m).meta["needs_layer"] for m in req.methods):
        layer = cam_target(module, card, probe=xs)
    per_method = {}
    for method in req.methods:
        t = time.perf_counter()
        x2 = xs.repeat(2, 1, 1, 1)
        targets = labels + preds
        maps = compute_maps(method, module, x2, targets=targets, layer=layer, batch_size=req.batch_size)
        dele = deletion(module, x2, maps, targets=targets, seed=req.seed, batch_size=2 * req.batch_size)
        per_method[method] = (maps, dele, rank_correlation(maps[:n], maps[n:]), time.perf_counter() - t)
        progress(2 * n)
    rel = grid_name(name, req.set_name, req.severity)
    rows, recs = [], []
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    scored = sel.shifted_top1[name]
    for i, image_id in enumerate(sel.ids):
        lab, pr = labels[i], preds[i]
        mark = "right" if int(pc[i].argmax()) == lab else f"pred {short(names[int(pc[i].argmax())])}"
        row_maps = []
        for method, (maps, dele, corr, secs) in per_method.items():
            f = dele.faithfulness
            row_maps += [
                (maps[i], f"{method}: true {short(names[lab])}\nfaithfulness {f[i]:+.2f}"),
                (maps[n + i], f"{method}: pred {short(names[pr])}\nfaithfulness {f[n + i]:+.2f}"),
            ]
            recs.append(ExplainRecord(
                schema=SCHEMA, run=req.run, model=name, set=req.set_name, severity=req.severity, method=method,
                select=req.select, image_id=image_id, label=lab, label_name=names[lab],
                clean_pred=int(pc[i].argmax()), clean_prob_true=float(pc[i, lab]), shifted_pred=pr,
                shifted_pred_name=names[pr], shifted_prob_pred=float(ps[i, pr]), shifted_prob_true=float(ps[i, lab]),
                pred_matches_score=bool(pr == int(scored[i])), auc_map_true=float(dele.auc_map[i]),
                auc_random_true=float(dele.auc_random[i]), faithfulness_true=float(f[i]),
                auc_map_pred=float(dele.auc_map[n + i]), auc_random_pred=float(dele.auc_random[n + i]),
                faithfulness_pred=float(f[n + i]), map_rank_corr_true_pred=float(corr[i]), source=source.label,
                transform_seed=source.seed, cam_layer=layer.path if layer and METHODS.get(method).meta["needs_layer"] else None,
                scan_backend=scan, weights=str(loaded.weights["source"]), device=device_label(device), grid=rel,
                row=i, seconds=round(secs, 3), created=created,
            ))  # fmt: skip
        rows.append(GridRow(
            clean=clean_px[i], shifted=shift_px[i],
            clean_caption=f"clean: {short(names[lab])}\np(true) {pc[i, lab]:.2f}, {mark}",
            shifted_caption=f"{req.set_name} s{req.severity}: pred {short(names[pr])}\np {ps[i, pr]:.2f}, p(true) {ps[i, lab]:.2f}",
            maps=row_maps,
        ))  # fmt: skip
    title = f"{name} on {req.set_name} severity {req.severity} ({req.select}, {n} images; run {req.run})"
    grid = write_grid(rows, out_dir / rel, title=title)
    return recs, grid

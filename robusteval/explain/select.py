"""Which images to explain, read from a score run's clean and shifted cells (records + preds).

``flipped``: right on clean, wrong under the shift; ``wrong``: wrong under the shift; ``random``:
any image. With several models every model gets the same images: those meeting the criterion for
the most models come first, ties in a seeded order, so the grids compare models on the same failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.errors import UserError
from robusteval.runs import Preds, RunStore, cell_id
from robusteval.seeding import derive_seed

SELECTIONS = ("flipped", "wrong", "random")
LABEL_SPACE = "imagenet1k"


@dataclass(frozen=True)
class Selection:
    """The chosen images in grid order, with each model's scored top-1 on them.

    ``clean_top1`` / ``shifted_top1``: model → int64 [n] predictions the score run recorded;
    ``shifted_records``: model → the shifted cell's score record (how the set was made).
    """

    ids: tuple[str, ...]
    labels: np.ndarray
    clean_top1: dict[str, np.ndarray]
    shifted_top1: dict[str, np.ndarray]
    shifted_records: dict[str, dict[str, Any]]
    candidates: int  # images meeting the criterion for at least one model


def _cells(store: RunStore, model: str, set_name: str, severity: int) -> tuple[dict, dict]:
    finished = store.finished()
    out = []
    for name, sev in (("clean", None), (set_name, severity)):
        cid = cell_id(model=model, set_name=name, severity=sev, label_space=LABEL_SPACE)
        if cid not in finished:
            have = sorted(
                {(r["set"], r["severity"]) for r in finished.values() if r["model"] == model}, key=str
            )
            what = "clean val" if name == "clean" else f"{set_name} severity {severity}"
            listed = ", ".join(f"{s}" + ("" if v is None else f" s{v}") for s, v in have) or "nothing"
            raise UserError(
                f"run {store.name!r} has no {what} cell for {model} (it has: {listed})",
                hint=f"score it first: robusteval score --run {store.name} --models {model} ...",
            )
        out.append(finished[cid])
    return out[0], out[1]


def _top1(store: RunStore, record: dict) -> dict[str, tuple[int, int]]:
    p = Preds.load(store.dir / record["preds"])
    return {str(i): (int(lab), int(t)) for i, lab, t in zip(p.ids, p.labels, p.top5[:, 0], strict=True)}


def select_images(
    *, runs_dir: Path, run: str, models: list[str], set_name: str, severity: int, n: int,
    select: str = "flipped", seed: int = 0,
) -> Selection:  # fmt: skip
    """Up to ``n`` images of ``set_name`` at ``severity`` chosen by ``select`` (see module docstring)."""
    if select not in SELECTIONS:
        raise UserError(f"--select {select!r}", hint=f"use one of {', '.join(SELECTIONS)}")
    if n < 1:
        raise UserError("--n must be at least 1")
    store = RunStore(runs_dir, run)
    if not store.records_path.is_file():
        raise UserError(
            f"no run {run!r} in {runs_dir}", hint="score one first: robusteval score --run NAME ..."
        )
    clean, shifted, recs = {}, {}, {}
    for m in models:
        c, s = _cells(store, m, set_name, severity)
        clean[m], shifted[m], recs[m] = _top1(store, c), _top1(store, s), s
    common = sorted(set.intersection(*(set(clean[m]) & set(shifted[m]) for m in models)))
    labelled = [i for i in common if shifted[models[0]][i][0] >= 0]
    hits = {}
    for i in labelled:
        label = shifted[models[0]][i][0]
        count = 0
        for m in models:
            right_clean, wrong_shift = clean[m][i][1] == label, shifted[m][i][1] != label
            count += {"flipped": right_clean and wrong_shift, "wrong": wrong_shift, "random": True}[select]
        if count:
            hits[i] = count
    order = sorted(hits, key=lambda i: (-hits[i], derive_seed(seed, "explain", i)))[:n]
    if not order:
        raise UserError(
            f"no {select} images for {', '.join(models)} on {set_name} s{severity} in run {run!r}",
            hint="try --select wrong or --select random",
        )
    return Selection(
        ids=tuple(order),
        labels=np.asarray([shifted[models[0]][i][0] for i in order], dtype=np.int64),
        clean_top1={m: np.asarray([clean[m][i][1] for i in order], dtype=np.int64) for m in models},
        shifted_top1={m: np.asarray([shifted[m][i][1] for i in order], dtype=np.int64) for m in models},
        shifted_records=recs,
        candidates=len(hits),
    )

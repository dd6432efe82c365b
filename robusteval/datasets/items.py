"""What a stage reads: items (image file, id, label) grouped into sets, with the label spaces they are scored in.

A :class:`ScoreSet` is a list of :class:`Item` with one or more :class:`Head` (a label space, and
the items it covers). Clean val, corrupted trees, OOD sets and on-the-fly corruption all become
score sets; each (model, set, severity, head) is one cell of a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.errors import UserError


@dataclass(frozen=True)
class Item:
    path: str
    id: str
    label: int  # in the set's source label space, -1 unknown


@dataclass(frozen=True)
class Head:
    """One label space a set is scored in; ``subset`` names it when it covers only some items."""

    label_space: str
    subset: str | None = None


@dataclass(frozen=True)
class OnTheFly:
    """Corrupt clean images while scoring: the set ``set_name`` at ``severity``, seeded by ``seed``."""

    set_name: str
    severity: int
    seed: int
    impl: str  # "torch" or "imgaug"


@dataclass
class ScoreSet:
    """Items scored together. ``mode``: ``eval`` (full preprocessing), ``resize`` (224 crops) or
    ``native`` (model-vs-human stimuli: unresized at the model's input size, no crop)."""

    name: str
    suite: str
    items: list[Item]
    source_space: str  # label space of ``Item.label``
    heads: list[Head]
    mode: str = "eval"
    severity: int | None = None
    params: dict[str, Any] | None = None
    spec_hash: str | None = None
    skips: list[dict[str, str]] = field(default_factory=list)  # found while listing the set
    onthefly: OnTheFly | None = None

    def identity(self) -> str:
        """sha256 of what a cell of this set measures: sorted (item id, label) pairs, the spec hash
        and the on-the-fly seed. A finished cell is reused only when it matches."""
        import hashlib

        h = hashlib.sha256()
        for item_id, label in sorted((it.id, it.label) for it in self.items):
            h.update(f"{item_id}\t{label}\n".encode("utf-8", "surrogateescape"))
        fly = self.onthefly
        h.update(f"spec={self.spec_hash}\nseed={None if fly is None else fly.seed}\n".encode())
        return h.hexdigest()

    def head_labels(self, head: Head) -> np.ndarray:
        """Labels of every item in ``head``'s label space (-1: not in it)."""
        from robusteval.datasets.labelspace import get_label_space

        labels = np.asarray([it.label for it in self.items], dtype=np.int64)
        return get_label_space(head.label_space).labels_from(labels, source=self.source_space)

    def head_members(self, head: Head) -> np.ndarray:
        """Bool mask of the items a head scores: all for a full head, labelled ones for a subset."""
        if head.subset is None:
            return np.ones(len(self.items), dtype=bool)
        return self.head_labels(head) >= 0


def skips_of(ds) -> list[dict[str, str]]:
    return [{"path": s.path, "reason": s.reason} for s in ds.skips]


def items_of(samples) -> list[Item]:
    return [Item(str(s.path), s.id, int(s.label)) for s in samples]


def clean_set(data: Path, *, labels: Path | None = None, extra_heads: list[str] = ()) -> ScoreSet:
    """The clean val at ``data`` (any layout :func:`read_dataset` reads), full eval preprocessing."""
    from robusteval.datasets.layouts import read_dataset

    ds = read_dataset(Path(data), labels=labels)
    if not ds.samples:
        raise UserError(f"--data {data}: no images found", hint="check the folder and its labels file")
    heads = [Head(ds.label_space)]
    if ds.label_space == "imagenet1k":
        heads += [Head(h, subset=f"clean@{h}") for h in extra_heads]
    return ScoreSet(
        name="clean", suite="clean", items=items_of(ds.samples), source_space=ds.label_space,
        heads=heads, mode="eval", skips=skips_of(ds),
    )  # fmt: skip

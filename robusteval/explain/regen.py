"""The exact pixels a score run saw: the clean image and its shifted 224 crop, regenerated.

A shifted cell is either a tree (``--sets``: the PNG the corrupt stage wrote) or on the fly (its
score record's ``preprocess`` names the implementation and the seed): decode → resize 256 + center
crop 224 (:func:`robusteval.corrupt.spec.base_crop`) → the set's op with the per-image
seed ``derive_seed(seed, set, severity, image id)``, the imgaug reference op per image or the
batched torch op, as the run used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.errors import UserError

_SEED = re.compile(r"\bseed (\d+)\b")


@dataclass(frozen=True)
class ShiftSource:
    """How a shifted cell was made: ``kind`` "tree" or "onthefly"; ``impl`` "imgaug" | "torch"."""

    kind: str
    impl: str | None = None
    seed: int | None = None

    @property
    def label(self) -> str:
        return self.kind if self.impl is None else f"{self.kind}/{self.impl}"


def shift_source(record: dict[str, Any], *, seed: int | None = None) -> ShiftSource:
    """Read a shifted cell's score record (its ``preprocess`` text, written by the score engine)."""
    text = str(record.get("preprocess") or "")
    if not text.startswith("on the fly"):
        return ShiftSource("tree")
    impl = "torch" if "batched torch op" in text else "imgaug"
    found = _SEED.search(text)
    if seed is None:
        seed = int(found.group(1)) if found else 0
    return ShiftSource("onthefly", impl=impl, seed=seed)


@dataclass(frozen=True)
class Images:
    """Per image: ``clean`` the decoded val image (uint8 HWC, any size), ``clean_crop`` its 224
    center crop, ``shifted`` the shifted 224 crop (uint8 224x224x3), in the order of ``ids``."""

    ids: tuple[str, ...]
    clean: list[np.ndarray]
    clean_crop: list[np.ndarray]
    shifted: list[np.ndarray]


def _clean_paths(data: Path | None) -> dict[str, str]:
    if data is None:
        raise UserError("explain needs the clean val images the run scored", hint="pass --data VAL_DIR")
    from robusteval.datasets.items import clean_set

    return {it.id: it.path for it in clean_set(Path(data)).items}


def _tree_paths(sets: Path | None, set_name: str, severity: int) -> dict[str, str]:
    if sets is None:
        raise UserError(
            f"{set_name} s{severity} was scored from a corrupted tree", hint="pass --sets SETS_DIR (the tree)"
        )
    from robusteval.corrupt.trees import tree_sets

    for s in tree_sets(Path(sets)):
        if s.name == set_name and s.severity == severity:
            return {it.id: it.path for it in s.items}
    raise UserError(f"--sets {sets} has no {set_name} severity {severity}")


def _lookup(paths: dict[str, str], image_id: str, where: str) -> str:
    if image_id not in paths:
        raise UserError(
            f"image {image_id!r} of the run is not in {where}", hint="pass the folder the run scored"
        )
    return paths[image_id]


def regenerate(
    ids: tuple[str, ...], *, set_name: str, severity: int, source: ShiftSource, data: Path | None,
    sets: Path | None = None,
) -> Images:  # fmt: skip
    """Decode the clean images (``--data``) and rebuild their shifted crops exactly."""
    from robusteval.corrupt.spec import base_crop, corruption
    from robusteval.datasets.decode import BadImage, load_rgb

    clean_paths = _clean_paths(data)
    try:
        clean = [load_rgb(Path(_lookup(clean_paths, i, f"--data {data}"))) for i in ids]
        crops = [base_crop(im) for im in clean]
        if source.kind == "tree":
            tree = _tree_paths(sets, set_name, severity)
            shifted = [load_rgb(Path(_lookup(tree, i, f"--sets {sets}"))) for i in ids]
        elif source.impl == "torch":
            shifted = _torch_shift(crops, ids, set_name=set_name, severity=severity, seed=source.seed or 0)
        else:
            c = corruption(set_name, severity=severity, seed=source.seed or 0)
            shifted = [c.apply(crop, image_id=i) for crop, i in zip(crops, ids, strict=True)]
    except BadImage as err:
        raise UserError(f"cannot decode an image to explain: {err}") from None
    return Images(ids=tuple(ids), clean=clean, clean_crop=crops, shifted=shifted)


def _torch_shift(
    crops: list[np.ndarray], ids, *, set_name: str, severity: int, seed: int
) -> list[np.ndarray]:
    import torch

    from robusteval.corrupt.batched import apply_batch_op
    from robusteval.seeding import image_seeds

    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    seeds = image_seeds(seed=seed, set_name=set_name, severity=severity, ids=list(ids))
    out = apply_batch_op(batch, set_name=set_name, severity=severity, seeds=seeds)
    return list(out.permute(0, 2, 3, 1).contiguous().numpy())

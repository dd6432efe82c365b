"""On-the-fly corruption while scoring (``--transforms`` with clean ``--data``), instead of trees.

The pixels are those the corrupt stage would write: decode → resize 256 (PIL bilinear) → center
crop 224 → the set's op at a severity, with the per-image seed
``derive_seed(seed, set, severity, image id)``. Two implementations:

- ``torch``: a batched op registered in :data:`BATCH_OPS` under the spec's op name, run on the
  scoring device over whole batches::

      @register_batch_op("perspective")
      def perspective(images, *, seeds, **params):
          '''images: uint8 NCHW on the device (never modified in place: the clean crops are
          cached and reused for every set); seeds: int64 [n], one per image → new uint8 NCHW.'''

  Modules listed in :data:`BATCH_OP_MODULES` are imported on first use (absent ones are skipped).
- ``imgaug``: the reference op of ``robusteval.corrupt.reference`` applied per image in the decode
  workers (CPU); byte-identical to scoring the materialised tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robusteval.corrupt.batched import has_batch_op

IMPLS = ("auto", "torch", "imgaug")


def resolve_impl(op: str, impl: str) -> str:
    """``auto`` → ``torch`` when a batched op is registered for ``op``, else ``imgaug``."""
    from robusteval.errors import UserError

    if impl not in IMPLS:
        raise UserError(f"unknown --transform-impl {impl!r}", hint=f"use one of {', '.join(IMPLS)}")
    if impl == "auto":
        return "torch" if has_batch_op(op) else "imgaug"
    if impl == "torch" and not has_batch_op(op):
        raise UserError(
            f"no batched torch implementation of op {op!r} is registered",
            hint="use --transform-impl imgaug (or auto)",
        )
    return impl


@dataclass(frozen=True)
class CropAndCorrupt:
    """Worker-side ``prepare``: 224 center crop, then (if ``set_name``) the imgaug op of the set.

    Picklable; ``ids[position]`` names the image for its seed.
    """

    ids: tuple[str, ...]
    set_name: str | None = None
    severity: int = 1
    seed: int = 0

    def __call__(self, image: np.ndarray, position: int) -> np.ndarray:
        from robusteval.corrupt.spec import base_crop, corruption

        crop = base_crop(image)
        if self.set_name is None:
            return crop
        c = corruption(self.set_name, severity=self.severity, seed=self.seed)
        return c.apply(crop, image_id=self.ids[position])

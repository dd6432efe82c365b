"""Batched torch twins of the reference ops, for corrupting on the scoring device.

An op registers itself in :data:`BATCH_OPS` under the spec's op name::

    @register_batch_op("iaa_perspective")
    def perspective(images, *, seeds, **params):
        '''images: uint8 NCHW on the device (never modified in place: the clean crops are
        cached and reused for every set); seeds: int64 [n], one per image -> new uint8 NCHW.'''

``params`` are the set's params at a severity, with imgaug's meaning (see
:mod:`robusteval.corrupt.reference.study`). The ops live in ``pixel.py``, ``noise.py`` and ``warp.py``.

Deterministic ops follow imgaug's arithmetic (OpenCV rounding, lookup-table truncation, reflect-101
borders, libjpeg's integer codec) and match its output to within a grey level. Random ops draw their
randomness from a counter-based hash of the per-image seed
(:mod:`robusteval.corrupt.batched.rng`), so they match imgaug in distribution, not pixel for
pixel; the tests state the tolerances.

Speed: every op is batch-wide. Per-image parameters are [n] device tensors, geometry is one
``grid_sample`` per batch (:mod:`robusteval.corrupt.batched.geometry`), blurs are matmuls with
banded matrices, and nothing in a call waits on the host (no ``.item()``/``.tolist()``, no
host-to-device copies: small constants are cached per device). The number of kernels per call does
not grow with the batch, which is what makes large GPU batches fast. The one exception is
``jpeg_compression`` on the CPU, which uses the host's libjpeg (faster there than the tensor codec,
and the same bytes).

Modules listed in :data:`BATCH_OP_MODULES` are imported on first use.
"""

from __future__ import annotations

import numpy as np

from robusteval.registry import Registry, import_modules

BATCH_OPS: Registry = Registry("batched torch op")

#: Modules that register batched torch ops; importing one registers its ops.
BATCH_OP_MODULES: list[str] = [
    "robusteval.corrupt.batched.pixel",
    "robusteval.corrupt.batched.noise",
    "robusteval.corrupt.batched.warp",
]


def register_batch_op(op: str, **meta):
    """Decorator: register ``fn(images, *, seeds, **params) -> images`` for the op named ``op``."""
    return BATCH_OPS.register(op, **meta)


def load_batch_ops() -> None:
    import_modules(BATCH_OP_MODULES)


def has_batch_op(op: str) -> bool:
    load_batch_ops()
    return op in BATCH_OPS


def apply_batch_op(images, *, set_name: str, severity: int, seeds):
    """Run the registered torch op of ``set_name`` at ``severity`` on uint8 NCHW ``images``."""
    import torch

    from robusteval.corrupt.spec import get_spec

    spec = get_spec(set_name)
    load_batch_ops()
    fn = BATCH_OPS.get(spec.op).fn
    from robusteval.devices import host_to_device

    seeds_t = host_to_device(np.asarray(seeds, dtype=np.int64), images.device)
    out = fn(images, seeds=seeds_t, **spec.params(severity))
    if out.dtype != torch.uint8 or out.shape != images.shape:
        raise RuntimeError(
            f"batched op {spec.op} returned {out.dtype} {tuple(out.shape)} for {tuple(images.shape)}"
        )
    return out

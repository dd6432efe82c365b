"""Batched torch twins of the reference ops, for corrupting on the scoring device.

An op registers itself in :data:`BATCH_OPS` under the spec's op name::

    @register_batch_op("iaa_perspective")
    def perspective(images, *, seeds, **params):
        '''images: uint8 NCHW on the device (never modified in place: the clean crops are
        cached and reused for every set); seeds: int64 [n], one per image -> new uint8 NCHW.'''

Modules listed in :data:`BATCH_OP_MODULES` are imported on first use.
"""

from __future__ import annotations

import importlib

import numpy as np

from robusteval.registry import Registry

BATCH_OPS: Registry = Registry("batched torch op")

#: Modules that register batched torch ops; importing one registers its ops.
BATCH_OP_MODULES: list[str] = ["robusteval.corrupt.batched.ops"]


def register_batch_op(op: str, **meta):
    """Decorator: register ``fn(images, *, seeds, **params) -> images`` for the op named ``op``."""
    return BATCH_OPS.register(op, **meta)


def load_batch_ops() -> None:
    for mod in BATCH_OP_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise


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

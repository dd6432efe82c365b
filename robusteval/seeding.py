"""Per-output random state derived from names, so results never depend on worker order."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 32-bit seed from ``parts`` (e.g. seed, transform, severity, image id).

    Stable across processes and Python versions (no ``hash()``); fits imgaug and numpy.
    """
    key = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & 0xFFFF_FFFF


def image_seeds(*, seed: int, set_name: str, severity: int, ids) -> np.ndarray:
    """int64 per-image seeds, the same the corrupt stage uses for these outputs."""
    return np.asarray([derive_seed(seed, set_name, severity, i) for i in ids], dtype=np.int64)

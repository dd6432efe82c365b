"""Counter-based random numbers for the batched torch corruptions.

Every value is a hash of (image seed, stream, element index), so a batch gives the same numbers
whatever its size or order, on CPU and CUDA alike (integer hashing is bit-exact on both; only the
float transforms after it may differ in the last ulp). ``stream`` keeps independent draws of one
op (e.g. an affine's parameters and its per-pixel noise) apart.

Cost model: on a GPU every tensor operation is one kernel launch (~5-10 µs of host time), so the
parts that do not depend on the images (the hash of a stream id, the hash of the element indices)
are computed once in Python or cached per device, and ops draw all their per-image parameters in
one :func:`uniform` call rather than one call per parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9

# (count, device) -> int64 [count]: the image-independent half of the element hash.
_INDEX_HASH: dict[tuple[int, str], torch.Tensor] = {}
_INDEX_HASH_MAX = 64


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 integer hash on the low 32 bits of int64 ``x`` (wrapping products keep those bits)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def _mix32_int(x: int) -> int:
    """:func:`_mix32` on a Python int (same bits): constants are hashed without a kernel."""
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def image_keys(seeds: torch.Tensor, stream: int) -> torch.Tensor:
    """int64 [n] keys (32-bit values) from int64 seeds [n] and a stream id."""
    seeds = seeds.to(torch.int64)
    lo = seeds & _M32
    hi = (seeds >> 32) & _M32
    k = _mix32(lo ^ _mix32_int(stream * 0x632BE5AB + 1))
    return _mix32(k ^ hi ^ 0x5BD1E995)


def _index_hash(count: int, device: torch.device) -> torch.Tensor:
    """int64 [count]: hash of each element index, cached per (count, device)."""
    key = (count, str(device))
    cached = _INDEX_HASH.get(key)
    if cached is None:
        if len(_INDEX_HASH) >= _INDEX_HASH_MAX:
            _INDEX_HASH.clear()
        idx = torch.arange(count, device=device, dtype=torch.int64)
        cached = _INDEX_HASH[key] = _mix32(idx * _GOLDEN + 0x7F4A7C15)
    return cached


def uniform(seeds: torch.Tensor, shape: tuple[int, ...], *, stream: int) -> torch.Tensor:
    """float32 [n, *shape] in [0, 1), 24-bit resolution, on ``seeds``' device."""
    n = seeds.shape[0]
    count = math.prod(shape)
    keys = image_keys(seeds, stream).view(n, 1)
    bits = _mix32(keys ^ _index_hash(count, seeds.device).view(1, count))
    return ((bits >> 8).to(torch.float32) * (1.0 / 16777216.0)).view(n, *shape)


def normal(seeds: torch.Tensor, shape: tuple[int, ...], *, stream: int) -> torch.Tensor:
    """float32 [n, *shape] standard normal (Box-Muller on two independent uniform halves)."""
    n = seeds.shape[0]
    u = uniform(seeds, (2, *shape), stream=stream + 1000).view(n, 2, -1)
    r = torch.sqrt(-2.0 * torch.log1p(-u[:, 0]))  # 1 - u1 in (0, 1]: log is finite
    return (r * torch.cos((2.0 * math.pi) * u[:, 1])).view(n, *shape)


def per_image(seeds: torch.Tensor, value, *, stream: int) -> torch.Tensor:
    """float32 [n]: ``[lo, hi]`` → U(lo, hi) per image (imgaug's tuple); a number → that number."""
    return per_image_params(seeds, [value], stream=stream)[0]


def per_image_int(seeds: torch.Tensor, value, *, stream: int) -> torch.Tensor:
    """float32 [n] integers: ``[lo, hi]`` → uniform over lo..hi inclusive (imgaug DiscreteUniform)."""
    return per_image_params(seeds, [value], stream=stream, integer=[True])[0]


def _is_range(value) -> bool:
    return isinstance(value, list | tuple)


def per_image_params(
    seeds: torch.Tensor, values: Sequence, *, stream: int, integer: Sequence[bool] | None = None
) -> list[torch.Tensor]:
    """float32 [n] per value, drawn together from one uniform call (one column per range).

    ``values[i]``: ``[lo, hi]`` → U(lo, hi) per image (or, with ``integer[i]``, uniform over the
    integers lo..hi inclusive as imgaug's DiscreteUniform); a number → that constant.
    """
    n = seeds.shape[0]
    integer = list(integer) if integer is not None else [False] * len(values)
    ranges = [i for i, v in enumerate(values) if _is_range(v)]
    u = uniform(seeds, (len(ranges),), stream=stream) if ranges else None
    out: list[torch.Tensor] = []
    for i, value in enumerate(values):
        if not _is_range(value):
            v = float(int(value)) if integer[i] else float(value)
            out.append(torch.full((n,), v, device=seeds.device, dtype=torch.float32))
            continue
        col = u[:, ranges.index(i)]
        if integer[i]:
            lo, hi = int(round(value[0])), int(round(value[1]))
            out.append(torch.floor(lo + col * (hi - lo + 1)).clamp_(lo, hi))
        else:
            lo, hi = float(value[0]), float(value[1])
            out.append(lo + (hi - lo) * col)
    return out

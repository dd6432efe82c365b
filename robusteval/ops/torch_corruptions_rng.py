"""Counter-based random numbers for the batched torch corruptions.

Every value is a hash of (image seed, stream, element index), so a batch gives the same numbers
whatever its size or order, on CPU and CUDA alike (integer hashing is bit-exact on both; only the
float transforms after it may differ in the last ulp). ``stream`` keeps independent draws of one
op (e.g. an affine's rotation and its shear) apart.
"""

from __future__ import annotations

import math

import torch

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 integer hash on the low 32 bits of int64 ``x`` (wrapping products keep those bits)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def image_keys(seeds: torch.Tensor, stream: int) -> torch.Tensor:
    """int64 [n] keys (32-bit values) from int64 seeds [n] and a stream id."""
    seeds = seeds.to(torch.int64)
    lo = seeds & _M32
    hi = (seeds >> 32) & _M32
    k = _mix32(lo ^ _mix32(torch.full_like(lo, stream * 0x632BE5AB + 1)))
    return _mix32(k ^ hi ^ 0x5BD1E995)


def uniform(seeds: torch.Tensor, shape: tuple[int, ...], *, stream: int) -> torch.Tensor:
    """float32 [n, *shape] in [0, 1), 24-bit resolution, on ``seeds``' device."""
    n = seeds.shape[0]
    count = math.prod(shape)
    keys = image_keys(seeds, stream).view(n, 1)
    idx = torch.arange(count, device=seeds.device, dtype=torch.int64).view(1, count)
    bits = _mix32(keys ^ _mix32(idx * _GOLDEN + 0x7F4A7C15))
    return ((bits >> 8).to(torch.float32) * (1.0 / 16777216.0)).view(n, *shape)


def normal(seeds: torch.Tensor, shape: tuple[int, ...], *, stream: int) -> torch.Tensor:
    """float32 [n, *shape] standard normal (Box-Muller on two independent uniform streams)."""
    u1 = uniform(seeds, shape, stream=2 * stream + 1000)
    u2 = uniform(seeds, shape, stream=2 * stream + 1001)
    r = torch.sqrt(-2.0 * torch.log1p(-u1))  # 1 - u1 in (0, 1]: log is finite
    return r * torch.cos((2.0 * math.pi) * u2)


def per_image(seeds: torch.Tensor, value, *, stream: int) -> torch.Tensor:
    """float32 [n]: ``[lo, hi]`` → U(lo, hi) per image (imgaug's tuple); a number → that number."""
    n = seeds.shape[0]
    if isinstance(value, list | tuple):
        lo, hi = float(value[0]), float(value[1])
        return lo + (hi - lo) * uniform(seeds, (1,), stream=stream).view(n)
    return torch.full((n,), float(value), device=seeds.device, dtype=torch.float32)


def per_image_int(seeds: torch.Tensor, value, *, stream: int) -> torch.Tensor:
    """float32 [n] integers: ``[lo, hi]`` → uniform over lo..hi inclusive (imgaug DiscreteUniform)."""
    n = seeds.shape[0]
    if isinstance(value, list | tuple):
        lo, hi = int(round(value[0])), int(round(value[1]))
        u = uniform(seeds, (1,), stream=stream).view(n)
        return torch.floor(lo + u * (hi - lo + 1)).clamp_(lo, hi)
    return torch.full((n,), float(int(value)), device=seeds.device, dtype=torch.float32)

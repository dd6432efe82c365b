"""The selective scan the Hessian runs through: plain out-of-place torch, exact to every derivative order.

Hessian-vector products differentiate the gradient once more, so every op of the forward pass needs
an exact second derivative. The fused Triton scan and mamba-ssm's CUDA kernel are autograd
Functions with a hand-written first-order backward and no double backward; a Hessian through them
would drop the scan's second-order terms or fail. The ``torch`` reference backend of
``robusteval.models.kernels`` is the right math, but its prefix scan updates slices in place
(``h[..., s:] = ...``), which autograd cannot differentiate twice (it raises a version-counter
error). This module registers ``torch-exact``: the same recurrence and the same Hillis–Steele
doubling, written without in-place writes, so first and second derivatives are autograd's own.

The stage builds every scan model with ``scan_backend="torch-exact"``. It ranks after ``torch``, so
``auto`` never picks it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from robusteval.models.kernels.scan import SCAN_BACKENDS, ScanOps, cross_selective_scan_unfused

NAME = "torch-exact"


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` along the last dim (``h_{-1} = 0``), ceil(log2 L) out-of-place steps."""
    h, length, step = b, b.shape[-1], 1
    while step < length:
        h = torch.cat([h[..., :step], torch.addcmul(h[..., step:], a[..., step:], h[..., :-step])], dim=-1)
        a = torch.cat([a[..., :step], a[..., step:] * a[..., :-step]], dim=-1)
        step *= 2
    return h


def _expand(M: torch.Tensor, *, batch: int, d: int, length: int, acc: torch.dtype) -> torch.Tensor:
    """B or C in mamba's layouts ((d, n), (b, n, l), (b, g, n, l)) → (b, d, n, l) in ``acc``."""
    M = M.to(acc)
    if M.dim() == 2:
        return M.view(1, d, -1, 1).expand(batch, d, M.shape[-1], length)
    if M.dim() == 3:
        M = M.unsqueeze(1)
    return M.repeat_interleave(d // M.shape[1], dim=1)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """mamba-ssm's ``selective_scan_fn`` semantics: u, delta (b, d, l); A (d, n) real → y (b, d, l)."""
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, d, length = u.shape
    uf, dt = u.to(acc), delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc).view(1, d, 1)
    if delta_softplus:
        dt = F.softplus(dt)
    Bx = _expand(B, batch=batch, d=d, length=length, acc=acc)
    Cx = _expand(C, batch=batch, d=d, length=length, acc=acc)
    a = torch.exp(dt.unsqueeze(2) * A.to(acc).view(1, d, -1, 1))
    h = linear_scan(a, (dt * uf).unsqueeze(2) * Bx)
    y = (h * Cx).sum(2)
    if D is not None:
        y = y + uf * D.to(acc).view(1, d, 1)
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(u.dtype)


def _cross(x: torch.Tensor, **weights: Any) -> torch.Tensor:
    def scan(u: torch.Tensor, *args: Any) -> torch.Tensor:
        return selective_scan(u.to(torch.float64 if u.dtype == torch.float64 else torch.float32), *args)

    return cross_selective_scan_unfused(x, scan=scan, **weights)


@SCAN_BACKENDS.register(NAME, rank=90, devices="cpu, cuda", d_state="any")
def _exact_backend() -> ScanOps:
    """Out-of-place torch reference: exact first and second derivatives (for Hessians)."""
    return ScanOps(
        name=NAME, selective_scan=selective_scan, cross_selective_scan=_cross, supports=lambda *_: True
    )

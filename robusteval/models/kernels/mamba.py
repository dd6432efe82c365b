"""``mamba`` scan backend: mamba-ssm's CUDA ``selective_scan_fn`` (imported lazily; CUDA only).

For :func:`~robusteval.models.kernels.scan.cross_selective_scan` the cross-scan reordering and the
projections run in PyTorch around the kernel (upstream VMamba's ``v05`` dataflow with
``selective_scan_backend="mamba"``). The kernel runs on x's dtype (bf16 under autocast), as upstream
feeds it: no float32 copies of u and delta. mamba-ssm returns its output in u's dtype, so the D skip
stays out of the kernel (D = None) and is added once in float32 after the four directions are summed
in float32 (:func:`~robusteval.models.kernels.scan.cross_selective_scan_unfused`): bf16 rounds only
the scan part, not the larger skip. Gradients: mamba-ssm's own backward (``selective_scan_fn`` is an
autograd function), first derivatives only.
"""

from __future__ import annotations

from typing import Any

import torch

from robusteval.models.kernels.scan import (
    SCAN_BACKENDS,
    BackendUnavailable,
    ScanOps,
    cross_selective_scan_unfused,
)


def _import_kernel() -> Any:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as err:  # ImportError, or an OSError/RuntimeError from a mismatched CUDA build
        raise BackendUnavailable(
            f"mamba_ssm is not importable ({type(err).__name__}: {err}); "
            "install it on a CUDA machine with `pip install mamba-ssm`"
        ) from None
    return selective_scan_fn


def _supports(kind: str, t: torch.Tensor, d_state: int) -> bool:
    return t.is_cuda and t.dtype in (torch.float32, torch.float16, torch.bfloat16)


@SCAN_BACKENDS.register("mamba", rank=20, devices="cuda", d_state="any")
def _mamba_backend() -> ScanOps:
    """mamba-ssm's fused CUDA selective scan (B/C may be grouped), with mamba-ssm's backward."""
    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA device")
    fn = _import_kernel()

    def selective(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        B = B.to(u.dtype) if B.dim() > 2 else B.float()  # the kernel wants variable B/C in u's dtype
        C = C.to(u.dtype) if C.dim() > 2 else C.float()
        delta = delta.to(u.dtype)
        D = None if D is None else D.float()
        delta_bias = None if delta_bias is None else delta_bias.float()
        return fn(u, delta, A.float(), B, C, D, z, delta_bias, delta_softplus)

    def cross(x: torch.Tensor, **weights: Any) -> torch.Tensor:
        return cross_selective_scan_unfused(x, scan=selective, **weights)

    return ScanOps(
        name="mamba",
        selective_scan=selective,
        cross_selective_scan=cross,
        supports=_supports,
        differentiable=1,
    )

"""``triton`` scan backend: fused VMamba cross selective scan for d_state = 1 (inference only)."""

from __future__ import annotations

from robusteval.ops.selective_scan import SCAN_BACKENDS, BackendUnavailable, ScanOps


@SCAN_BACKENDS.register("triton", rank=10, devices="cuda (or TRITON_INTERPRET=1 on CPU)", d_state="1")
def _triton_backend() -> ScanOps:
    """Fused cross-scan + softplus discretisation + scan + D skip + cross-merge in one kernel."""
    raise BackendUnavailable("the fused Triton kernel is not ready yet")

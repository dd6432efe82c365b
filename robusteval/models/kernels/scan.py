"""Selective scan (Mamba S6) and VMamba's 4-direction cross selective scan: one interface, several backends.

Two public entry points, both keyword-only after the tensors:

* :func:`selective_scan` — mamba-ssm's ``selective_scan_fn`` signature and semantics.
* :func:`cross_selective_scan` — VMamba's SS2D core (``forward_corev2`` of the ``v05_noz`` forward type):
  ``cross_merge(selective_scan(cross_scan(x), ...))`` with the x/dt projections in between.

Backends register themselves in :data:`SCAN_BACKENDS` (``torch`` here; ``triton`` in
``triton_scan.py`` with its kernels in ``triton/``; ``mamba`` in ``mamba.py``). A backend entry's function is a *loader*: called
with no arguments it imports what it needs and returns a :class:`ScanOps`, or raises
:class:`BackendUnavailable` saying why. ``backend="auto"`` tries the entries in ascending ``meta["rank"]``
and takes the first whose loader succeeds and whose ``supports(...)`` accepts the inputs.

Gradients: every backend is differentiable (:attr:`ScanOps.differentiable`): ``torch`` through
autograd, twice (exact double backward, e.g. Hessian-vector products); ``mamba`` through mamba-ssm's
own backward and ``triton`` through its fused backward kernel, once. ``grad="auto"`` (the default)
asks for first derivatives when autograd will record the call (grad mode on and an input requires
grad); ``backend="auto"`` then skips backends that cannot give them, and an explicit backend that
cannot is a :class:`UserError`. :func:`which_backend` names the path a call takes.

Numerics (all backends): the recurrence runs in float32 (float64 when the inputs are float64);
``delta + delta_bias`` and ``softplus`` are evaluated in float32, as mamba-ssm's CUDA kernel does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from robusteval.errors import UserError
from robusteval.registry import Registry

__all__ = [
    "SCAN_BACKENDS",
    "BackendUnavailable",
    "ScanOps",
    "GRAD_LEVELS",
    "available_backends",
    "cross_merge",
    "cross_scan",
    "cross_scan_index",
    "cross_selective_scan",
    "resolve_backend",
    "selective_scan",
    "which_backend",
]

SCAN_BACKENDS: Registry[Callable[[], ScanOps]] = Registry("scan backend")

K_DIRECTIONS = 4  # VMamba cross2d: row-major, column-major, and both reversed
# grad= levels: what derivatives the caller will take through the scan (ScanOps.differentiable >= level)
GRAD_LEVELS: dict[str, int] = {"none": 0, "first": 1, "second": 2}
_LEVEL_NAMES = {v: k for k, v in GRAD_LEVELS.items()}


class BackendUnavailable(RuntimeError):
    """A registered backend cannot run here (missing package or no CUDA); the message says which."""


@dataclass(frozen=True)
class ScanOps:
    """What a backend implements. ``None`` means "not implemented by this backend".

    ``supports(kind, tensor, d_state)`` says whether the backend takes these inputs
    (``kind`` is ``"selective"`` or ``"cross"``); auto selection skips backends that say no.
    ``differentiable``: 0 forward only, 1 first derivatives (a backward), 2 also exact second
    derivatives (double backward through autograd).
    """

    name: str
    selective_scan: Callable[..., torch.Tensor] | None
    cross_selective_scan: Callable[..., torch.Tensor] | None
    supports: Callable[[str, torch.Tensor, int], bool]
    differentiable: int = 0


_LOADED: dict[str, ScanOps | BackendUnavailable] = {}


def _load(name: str) -> ScanOps:
    if name not in _LOADED:
        entry = SCAN_BACKENDS.get(name)
        try:
            _LOADED[name] = entry.fn()
        except BackendUnavailable as err:
            _LOADED[name] = err
    got = _LOADED[name]
    if isinstance(got, BackendUnavailable):
        raise got
    return got


def _choices() -> str:
    return "|".join(["auto", *SCAN_BACKENDS.names()])


def available_backends() -> dict[str, str | None]:
    """Backend name → ``None`` when usable here, else the reason it is not."""
    out: dict[str, str | None] = {}
    for entry in SCAN_BACKENDS:
        try:
            _load(entry.name)
            out[entry.name] = None
        except BackendUnavailable as err:
            out[entry.name] = str(err)
    return out


def _grad_level(grad: str, tensors: tuple[Any, ...]) -> int:
    """``grad`` ("auto" | "none" | "first" | "second") → the level :attr:`ScanOps.differentiable` must reach.

    "auto": 1 when autograd records the call (grad mode on and a tensor input requires grad), else 0.
    """
    if grad == "auto":
        needed = torch.is_grad_enabled() and any(torch.is_tensor(t) and t.requires_grad for t in tensors)
        return int(needed)
    if grad not in GRAD_LEVELS:
        raise UserError(f"unknown grad level {grad!r}", hint=f"use one of auto, {', '.join(GRAD_LEVELS)}")
    return GRAD_LEVELS[grad]


def resolve_backend(
    backend: str, *, kind: str, tensor: torch.Tensor, d_state: int, grad: str = "none"
) -> ScanOps:
    """Pick the implementation for ``backend`` (a registered name or ``"auto"``).

    ``grad`` ("none" | "first" | "second"): the derivatives the caller takes through the scan; auto
    selection skips backends whose :attr:`ScanOps.differentiable` is lower. Raises :class:`UserError`
    naming the choices when the backend is unknown, cannot run here, does not implement ``kind`` for
    these inputs, or cannot give the derivatives asked for.
    """
    if grad not in GRAD_LEVELS:
        raise UserError(f"unknown grad level {grad!r}", hint=f"use one of {', '.join(GRAD_LEVELS)}")
    level = GRAD_LEVELS[grad]
    if backend == "auto":
        for entry in sorted(SCAN_BACKENDS, key=lambda e: e.meta.get("rank", 100)):
            try:
                ops = _load(entry.name)
            except BackendUnavailable:
                continue
            impl = ops.selective_scan if kind == "selective" else ops.cross_selective_scan
            if impl is not None and ops.differentiable >= level and ops.supports(kind, tensor, d_state):
                return ops
        raise UserError("no scan backend can run these inputs", hint="use --scan-backend torch")
    if backend not in SCAN_BACKENDS:
        raise UserError(f"unknown scan backend {backend!r}", hint=f"use --scan-backend {_choices()}")
    try:
        ops = _load(backend)
    except BackendUnavailable as err:
        raise UserError(
            f"scan backend {backend!r} cannot run here: {err}", hint="use --scan-backend auto or torch"
        ) from None
    impl = ops.selective_scan if kind == "selective" else ops.cross_selective_scan
    if impl is None or not ops.supports(kind, tensor, d_state):
        what = "selective_scan" if kind == "selective" else "cross_selective_scan"
        raise UserError(
            f"scan backend {backend!r} does not implement {what} for {tensor.device.type} "
            f"{tensor.dtype} inputs with d_state={d_state}",
            hint="use --scan-backend auto or torch",
        )
    if ops.differentiable < level:
        order = {1: "first", 2: "second"}[level]
        raise UserError(
            f"scan backend {backend!r} gives no {order} derivatives (differentiable={ops.differentiable})",
            hint="use --scan-backend torch" if level == 2 else "use --scan-backend auto or torch",
        )
    return ops


def which_backend(
    backend: str = "auto",
    *,
    kind: str = "cross",
    tensor: torch.Tensor,
    d_state: int,
    grad: str = "none",
) -> str:
    """Name of the backend that a call with these inputs runs (``grad`` as in :func:`resolve_backend`),
    e.g. ``which_backend(kind="cross", tensor=x, d_state=1, grad="first")`` → ``"triton"``."""
    return resolve_backend(backend, kind=kind, tensor=tensor, d_state=d_state, grad=grad).name


# ----------------------------------------------------------------------------------------------
# Public interface
# ----------------------------------------------------------------------------------------------


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
    *,
    backend: str = "auto",
    grad: str = "auto",
) -> torch.Tensor:
    """Selective scan with mamba-ssm's ``selective_scan_fn`` semantics (real A), differentiable.

    Shapes (b batch, d channels, l length, n state size, g groups with d % g == 0):
    u, delta: (b, d, l); A: (d, n); B, C: (b, n, l) or (b, g, n, l) (channel c uses group
    c // (d // g)) or (d, n) time-invariant; D: (d,); z: (b, d, l) gate, y *= silu(z); delta_bias: (d,).

    ``dt = softplus(delta + delta_bias)`` (if ``delta_softplus``), then per channel and state
    ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t``, ``y_t = <C_t, h_t> + D u_t``, h_{-1} = 0.
    Arithmetic is float32 (float64 for float64 inputs); the result has u's dtype, as in mamba-ssm.
    ``grad``: "auto" | "none" | "first" | "second" (see the module docstring).
    """
    level = _grad_level(grad, (u, delta, A, B, C, D, z, delta_bias))
    ops = resolve_backend(
        backend, kind="selective", tensor=u, d_state=int(A.shape[-1]), grad=_LEVEL_NAMES[level]
    )
    assert ops.selective_scan is not None
    return ops.selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def cross_selective_scan(
    x: torch.Tensor,
    *,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    backend: str = "auto",
    grad: str = "auto",
) -> torch.Tensor:
    """VMamba SS2D core: 4-direction cross scan, selective scan, cross merge; differentiable.

    x: (B, D, H, W) inner features after in_proj, depthwise conv and SiLU, channel-first, any float dtype.
    x_proj_weight: (4, R + 2N, D); dt_projs_weight: (4, D, R); dt_projs_bias: (4, D);
    A_logs: (4 D, N); Ds: (4 D,). Direction k scans x flattened row-major (k=0), column-major (k=1),
    and those two reversed (k=2, 3); outputs are summed back at each pixel.

    Matches upstream ``forward_corev2`` (``v05_noz``, ``oflex`` kernel): the projections run in x's dtype
    (weights cast to it; float32 accumulation), ``A = -exp(A_logs)``, the scan in float32, and the result
    is **float32** (B, D, H, W) whatever x's dtype — upstream casts only after its out-norm. Its memory
    layout is the backend's: ``triton`` follows x's (a channels_last x gives a channels_last y, so
    ``y.permute(0, 2, 3, 1)`` is contiguous), the others return contiguous tensors.
    Fused backends may keep dt in float32 instead of rounding it to x's dtype first (bf16: within bf16
    tolerance of the reference). ``grad``: "auto" | "none" | "first" | "second" (module docstring).
    """
    if x.dim() != 4:
        raise UserError(f"cross_selective_scan wants x of shape (B, D, H, W); got {tuple(x.shape)}")
    K, RN2, Dm = x_proj_weight.shape
    if K != K_DIRECTIONS or Dm != x.shape[1]:
        raise UserError(f"x_proj_weight must be (4, R+2N, {x.shape[1]}); got {tuple(x_proj_weight.shape)}")
    N = int(A_logs.shape[-1])
    level = _grad_level(grad, (x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds))
    ops = resolve_backend(backend, kind="cross", tensor=x, d_state=N, grad=_LEVEL_NAMES[level])
    assert ops.cross_selective_scan is not None
    return ops.cross_selective_scan(
        x,
        x_proj_weight=x_proj_weight,
        dt_projs_weight=dt_projs_weight,
        dt_projs_bias=dt_projs_bias,
        A_logs=A_logs,
        Ds=Ds,
    )


# ----------------------------------------------------------------------------------------------
# Cross scan / merge (VMamba "cross2d", channel-first)
# ----------------------------------------------------------------------------------------------


def cross_scan_index(H: int, W: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(4, H*W) int64: entry [k, l] is the row-major pixel index (h*W + w) that direction k visits at step l.

    k=0 row-major, k=1 column-major (l = w*H + h), k=2 / k=3 the same sequences reversed.
    """
    pix = torch.arange(H * W, device=device)
    rows = pix
    cols = pix.view(H, W).t().reshape(-1)
    return torch.stack([rows, cols, rows.flip(0), cols.flip(0)])


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) → (B, 4, D, H*W): the four scan orders of :func:`cross_scan_index`.

    Flattens and transposes (no index tensors): each output element is written once, x is read twice.
    """
    B, D, H, W = x.shape
    out = x.new_empty(B, K_DIRECTIONS, D, H * W)
    out[:, 0] = x.flatten(2)
    out[:, 1] = x.transpose(2, 3).flatten(2)
    out[:, 2:] = out[:, :2].flip(-1)
    return out


def cross_merge(ys: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, 4, D, H*W) in scan order → (B, D, H, W): each pixel sums its four directions' outputs.

    The sums run in the wider of ys's dtype and float32 (bf16 direction outputs add up in float32).
    """
    B, K, D, L = ys.shape
    acc = torch.promote_types(ys.dtype, torch.float32)
    rows = ys[:, 0].to(acc) + ys[:, 2].flip(-1)
    cols = ys[:, 1].to(acc) + ys[:, 3].flip(-1)
    # the column-major sum added through a transposed view: one pass, no reshape copy
    return rows.view(B, D, H, W) + cols.view(B, D, W, H).transpose(2, 3)


def _to_scan_order(t: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, 4, C, H*W) per-direction tensors in pixel order → each direction in its own scan order
    (contiguous)."""
    B, K, Cc, L = t.shape
    t4 = t.view(B, K, Cc, H, W) if t.is_contiguous() else t.reshape(B, K, Cc, H, W)
    out = t.new_empty(B, K, Cc, L)
    out[:, 0] = t4[:, 0].flatten(2)
    out[:, 1] = t4[:, 1].transpose(2, 3).flatten(2)
    out[:, 2] = t4[:, 2].flatten(2).flip(-1)
    out[:, 3] = t4[:, 3].transpose(2, 3).flatten(2).flip(-1)
    return out


def project(
    x: torch.Tensor,
    *,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-pixel projections of SS2D in each direction's **scan order** (x's dtype).

    Returns dts (B, 4, D, H*W), Bs (B, 4, N, H*W), Cs (B, 4, N, H*W), contiguous. The x projection is
    one GEMM on x in pixel order (the projections act on each pixel alone, so projecting first and
    reordering afterwards equals upstream's order); only its small (R + 2N)-row output is reordered,
    and the dt projection then yields dts directly in scan order. For channels_last x (SS2D's conv
    output) the GEMM reads x as (B H W, D) without a copy.
    """
    B, D, H, W = x.shape
    L = H * W
    K, RN2, _ = x_proj_weight.shape
    R = dt_projs_weight.shape[-1]
    N = (RN2 - R) // 2
    w = x_proj_weight.to(x.dtype).reshape(K * RN2, D)
    if x.shape[1] > 1 and x.stride(1) == 1:  # channels_last memory: (B, H, W, D) rows
        x_dbl = torch.matmul(x.permute(0, 2, 3, 1).reshape(B, L, D), w.t()).view(B, L, K, RN2)
        x_dbl = x_dbl.permute(0, 2, 3, 1)
    else:
        x_dbl = torch.matmul(w, x.reshape(B, D, L)).view(B, K, RN2, L)
    x_dbl = _to_scan_order(x_dbl, H, W)
    dts_r, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.matmul(dt_projs_weight.to(x.dtype).unsqueeze(0), dts_r)  # (B, 4, D, L)
    return dts, Bs.contiguous(), Cs.contiguous()


def cross_selective_scan_unfused(
    x: torch.Tensor,
    *,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    scan: Callable[..., torch.Tensor],
) -> torch.Tensor:
    """Upstream's dataflow with a pluggable ``scan`` (a :func:`selective_scan`-like callable, called
    with D = None); returns float32 (float64 for float64 x).

    The scan runs on x's dtype (bf16 under autocast, as upstream feeds mamba-ssm) without the D skip;
    the four directions' outputs are summed in float32 and the skip ``sum_k D_k x`` is added once
    there, so a 16-bit scan output rounds only the (smaller) scan part. Used by ``torch`` and ``mamba``.
    """
    B, D, H, W = x.shape
    L = H * W
    N = int(A_logs.shape[-1])
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    dts, Bs, Cs = project(x, x_proj_weight=x_proj_weight, dt_projs_weight=dt_projs_weight)
    xs = cross_scan(x).view(B, K_DIRECTIONS * D, L)
    As = -torch.exp(A_logs.to(acc)).reshape(K_DIRECTIONS * D, N)
    ys = scan(
        xs, dts.view(B, K_DIRECTIONS * D, L), As, Bs, Cs, None, None, dt_projs_bias.to(acc).reshape(-1), True
    )
    y = cross_merge(ys.view(B, K_DIRECTIONS, D, L), H, W).to(acc)
    dsum = Ds.to(acc).view(K_DIRECTIONS, D).sum(0).view(1, D, 1, 1)
    return torch.addcmul(y, dsum, x.to(acc))


# ----------------------------------------------------------------------------------------------
# torch reference: parallel prefix scan (Hillis–Steele doubling), no Python loop over length
# ----------------------------------------------------------------------------------------------


def _linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t along the last dim with h_{-1} = 0, in ceil(log2 L) vectorised steps.

    Composition of steps only multiplies factors in (0, 1], so there is no overflow or cancellation
    (unlike exp(cumsum) formulations); results differ from a sequential loop by rounding only.
    """
    h = b
    L = h.shape[-1]
    step = 1
    while step < L:
        # Position t absorbs the segment ending at t - step: h_t += A_t * h_{t-step}, A_t *= A_{t-step}.
        # Out of place (new tensors, no slice writes), so autograd can differentiate it to any order.
        h = torch.cat([h[..., :step], torch.addcmul(h[..., step:], a[..., step:], h[..., :-step])], dim=-1)
        a = torch.cat([a[..., :step], a[..., step:] * a[..., :-step]], dim=-1)
        step *= 2
    return h


def _expand_bc(M: torch.Tensor, *, batch: int, d: int, length: int, acc: torch.dtype) -> torch.Tensor:
    """B or C in any mamba layout → (batch, d, n, length) in ``acc``."""
    M = M.to(acc)
    if M.dim() == 2:  # (d, n) time-invariant
        return M.view(1, d, -1, 1).expand(batch, d, M.shape[-1], length)
    if M.dim() == 3:  # (b, n, l): one group
        M = M.unsqueeze(1)
    g = M.shape[1]
    if d % g:
        raise UserError(f"channels ({d}) must be a multiple of the B/C groups ({g})")
    return M.repeat_interleave(d // g, dim=1)


def _selective_scan_torch(
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
    if A.is_complex():
        raise UserError("complex A is not supported by the scan backends here")
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, d, length = u.shape
    uf = u.to(acc)
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc).view(1, d, 1)
    if delta_softplus:
        dt = F.softplus(dt)
    Bx = _expand_bc(B, batch=batch, d=d, length=length, acc=acc)
    Cx = _expand_bc(C, batch=batch, d=d, length=length, acc=acc)
    a = torch.exp(dt.unsqueeze(2) * A.to(acc).view(1, d, -1, 1))  # (b, d, n, l)
    b = (dt * uf).unsqueeze(2) * Bx
    h = _linear_scan(a, b)
    y = (h * Cx).sum(2)
    if D is not None:
        y = y + uf * D.to(acc).view(1, d, 1)
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(u.dtype)


def _cross_torch(x: torch.Tensor, **weights: Any) -> torch.Tensor:
    # Our own scan returns u's dtype; the unfused path upcasts, so pass float32 u to keep fp32 outputs.
    def scan(u: torch.Tensor, *args: Any) -> torch.Tensor:
        acc = torch.float64 if u.dtype == torch.float64 else torch.float32
        return _selective_scan_torch(u.to(acc), *args)

    return cross_selective_scan_unfused(x, scan=scan, **weights)


@SCAN_BACKENDS.register("torch", rank=30, devices="cpu, cuda", d_state="any")
def _torch_backend() -> ScanOps:
    """Exact reference in plain PyTorch; runs anywhere (memory ~ a few times B*D*N*L); autograd
    differentiates it to any order."""
    return ScanOps(
        name="torch",
        selective_scan=_selective_scan_torch,
        cross_selective_scan=_cross_torch,
        supports=lambda kind, t, n: True,
        differentiable=2,
    )


# Importing registers the other backends (they import nothing heavy at module level).
from robusteval.models.kernels import mamba as scan_mamba  # noqa: E402, F401
from robusteval.models.kernels import triton_scan as scan_triton  # noqa: E402, F401

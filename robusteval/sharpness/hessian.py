"""The Hessian of a model's mean cross-entropy as a linear operator, and what we estimate from it.

The operator is curvlinops' ``HessianLinearOperator`` (its data loop, mean normalisation over
batches, SciPy export, Papyan's stochastic Lanczos quadrature). Its mini-batch product is ours:
curvlinops forms it with ``torch.func`` (``jvp`` of ``jacrev`` under ``vmap``), which rejects the
in-place updates of our models (VMamba's cross merge ``index_add_``), so :class:`_Operator`
computes the same product by double backward — ``∂/∂θ (∇θ L · v)`` — with every column of a block
sharing one forward and one first backward per batch. Exactness is tested against
``torch.autograd.functional.hessian`` (tests/test_sharpness.py).

Estimates (all on the operator, float64 Lanczos vectors, matvecs in the model's dtype):

- :func:`top_eigenvalues`: SciPy ``eigsh`` (ARPACK implicitly restarted Lanczos), ``which="LA"``;
  residuals ``‖Hv − λv‖ / |λ|`` recomputed with k extra products.
- :func:`hutchinson`: Girard–Hutchinson trace with Rademacher probes; its standard error is the
  sample std of the per-probe ``vᵀHv`` over √probes.
- :func:`spectral_density`: curvlinops' ``lanczos_approximate_spectrum`` (Papyan 2020, Gaussian
  bumps of width ``kappa`` on [-1, 1]), density normalised to integrate to 1 over the grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from robusteval.errors import UserError


def _require_curvlinops():
    try:
        import curvlinops
    except ImportError:
        raise UserError(
            "the sharpness stage needs curvlinops, which is not installed",
            hint="pip install 'robusteval[sharpness]' (or pip install curvlinops-for-pytorch)",
        ) from None
    return curvlinops


@cache
def _operator_class() -> type:
    HessianLinearOperator = _require_curvlinops().HessianLinearOperator

    class _Operator(HessianLinearOperator):
        """curvlinops' Hessian operator with the batch product by double backward; counts products."""

        matvecs = 0

        def _matmat(self, M: list[torch.Tensor]) -> list[torch.Tensor]:
            self.matvecs += int(M[0].shape[-1])
            return super()._matmat(M)

        def _matmat_batch(self, X, y, M: list[torch.Tensor]) -> list[torch.Tensor]:
            params = list(self._params)
            with torch.enable_grad():
                loss = self._loss_func(self._model_func(X), y)
                # A parameter the loss does not use (or uses linearly) has zero Hessian rows.
                grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
                used = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
                k = int(M[0].shape[-1])
                out = [torch.zeros_like(m) for m in M]
                for j in range(k):
                    hv = torch.autograd.grad(
                        [grads[i] for i in used], params, grad_outputs=[M[i][..., j] for i in used],
                        retain_graph=j < k - 1, allow_unused=True,
                    )  # fmt: skip
                    for i, h in enumerate(hv):
                        if h is not None:
                            out[i][..., j] = h.detach()
            return out

    return _Operator


def hessian_operator(
    model: nn.Module,
    params: Sequence[nn.Parameter],
    data: Sequence[tuple[torch.Tensor, torch.Tensor]],
):
    """The Hessian of ``mean over all images of cross_entropy(model(X), y)`` w.r.t. ``params``.

    ``data``: batches ``(X float NCHW on the model's device, y int64 [b] class indices 0..C-1)``.
    """
    n = sum(int(x.shape[0]) for x, _ in data)
    return _operator_class()(
        model, nn.CrossEntropyLoss(reduction="mean"), list(params), list(data),
        check_deterministic=False, num_data=n,
    )  # fmt: skip


@dataclass(frozen=True)
class Eigen:
    """Largest algebraic eigenvalues (descending, loss units per parameter unit²) and convergence."""

    values: tuple[float, ...]
    residuals: tuple[float, ...]  # ‖Hv − λv‖ / |λ| per eigenpair
    matvecs: int  # Hessian-vector products eigsh used (the residual check excluded)
    converged: bool


def top_eigenvalues(
    op, *, k: int, tol: float = 1e-3, maxiter: int | None = None, ncv: int | None = None, seed: int = 0
) -> Eigen:
    """Top-``k`` eigenvalues of ``op`` by ARPACK Lanczos (``scipy.sparse.linalg.eigsh``, ``which="LA"``).

    ``tol``: ARPACK's relative accuracy; ``maxiter``: its restart limit (None: 10·n); ``ncv``: Lanczos
    vectors per restart (None: ARPACK's max(2k+1, 20)). A run that
    hits ``maxiter`` keeps the pairs that did converge (``converged=False``).
    """
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    n = op.shape[0]
    if not 1 <= k < n:
        raise UserError(f"--top-k {k}: need 1 <= k < {n} (the number of parameters)")
    rng = np.random.default_rng(seed)
    start = op.matvecs
    converged = True
    try:
        vals, vecs = eigsh(
            op.to_scipy(dtype=np.float64), k=k, which="LA", tol=tol, maxiter=maxiter, ncv=ncv,
            v0=rng.standard_normal(n),
        )  # fmt: skip
    except ArpackNoConvergence as err:
        vals, vecs, converged = err.eigenvalues, err.eigenvectors, False
    used = op.matvecs - start
    order = np.argsort(vals)[::-1]
    vals, vecs = np.asarray(vals)[order], np.asarray(vecs)[:, order]
    residuals: list[float] = []
    if len(vals):
        V = torch.as_tensor(vecs, dtype=op.dtype, device=op.device)
        HV = (op @ V).double().cpu().numpy()
        res = np.linalg.norm(HV - vecs * vals[None, :], axis=0) / np.maximum(np.abs(vals), 1e-30)
        residuals = [float(r) for r in res]
    return Eigen(tuple(float(v) for v in vals), tuple(residuals), used, converged)


@dataclass(frozen=True)
class Trace:
    """Hutchinson estimate of tr(H) and its standard error (same units as the eigenvalues)."""

    value: float
    stderr: float
    probes: int


def hutchinson(op, *, probes: int, seed: int = 0, chunk: int = 8) -> Trace:
    """``mean(vᵀHv)`` over ``probes`` Rademacher vectors; ``chunk`` probes share one data pass."""
    if probes < 2:
        raise UserError(f"--trace-probes {probes}: need at least 2 for a standard error")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    n = op.shape[0]
    quad: list[float] = []
    for lo in range(0, probes, chunk):
        width = min(chunk, probes - lo)
        G = (torch.randint(0, 2, (n, width), generator=gen).to(torch.float64) * 2 - 1).to(op.dtype)
        G = G.to(op.device)
        HG = op @ G
        quad += [float(x) for x in (G.double() * HG.double()).sum(0).cpu()]
    arr = np.asarray(quad)
    return Trace(float(arr.mean()), float(arr.std(ddof=1) / np.sqrt(len(arr))), len(arr))


@dataclass(frozen=True)
class Density:
    """Spectral density on a grid: ``grid`` in eigenvalue units, ``density`` ≥ 0 integrating to 1."""

    grid: tuple[float, ...]
    density: tuple[float, ...]
    ncv: int
    repeats: int
    matvecs: int


def spectral_density(
    op,
    *,
    ncv: int = 64,
    repeats: int = 1,
    points: int = 256,
    lam_max: float | None = None,
    seed: int = 0,
) -> Density:
    """Stochastic Lanczos quadrature (curvlinops ``lanczos_approximate_spectrum``, Papyan 2020).

    ``lam_max``: a known largest eigenvalue (saves one boundary search); the smallest is searched.
    """
    spectrum = _require_curvlinops().lanczos_approximate_spectrum
    start = op.matvecs
    devices = [op.device] if op.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        grid, dens = spectrum(
            op, ncv, num_points=points, num_repeats=repeats, boundaries=(None, lam_max)
            if lam_max is not None else None,
        )  # fmt: skip
    g = grid.double().cpu().numpy()
    d = np.clip(dens.double().cpu().numpy(), 0, None)
    area = np.trapezoid(d, g)
    d = d / area if area > 0 else d
    return Density(tuple(float(x) for x in g), tuple(float(x) for x in d), ncv, repeats, op.matvecs - start)


# --- parameter groups ------------------------------------------------------------------------


def param_groups(
    module: nn.Module, *, per_block: bool = False, prefixes: Iterable[str] = ()
) -> list[tuple[str, list[nn.Parameter]]]:
    """Named parameter groups; each group's Hessian is the diagonal block of its parameters.

    Default: one group ``"all"``. ``prefixes``: one group per module prefix (``layers.0``,
    ``classifier``). ``per_block``: the model's stages, found structurally — descend through
    wrappers with one child holding parameters, expand a ``Sequential``/``ModuleList`` of non-leaf
    modules (stages, blocks) into its members; parameters held directly form their own group.
    """
    trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
    wanted = list(prefixes)
    if not wanted and per_block:
        wanted = _block_prefixes(module)
    if not wanted:
        return [("all", list(trainable.values()))]
    out = []
    for prefix in wanted:
        ps = [p for n, p in trainable.items() if n == prefix or n.startswith(prefix + ".")]
        if not ps:
            raise UserError(
                f"--blocks {prefix}: no parameters under that module prefix",
                hint=f"top-level modules: {', '.join(n for n, _ in module.named_children())}",
            )
        out.append((prefix, ps))
    return out


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _block_prefixes(module: nn.Module, prefix: str = "") -> list[str]:
    children = [(n, c) for n, c in module.named_children() if _has_params(c)]
    own = [n for n, _ in module.named_parameters(recurse=False)]
    if len(children) == 1 and not own:  # a wrapper: look inside
        name, child = children[0]
        return _block_prefixes(child, f"{prefix}{name}.")
    out = [f"{prefix}{n}" for n in own]
    for name, child in children:
        members = [(n, c) for n, c in child.named_children() if _has_params(c)]
        stacked = isinstance(child, nn.Sequential | nn.ModuleList)
        if stacked and members and all(any(True for _ in c.children()) for _, c in members):
            out += [f"{prefix}{name}.{n}" for n, _ in members]
        else:
            out.append(f"{prefix}{name}")
    return out

"""Selective-scan parity on CPU: every backend that can run here against a float64 sequential loop.

The Triton kernel runs under Triton's CPU interpreter in a subprocess (TRITON_INTERPRET=1 must be set
before triton is imported, and other tests in this process may already have imported it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from robusteval.errors import UserError
from robusteval.models.kernels import scan as ss


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """One step at a time, float64: the definition the fast paths must reproduce."""
    u, delta, A = u.double(), delta.double(), A.double()
    b, d, L = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    def expand(M):
        M = M.double()
        if M.dim() == 2:
            return M.view(1, d, -1, 1).expand(b, d, M.shape[1], L)
        if M.dim() == 3:
            M = M[:, None]
        return M.repeat_interleave(d // M.shape[1], dim=1)

    Bx, Cx = expand(B), expand(C)
    h = torch.zeros(b, d, A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, -1)
    if D is not None:
        y = y + u * D.double()[:, None]
    if z is not None:
        y = y * F.silu(z.double())
    return y


def upstream_cross_scan(x):
    """VMamba's cross2d written with explicit flatten/transpose/flip (channel-first)."""
    B, C, H, W = x.shape
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)


def upstream_cross_merge(ys, H, W):
    B, K, D, L = ys.shape
    y = ys[:, 0:2] + ys[:, 2:4].flip(-1)
    return (y[:, 0] + y[:, 1].view(B, D, W, H).transpose(2, 3).reshape(B, D, L)).view(B, D, H, W)


def naive_cross(x, *, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
    """Upstream forward_corev2 dataflow with the sequential float64 scan."""
    B, D, H, W = x.shape
    K, RN2, _ = x_proj_weight.shape
    R = dt_projs_weight.shape[-1]
    N = (RN2 - R) // 2
    xs = upstream_cross_scan(x.double())
    x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight.double())
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, dt_projs_weight.double())
    ys = naive_scan(
        xs.reshape(B, K * D, -1),
        dts.reshape(B, K * D, -1),
        -torch.exp(A_logs.double()),
        Bs,
        Cs,
        Ds,
        delta_bias=dt_projs_bias.reshape(-1),
        delta_softplus=True,
    )
    return upstream_cross_merge(ys.view(B, K, D, -1), H, W)


def random_scan_inputs(*, b=2, d=6, n=4, L=37, groups=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(
        u=r(b, d, L),
        delta=r(b, d, L),
        A=-(torch.rand(d, n, generator=g, dtype=dtype) + 0.1),
        B=r(b, groups, n, L),
        C=r(b, groups, n, L),
        D=r(d),
        delta_bias=r(d) * 0.5,
        delta_softplus=True,
    )


def random_cross_inputs(*, b=2, d=8, h=5, w=7, n=1, r=3, seed=0, dtype=torch.float32):
    """VMamba-like magnitudes: dt ≈ softplus(small + bias), A ≈ -1, so states carry over many steps."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float32)  # noqa: E731
    return rn(b, d, h, w).to(dtype), dict(
        x_proj_weight=rn(4, r + 2 * n, d) / d**0.5,
        dt_projs_weight=rn(4, d, r) / r**0.5,
        dt_projs_bias=rn(4, d) * 0.5 - 2.0,
        A_logs=rn(4 * d, n) * 0.5,
        Ds=rn(4 * d),
    )


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("layout", ["grouped", "ungrouped", "invariant"])
def test_torch_reference_matches_sequential_loop(n, layout):
    args = random_scan_inputs(n=n, dtype=torch.float64, seed=n)
    if layout == "ungrouped":
        args["B"], args["C"] = args["B"][:, 0], args["C"][:, 0]
    elif layout == "invariant":
        args["B"], args["C"] = args["B"][0, 0, :, :1].T.repeat(6, 1), args["C"][0, 0, :, :1].T.repeat(6, 1)
    z = torch.randn_like(args["u"])
    got = ss.selective_scan(**args, z=z, backend="torch")
    want = naive_scan(**args, z=z)
    assert got.dtype == torch.float64
    assert rel(got, want) < 1e-12


def test_torch_reference_float32_and_dtype():
    args = random_scan_inputs(n=1, L=300, seed=3)
    got = ss.selective_scan(**args, backend="torch")
    assert got.dtype == torch.float32
    assert rel(got, naive_scan(**args)) < 1e-5
    half = {k: (v.bfloat16() if torch.is_tensor(v) and k in ("u", "delta") else v) for k, v in args.items()}
    assert ss.selective_scan(**half, backend="torch").dtype == torch.bfloat16


def test_cross_scan_index_maps_match_explicit_flips_and_transposes():
    x = torch.randn(2, 3, 5, 7)
    assert torch.equal(ss.cross_scan(x), upstream_cross_scan(x))
    ys = torch.randn(2, 4, 3, 35)
    assert torch.allclose(ss.cross_merge(ys, 5, 7), upstream_cross_merge(ys, 5, 7), atol=1e-6)


@pytest.mark.parametrize("n", [1, 2])
def test_cross_selective_scan_torch_matches_upstream_dataflow(n):
    x, w = random_cross_inputs(n=n, seed=10 + n)
    got = ss.cross_selective_scan(x.double(), **w, backend="torch")
    assert got.shape == x.shape and got.dtype == torch.float64
    assert rel(got, naive_cross(x, **w)) < 1e-12
    got32 = ss.cross_selective_scan(x, **w, backend="torch")
    assert got32.dtype == torch.float32
    assert rel(got32, naive_cross(x, **w)) < 1e-5


def test_unknown_and_unavailable_backends_say_what_to_type():
    x, w = random_cross_inputs()
    with pytest.raises(UserError, match="--scan-backend"):
        ss.cross_selective_scan(x, **w, backend="tritonn")
    reasons = ss.available_backends()
    assert reasons["torch"] is None
    for name, why in reasons.items():
        if why is not None:
            with pytest.raises(UserError, match="--scan-backend"):
                ss.cross_selective_scan(x, **w, backend=name)


def test_auto_runs_and_agrees_with_torch():
    x, w = random_cross_inputs(seed=5)
    assert rel(ss.cross_selective_scan(x, **w), ss.cross_selective_scan(x, **w, backend="torch")) < 1e-5


TRITON_CHECK = """
import json, os, sys
assert os.environ.get("TRITON_INTERPRET") == "1"
sys.path.insert(0, {tests!r})
import torch
from test_scan import random_cross_inputs, rel
from robusteval.models.kernels import scan as ss
from robusteval.models.kernels import triton_scan as scan_triton
from robusteval.models.kernels.triton_scan import cross_selective_scan_triton

PART = {part!r}
out = {{}}


def channels_last(x):
    return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


# (kernel, b, d, h, w, r, config). v2: ragged channel block (20, 17), rows not dividing H (4 % 3, 6 % 4),
# a width under 16 and not a power of two (padded to 16), a single row, a rank that fills R_PAD = R + 3,
# a rank whose bias goes after the dot (R = 16: R + 3 would double R_PAD), no next-row prefetch.
# img: ragged channel block, H != W, a single row, a tile of more than 16 pixels with R = 16.
# chunked: the plain forward (chunks of 16 steps: several per direction, the last ragged).
cases = [
    ("v2", 2, 8, 5, 7, 3, dict(rows=1)),
    ("v2", 1, 20, 4, 8, 2, dict(rows=3)),
    ("v2", 2, 4, 1, 6, 2, dict(rows=2)),
    ("v2", 1, 17, 6, 9, 13, dict(rows=4, block_g=32)),
    ("v2", 1, 16, 3, 5, 16, dict(rows=1)),
    ("v2", 1, 16, 3, 5, 8, dict(rows=2, prefetch=False)),
    ("img", 2, 8, 5, 7, 3, dict()),
    ("img", 1, 20, 3, 6, 2, dict(block_g=16)),
    ("img", 1, 17, 1, 6, 13, dict(block_g=32)),
    ("img", 1, 16, 6, 5, 16, dict(num_warps=2)),
    ("chunked", 2, 8, 5, 7, 3, dict(block_l=16)),
    ("chunked", 1, 20, 3, 6, 16, dict(block_l=16)),
]
for kernel, b, d, h, w, r, cfg in cases:
    if kernel != PART:
        continue
    x, wts = random_cross_inputs(b=b, d=d, h=h, w=w, r=r, seed=d + h)
    ref = ss.cross_selective_scan(x.double(), **wts, backend="torch")
    y = cross_selective_scan_triton(x, **wts, kernel=kernel, **cfg)
    out[f"fp32 {{kernel}} {{(b, d, h, w, r, cfg)}}"] = [rel(y, ref), str(y.dtype), bool(torch.isfinite(y).all())]
    # channels_last x (SS2D's conv output) read through its strides: y comes back channels_last too;
    # projections pixel-major and channel-major; x copied first with y contiguous.
    xl = channels_last(x)
    for io in (dict(), dict(dbl="channel"), dict(x_mem="copy", y_mem="contiguous")):
        y = cross_selective_scan_triton(xl, **wts, kernel=kernel, **cfg, **io)
        cl = y.permute(0, 2, 3, 1).is_contiguous()
        key = f"strided {{kernel}} {{(b, d, h, w, r, cfg, io)}}"
        out[key] = [rel(y, ref), str(y.dtype), bool(torch.isfinite(y).all()), cl == (io.get("y_mem") != "contiguous")]
if PART in ("v2", "img", "chunked"):
    x, wts = random_cross_inputs(b=1, d=8, h=5, w=7, r=3, seed=7)
    xb = x.bfloat16()
    want = ss.cross_selective_scan(xb, **wts, backend="torch")
    out[f"bf16 {{PART}}"] = rel(cross_selective_scan_triton(xb, **wts, kernel=PART), want)

if PART == "misc":
    x, wts = random_cross_inputs(b=1, d=8, h=5, w=7, r=3, seed=7)
    out["auto n=1"] = ss.resolve_backend("auto", kind="cross", tensor=x, d_state=1).name
    out["auto n=2"] = ss.resolve_backend("auto", kind="cross", tensor=x, d_state=2).name
    out["which first"] = ss.which_backend(tensor=x, d_state=1, grad="first")
    out["which second"] = ss.which_backend(tensor=x, d_state=1, grad="second")
    # The custom ops: schema, fake (meta) implementation with the real strides, dispatch, autograd.
    xl = channels_last(x)
    dbl = scan_triton.projections(xl, wts["x_proj_weight"], layout="pixel")
    op_args = (xl, dbl, wts["dt_projs_weight"], wts["dt_projs_bias"], wts["A_logs"], wts["Ds"], "img:g16-w4")
    utils = ("test_schema", "test_faketensor", "test_aot_dispatch_static")
    checks = torch.library.opcheck(torch.ops.robusteval.cross_scan_fused.default, op_args, test_utils=utils)
    out["opcheck"] = {{k: v for k, v in checks.items()}}
    gy = torch.randn(x.shape)
    bwd_args = (gy, xl, dbl, wts["dt_projs_weight"], wts["dt_projs_bias"], wts["A_logs"], wts["Ds"])
    checks = torch.library.opcheck(torch.ops.robusteval.cross_scan_fused_bwd.default, bwd_args, test_utils=utils)
    out["opcheck bwd"] = {{k: v for k, v in checks.items()}}

    # torch.compile of a VMamba model: one graph (the scan an opaque node), same logits as eager.
    from robusteval.models import vmamba as V

    torch.manual_seed(0)
    m = V.vmamba_t(scan_backend="triton", dims=16, depths=(1, 1, 1, 1), num_classes=10).eval()
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        eager = m(img)
        compiled = torch.compile(m, fullgraph=True, backend="aot_eager")(img)
    out["compile"] = rel(compiled, eager)

if PART == "grad":
    # Gradients of every input against float64 autograd through the torch reference, for the chunked
    # (several chunks per direction, ragged), row and whole-image forwards (the backward is the same).
    names = ["x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds"]
    for kernel, b, d, h, w, r, cfg in [
        ("chunked", 2, 8, 5, 7, 3, dict(block_l=16)),
        ("v2", 1, 20, 6, 9, 16, dict()),
        ("img", 1, 17, 3, 6, 2, dict()),
    ]:
        x, wts = random_cross_inputs(b=b, d=d, h=h, w=w, r=r, seed=d)
        gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))

        def grads(fn, dtype, x=x):
            xx = x.to(dtype).requires_grad_()
            ww = {{k: wts[k].to(dtype).requires_grad_() for k in names}}
            (fn(channels_last(xx), ww) * gy.to(dtype)).sum().backward()
            return [xx.grad] + [ww[k].grad for k in names]

        ref = grads(lambda xx, ww: ss.cross_selective_scan(xx, **ww, backend="torch"), torch.float64)
        got = grads(lambda xx, ww: cross_selective_scan_triton(xx, **ww, kernel=kernel, **cfg), torch.float32)
        out[f"grad {{kernel}}"] = {{n: rel(g, r) for n, g, r in zip(["x"] + names, got, ref)}}
    # gradcheck in float64 (chunked forward + fused backward), random-projection mode
    x, wts = random_cross_inputs(b=1, d=3, h=3, w=4, r=2, seed=4, dtype=torch.float64)
    inputs = [channels_last(x).requires_grad_()] + [wts[k].double().requires_grad_() for k in names]
    fn = lambda xx, *ps: cross_selective_scan_triton(xx, **dict(zip(names, ps)), block_l=16)  # noqa: E731
    out["gradcheck"] = bool(torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True))
    # no double backward through the fused path
    xx = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(xx, *inputs[1:]).sum(), xx, create_graph=True)
    try:
        g.sum().backward()
        out["double backward"] = "ran"
    except RuntimeError as err:
        out["double backward"] = "refused"
print(json.dumps(out))
"""


def _run_interpreter(part: str) -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1")
    script = TRITON_CHECK.format(tests=str(Path(__file__).parent), part=part)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")


@needs_triton
@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["v2", "img", "chunked"])
def test_triton_kernel_under_interpreter_matches_reference(kernel):
    got = _run_interpreter(kernel)
    for key, val in got.items():
        if key.startswith("fp32"):
            err, dtype, finite = val
            assert finite and dtype == "torch.float32", key
            assert err < 1e-5, (key, err)
        if key.startswith("strided"):
            err, dtype, finite, layout_ok = val
            assert finite and dtype == "torch.float32" and layout_ok, key
            assert err < 1e-5, (key, err)
    assert sum(k.startswith("strided") for k in got) == 3 * {"v2": 6, "img": 4, "chunked": 2}[kernel]
    assert got[f"bf16 {kernel}"] < 2e-2


@needs_triton
@pytest.mark.slow
def test_triton_backend_selection_custom_ops_and_compile_under_interpreter():
    got = _run_interpreter("misc")
    assert got["auto n=1"] == "triton" and got["auto n=2"] == "torch"
    assert got["which first"] == "triton" and got["which second"] == "torch"
    assert all(v == "SUCCESS" for v in got["opcheck"].values()), got["opcheck"]
    assert all(v == "SUCCESS" for v in got["opcheck bwd"].values()), got["opcheck bwd"]
    assert got["compile"] < 1e-6


@needs_triton
@pytest.mark.slow
def test_triton_fused_backward_matches_autograd_of_reference_and_gradchecks():
    got = _run_interpreter("grad")
    for kernel in ("chunked", "v2", "img"):
        errs = got[f"grad {kernel}"]
        assert set(errs) == {"x", "x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds"}
        assert all(e < 1e-4 for e in errs.values()), (kernel, errs)
    assert got["gradcheck"] is True
    assert got["double backward"] == "refused"


def test_torch_reference_gradcheck_and_double_backward_float64():
    """The reference is plain autograd: first and second derivatives (gradgradcheck) in float64."""
    x, w = random_cross_inputs(b=1, d=2, h=2, w=3, r=1, seed=2, dtype=torch.float64)
    names = list(w)
    inputs = [x.requires_grad_()] + [w[k].double().requires_grad_() for k in names]

    def fn(xx, *ps):
        return ss.cross_selective_scan(
            xx, **dict(zip(names, ps, strict=True)), backend="torch", grad="second"
        )

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)
    args = random_scan_inputs(b=1, d=2, n=2, L=5, groups=1, dtype=torch.float64)
    tensors = {k: v.requires_grad_() for k, v in args.items() if torch.is_tensor(v)}

    def sel(*ts):
        return ss.selective_scan(**dict(zip(tensors, ts, strict=True)), delta_softplus=True, backend="torch")

    assert torch.autograd.gradcheck(sel, tuple(tensors.values()))


def test_grad_levels_pick_and_refuse_backends():
    x, w = random_cross_inputs()
    assert ss.which_backend(tensor=x, d_state=1, grad="second") == "torch"
    levels = {
        e.name: ss._load(e.name).differentiable
        for e in ss.SCAN_BACKENDS
        if ss.available_backends()[e.name] is None
    }
    assert levels["torch"] == 2
    for name, level in levels.items():
        assert level >= 1, name  # every path that runs here has a backward
        if level < 2:
            with pytest.raises(UserError, match="second derivatives"):
                ss.resolve_backend(name, kind="cross", tensor=x, d_state=1, grad="second")
    with pytest.raises(UserError, match="grad level"):
        ss.cross_selective_scan(x, **w, grad="third")
    # grad="auto": an input that requires grad asks for a backward; the chosen path gives it
    wg = {k: v.clone().requires_grad_() for k, v in w.items()}
    y = ss.cross_selective_scan(x, **wg)
    y.square().sum().backward()
    assert all(v.grad is not None and torch.isfinite(v.grad).all() for v in wg.values())


def test_launch_config_text_round_trips_and_covers_every_shape():
    st = pytest.importorskip("robusteval.models.kernels.triton_scan")
    for text in ("v2:g32-w8-r2-p0-m96-dp-xs-yx", "img:g16-w4-dc-xc-yc", "chunked:g16-l32-w4"):
        kernel, cfg = st.parse_config(text)
        assert st.parse_config(st.format_config(kernel, cfg)) == (kernel, cfg)
    assert st.parse_config("v2:g64") == ("v2", {"block_g": 64})
    with pytest.raises(ValueError, match="cannot read"):
        st.parse_config("v2:q7")
    with pytest.raises(ValueError, match="unknown triton scan kernel"):
        st.parse_config("v9:g16")
    # every table entry parses; shapes the table lacks get a kernel that can hold them
    for (d, h, w, dtype), text in st.LAUNCH_TABLE.items():
        st.parse_config(text)
        assert st.launch_config(D=d, H=h, W=w, dtype=getattr(torch, dtype)) == text
    for d, h, w in [(96, 56, 56), (3, 2, 2), (384, 14, 14), (768, 7, 7), (64, 33, 40), (64, 40, 33)]:
        kernel, _ = st.parse_config(st.launch_config(D=d, H=h, W=w, dtype=torch.bfloat16))
        assert kernel == "v2" or h * w <= st.IMG_MAX_PIXELS


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_scan_floor_benchmark_computes_the_fused_arithmetic(tmp_path):
    """scripts/benchmarks/bench_scan_floor.py (the roofline floors of the fused scan) on tiny shapes: its
    no-recurrence kernel must equal the float64 formula (the script checks every tile and raises
    otherwise), and it writes the table with every shape and dtype."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmarks" / "bench_scan_floor.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "scan_floor.json").read_text())
    assert got["mufu_Gops"] > 0 and got["copy_GBps"] > 0
    assert {(r["shape"], r["dtype"]) for r in got["rows"]} == {
        (s, d) for s in ("B.stage1", "B.stage3") for d in ("bf16", "fp32")
    }
    for row in got["rows"]:
        assert row["floor_err"] < 1e-5, row  # the interpreter's dot runs in float32
        assert row["mufu_floor_ms"] > 0 and row["fused_ms"] > 0
    table = (tmp_path / "scan_floor.md").read_text()
    assert table.count("| B.stage") == 4 and "MUFU floor" in table


def test_every_backend_registers_itself_on_import():
    """Importing the scan API registers all three paths (a lost import once hid `mamba`)."""
    assert set(ss.SCAN_BACKENDS.names()) >= {"torch", "triton", "mamba"}

"""The sharpness stage: exact Hessian checks on tiny models, refusals, records, report, CLI on real data."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("curvlinops")

from robusteval.errors import UserError  # noqa: E402
from robusteval.sharpness import hessian as H  # noqa: E402
from robusteval.sharpness.record import SharpnessRecord, read_sharpness  # noqa: E402
from robusteval.sharpness.stage import check_scan_backend  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)


def _tiny_vmamba() -> nn.Module:
    from robusteval.models.vmamba import VMamba

    torch.manual_seed(0)
    m = VMamba(dims=4, depths=(1, 1), num_classes=3, ssm_ratio=1.0, mlp_ratio=1.0, scan_backend="torch")
    return m.eval().double()


def _tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).double()


def _data(shape: tuple[int, ...], classes: int, n: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn((n, *shape), generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    return [(x[:4], y[:4]), (x[4:], y[4:])]  # two batches of unequal size: the mean must be over images


def _exact_hessian(model: nn.Module, prefix: str | None, data) -> torch.Tensor:
    """torch.autograd.functional.hessian of the mean cross-entropy w.r.t. the group's parameters."""
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters() if prefix is None or n.startswith(prefix + ".")]
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    flat = torch.cat([params[n].detach().flatten() for n in names])
    x = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        out, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            out[n] = theta[i : i + s.numel()].view(s)
            i += s.numel()
        return nn.functional.cross_entropy(functional_call(model, out, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat)


@pytest.mark.parametrize(
    "build,shape,classes,prefix",
    [
        pytest.param(_tiny_mlp, (6,), 4, None, id="mlp-all"),
        pytest.param(
            _tiny_vmamba, (3, 16, 16), 3, "layers.0.blocks.0.op", id="vmamba-ss2d", marks=pytest.mark.slow
        ),
    ],
)
def test_lambda_max_and_trace_match_the_exact_hessian(build, shape, classes, prefix):
    model = build()
    data = _data(shape, classes)
    groups = dict(H.param_groups(model, prefixes=[prefix] if prefix else []))
    params = groups[prefix or "all"]
    op = H.hessian_operator(model, params, data)
    exact = _exact_hessian(model, prefix, data)
    assert exact.shape[0] == op.shape[0] == sum(p.numel() for p in params)
    evals = torch.linalg.eigvalsh(exact)
    eig = H.top_eigenvalues(op, k=2, tol=1e-6, seed=0)
    assert eig.converged and max(eig.residuals) < 1e-3
    assert eig.values[0] == pytest.approx(float(evals[-1]), rel=1e-2)
    assert eig.values[1] == pytest.approx(float(evals[-2]), rel=1e-2)
    tr = H.hutchinson(op, probes=40, seed=0)
    assert tr.stderr > 0
    assert abs(tr.value - float(exact.trace())) <= 2 * tr.stderr
    dens = H.spectral_density(op, ncv=12, points=64, lam_max=eig.values[0], seed=0)
    assert np.trapezoid(dens.density, dens.grid) == pytest.approx(1.0, abs=1e-6)
    assert min(dens.grid) <= float(evals[0]) and max(dens.grid) >= float(evals[-1])


def test_hvp_matches_a_central_difference_of_gradients():
    model = _tiny_vmamba()
    data = _data((3, 16, 16), 3)
    params = [p for p in model.parameters()]
    op = H.hessian_operator(model, params, data)
    v = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    hv = op @ v

    def grad_at(theta: torch.Tensor) -> torch.Tensor:
        torch.nn.utils.vector_to_parameters(theta, params)
        n = sum(int(x.shape[0]) for x, _ in data)
        loss = sum(nn.functional.cross_entropy(model(x), y, reduction="sum") for x, y in data) / n
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    theta0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
    errors = []
    for eps in (1e-5, 1e-6):
        fd = (grad_at(theta0 + eps * v) - grad_at(theta0 - eps * v)) / (2 * eps)
        errors.append(float(torch.linalg.norm(hv - fd) / torch.linalg.norm(fd)))
    torch.nn.utils.vector_to_parameters(theta0, params)
    # The central difference converges to Hv at second order (random-init patch_embed has large
    # third derivatives, ~6e-5 relative at eps 1e-5): the gap shrinks ~100x per decade of eps.
    assert errors[1] < 1e-5 and errors[1] < errors[0] / 30


def test_the_torch_scan_differentiates_twice():
    from robusteval.models.kernels.scan import selective_scan

    g = torch.Generator().manual_seed(0)
    b, d, n, length = 2, 3, 2, 13
    u, delta = torch.randn(b, d, length, generator=g), torch.rand(b, d, length, generator=g)
    A = -torch.rand(d, n, generator=g)
    B, C = torch.randn(b, n, length, generator=g), torch.randn(b, n, length, generator=g)

    def scan(x):
        return selective_scan(x, delta.double(), A.double(), B.double(), C.double(), backend="torch")

    ud = u.double().requires_grad_(True)
    (gu,) = torch.autograd.grad(scan(ud).square().sum(), ud, create_graph=True)
    assert gu.requires_grad
    assert torch.autograd.gradgradcheck(scan, (ud,))


@pytest.mark.parametrize("name", ["auto", "triton", "mamba"])
def test_scan_paths_without_exact_double_backward_are_refused(name):
    with pytest.raises(UserError, match="no exact double backward"):
        check_scan_backend(name)
    assert check_scan_backend("torch") == "torch"


def test_per_block_groups_follow_the_stages():
    model = _tiny_vmamba()
    groups = H.param_groups(model, per_block=True)
    assert [g for g, _ in groups] == ["patch_embed", "layers.0", "layers.1", "classifier"]
    assert sum(p.numel() for _, ps in groups for p in ps) == sum(p.numel() for p in model.parameters())
    with pytest.raises(UserError, match="no parameters under"):
        H.param_groups(model, prefixes=["layers.7"])


def _record(**over) -> SharpnessRecord:
    base = dict(
        run="r", cell="c", model="m", set="clean", suite="clean", severity=None, params=None, group="all",
        n_params=10, n_images=4, sample_seed=0, sample_sha256="x", corrupt_seed=None, loss=1.0, top1=0.5,
        loss_kind="cross-entropy", hessian="exact", eigenvalues=(3.0, 2.0), eig_residuals=(1e-4, 1e-3),
        eig_matvecs=20, eig_converged=True, eig_tol=1e-3, trace=10.0, trace_stderr=1.0, trace_probes=4,
        density_grid=(-1.0, 0.0, 1.0), density=(0.25, 0.5, 0.25), density_ncv=8, density_matvecs=9,
        scan_backend=None, preprocess="p", data_config={}, weights={"source": "random", "sha256": None},
        dtype="float32", device="cpu", batch_size=4, seconds=1.0, created="2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    return SharpnessRecord(**{**base, **over})


def test_report_of_a_run_with_only_sharpness_records(tmp_path: Path):
    from robusteval.jsonl import append_records
    from robusteval.report.api import make_report

    run = tmp_path / "runs" / "only"
    recs = [_record(cell="a")] + [
        _record(
            cell=f"b{s}", set="c_fog", suite="imagenet-c", severity=s, eigenvalues=(3.0 + s,), density=None
        )
        for s in (1, 3, 5)
    ]
    append_records(run / "sharpness.jsonl", [r.to_json() for r in recs])
    back = read_sharpness(run)
    assert back == recs
    out = make_report(run_dir=run, out_dir=tmp_path / "rep", baseline=None, fail_under=[])
    text = out.report.read_text()
    assert "## Sharpness" in text and "| m | c_fog | 5 | all | 4 |" in text
    assert {p.name for p in out.figures} >= {"sharpness_severity.png", "sharpness_density.png"}


def test_cli_end_to_end_on_real_data_with_a_real_model(val1300: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from robusteval.cli import app

    args = [
        "sharpness", "--models", "mobilenet_v2", "--data", str(val1300), "--transforms", "c_gaussian_noise",
        "--severity", "5", "--images", "4", "--batch", "4", "--top-k", "1", "--eig-tol", "0.05",
        "--eig-maxiter", "1", "--eig-ncv", "4", "--trace", "--trace-probes", "2", "--blocks", "classifier",
        "--runs-dir", str(tmp_path), "--run", "cli",
    ]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    recs = read_sharpness(tmp_path / "cli")
    assert sorted((r.set, r.severity) for r in recs) == [("c_gaussian_noise", 5), ("clean", None)]
    for r in recs:
        assert r.group == "classifier" and r.n_params == 1280 * 1000 + 1000 and r.n_images == 4
        assert r.lam_max > 0 and r.trace is not None and r.trace_stderr is not None
        assert r.loss_kind.startswith("cross-entropy of the classifier's 1000-way logits")
        assert r.weights["sha256"]
    assert len({r.sample_sha256 for r in recs}) == 1  # the same images in every set
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 cells written, 2 already finished" in " ".join(again.output.split())
    bad = CliRunner().invoke(app, [*args[:-2], "--run", "x", "--scan-backend", "triton"])
    assert bad.exit_code == 2 and "no exact double backward" in " ".join(bad.output.split())


def test_a_last_layer_block_on_its_recorded_inputs_is_the_same_hessian_block():
    from robusteval.sharpness.stage import _HeadInputs

    model = _tiny_vmamba()
    data = _data((3, 16, 16), 3)
    params = dict(H.param_groups(model, prefixes=["classifier"]))["classifier"]
    heads = _HeadInputs(model, ["classifier", "layers.0"])
    with torch.no_grad():
        outs = [model(x) for x, _ in data]
    heads.close()
    assert heads.inputs("layers.0", outs) is None  # its output is not the logits
    inputs = heads.inputs("classifier", outs)
    full = H.hessian_operator(model, params, data)
    short = H.hessian_operator(
        model.get_submodule("classifier"), params, list(zip(inputs, [y for _, y in data], strict=True))
    )
    v = torch.randn(full.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(short @ v, full @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenet_v2", "efficientnet_lite0"])
def test_real_weights_lambda_max_and_trace_are_stable_across_sample_seeds(
    model, val1300: Path, tmp_path: Path
):
    """The settings of scripts/sharpness_real.py (classifier block, 32 images): two seeds within SEED_RTOL."""
    import importlib.util

    from robusteval.sharpness.stage import SharpnessRequest, run_sharpness

    spec = importlib.util.spec_from_file_location(
        "sr", Path(__file__).parents[1] / "scripts" / "sharpness_real.py"
    )
    sr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sr)
    got = {}
    for seed in (0, 1):
        req = SharpnessRequest(
            models=[model], run="seeds", runs_dir=tmp_path, data=val1300, images=32, top_k=1, eig_tol=1e-2,
            eig_ncv=6, trace=True, trace_probes=8, blocks=["classifier"], seed=seed,
        )  # fmt: skip
        (rec,) = run_sharpness(req).written
        assert rec.eig_converged and rec.eig_residuals[0] < 0.05
        got[seed] = rec
    a, b = got[0], got[1]
    assert a.sample_sha256 != b.sample_sha256
    assert abs(a.lam_max - b.lam_max) / ((a.lam_max + b.lam_max) / 2) <= sr.SEED_RTOL
    assert abs(a.trace - b.trace) / ((a.trace + b.trace) / 2) <= sr.SEED_RTOL

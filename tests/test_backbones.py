"""The study backbones: VMamba v0, Vim, MambaVision (our implementations) and the timm ViT baselines.

Every name: card data, parameter count equal to upstream's (built on the meta device), a CPU forward
of a tiny variant (every architecture flag of the preset kept), and a round trip through each
released file layout saved from a randomly initialised model. Parity with the official code on the
same perturbed weights (tiny configs, fp32, max relative |Δlogits| ≤ 1e-5) runs when ``.upstream/``
holds the official checkouts (scripts/tools/fidelity_*.py run the full-size comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

from robusteval.models import resolve
from robusteval.models.checkpoint import CheckpointMismatch, load_into, read_checkpoint
from robusteval.models.registry import CONVERTERS

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / ".upstream"

# sum(p.numel() for p in model.parameters()) of upstream's builders on CPU, printed by
# scripts/tools/fidelity_{vmamba_v0,vim,mambavision}.py (vanilla_vmamba_*, vim_*_midclstok*, mamba_vision_*)
# and by timm.create_model for the timm names.
UPSTREAM_PARAMS = {
    "vmamba_v0_t": 22_893_448,
    "vmamba_v0_s": 44_417_416,
    "vmamba_v0_b": 76_254_056,
    "vim_t": 7_148_008,
    "vim_s": 25_796_584,
    "vim_b": 97_598_440,
    "mambavision_t": 31_794_248,
    "mambavision_s": 50_140_584,
    "mambavision_b": 97_685_288,
    "mambavision_l": 227_961_048,
    "deit_s": 22_050_664,
    "deit_b": 86_567_656,
    "deit3_s": 22_059_496,
    "deit3_b": 86_585_320,
    "vit_b": 86_567_656,
}
PUBLISHED_TOP1 = {
    "vmamba_v0_t": 82.2,
    "vmamba_v0_s": 83.5,
    "vmamba_v0_b": 83.7,
    "vim_t": 76.1,
    "vim_s": 80.5,
    "vim_b": 81.9,
    "mambavision_t": 82.3,
    "mambavision_s": 83.3,
    "mambavision_b": 84.2,
    "mambavision_l": 85.0,
    "deit_s": 79.8,
    "deit_b": 81.8,
    "deit3_s": 81.4,
    "deit3_b": 83.8,
    "vit_b": None,
}
OURS = [n for n in UPSTREAM_PARAMS if not n.startswith(("deit", "vit"))]
TIMM = [n for n in UPSTREAM_PARAMS if n.startswith(("deit", "vit"))]
SIZE = 32  # px of the tiny inputs (the smallest every family takes)
# Tiny variants: widths/depths cut, every other flag of the preset kept.
TINY = {
    "vmamba_v0": dict(dims=8, depths=(1, 1, 1, 1)),
    "vim": dict(embed_dim=32, depth=2, img_size=SIZE),
    "mambavision": dict(dim=16, in_dim=8, depths=(1, 1, 2, 2), num_heads=(1, 1, 2, 2)),
}


def _family(name: str) -> str:
    return resolve(name).meta["card"].family


def _tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = resolve(name).fn(scan_backend="torch", **TINY[_family(name)]).eval()
    with torch.no_grad():  # off the init, and BN statistics non-trivial
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for k, b in model.named_buffers():
            if k.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return model


def _x(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _load(name: str, path: Path) -> torch.nn.Module:
    """create_model's loader path (read_checkpoint → card converter → strict load_into), tiny build."""
    card = resolve(name).meta["card"]
    module = resolve(name).fn(scan_backend="torch", **TINY[card.family]).eval()
    converter = CONVERTERS.get(card.converter).fn if card.converter else None
    load_into(module, read_checkpoint(path).state_dict, converter=converter, what=str(path))
    return module


@pytest.mark.parametrize("name", list(UPSTREAM_PARAMS))
def test_card(name: str) -> None:
    card = resolve(name).meta["card"]
    assert card.paper_top1 == PUBLISHED_TOP1[name]
    assert card.params_m == pytest.approx(UPSTREAM_PARAMS[name] / 1e6, abs=0.006)
    assert card.upstream and (card.weights_url or card.hf_hub_id)
    assert card.data.input_size == 224 and card.data.interpolation == "bicubic"


@pytest.mark.slow
def test_listed() -> None:
    from robusteval.models import list_models

    assert set(UPSTREAM_PARAMS) <= {c.name for c in list_models()}


@pytest.mark.parametrize("name", list(UPSTREAM_PARAMS))
def test_param_count_matches_upstream(name: str) -> None:
    with torch.device("meta"):
        model = resolve(name).fn()
    assert sum(p.numel() for p in model.parameters()) == UPSTREAM_PARAMS[name]


@pytest.mark.parametrize("name", OURS)
def test_tiny_forward_cpu(name: str) -> None:
    logits = _tiny(name)(_x())
    assert logits.shape == (2, 1000) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deit_s", "vit_b"])
def test_timm_baseline_forward(name: str) -> None:
    from robusteval.models import create_model

    loaded = create_model(name, weights="none")
    size = loaded.card.data.input_size
    with torch.no_grad():
        logits = loaded.module(torch.randn(1, 3, size, size))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def _release_files(name: str, model: torch.nn.Module, tmp: Path) -> list[Path]:
    """The layouts upstream released for this family, written from ``model``."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    family = _family(name)
    out = []
    if family == "vmamba_v0":
        sys.path.insert(0, str(ROOT / "scripts" / "tools"))
        from fidelity_vmamba_v0 import legacy_names

        for tag, d in (("current", sd), ("legacy", legacy_names(sd))):
            torch.save({"model": d, "epoch": 291, "max_accuracy": 82.2}, tmp / f"{tag}.pth")
            out.append(tmp / f"{tag}.pth")
    elif family == "vim":
        torch.save({"model": sd, "epoch": 299, "args": argparse.Namespace(model="vim")}, tmp / "vim.pth")
        out.append(tmp / "vim.pth")
    else:
        from safetensors.torch import save_file

        ns = argparse.Namespace(model="mamba_vision")
        torch.save({"state_dict": sd, "epoch": 309, "arch": "mamba_vision", "args": ns}, tmp / "mv.pth.tar")
        save_file({f"model.{k}": v.contiguous() for k, v in sd.items()}, str(tmp / "model.safetensors"))
        out += [tmp / "mv.pth.tar", tmp / "model.safetensors"]
    return out


@pytest.mark.parametrize("name", ["vmamba_v0_t", "vim_s", "mambavision_b"])
def test_release_layouts_round_trip(name: str, tmp_path: Path) -> None:
    model = _tiny(name)
    want = model(_x())
    for path in _release_files(name, model, tmp_path):
        got = _load(name, path)(_x())
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{path.name}")


def test_legacy_v0_names_really_differ(tmp_path: Path) -> None:
    """The legacy file is not already in our names (so the converter is what makes it load)."""
    current, legacy = _release_files("vmamba_v0_t", _tiny("vmamba_v0_t"), tmp_path)
    names = set(read_checkpoint(legacy).state_dict)
    assert "patch_embed.proj.weight" in names and "head.weight" in names
    assert any(".ln_1." in k for k in names) and any(".self_attention." in k for k in names)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vim_t", "mambavision_t"])
def test_create_model_full_size_from_release_file(name: str, tmp_path: Path) -> None:
    from robusteval.models import create_model

    torch.manual_seed(0)
    model = resolve(name).fn(scan_backend="torch").eval()
    sd = model.state_dict()
    if _family(name) == "vim":
        path = tmp_path / "vim_t_midclstok_76p1acc.pth"
        torch.save({"model": sd, "args": argparse.Namespace(model="vim")}, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "model.safetensors"
        save_file({f"model.{k}": v.contiguous() for k, v in sd.items()}, str(path))
    loaded = create_model(name, weights=str(path), scan_backend="torch")
    for k, v in loaded.module.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_wrong_width_gives_readable_diff(tmp_path: Path) -> None:
    torch.save({"model": _tiny("vim_t").state_dict()}, tmp_path / "vim.pth")
    module = resolve("vim_t").fn(scan_backend="torch", embed_dim=48, depth=2, img_size=SIZE)
    with pytest.raises(CheckpointMismatch, match="shape mismatch") as err:
        load_into(module, read_checkpoint(tmp_path / "vim.pth").state_dict, what="vim.pth")
    assert "40 shape mismatches" in str(err.value) and "layers.0.mixer.A_b_log: [64, 16] vs [96, 16]" in str(
        err.value
    )


def test_vim_rejects_other_input_sizes() -> None:
    from robusteval.errors import UserError

    with pytest.raises(UserError, match="32x32"):
        _tiny("vim_t")(torch.randn(1, 3, 64, 64))


# ---------------------------------------------------------------------------------------------
# Parity with the official code (tiny configs of upstream's own classes; needs .upstream/).


@pytest.fixture
def isolated_imports():
    """Upstream imports swap in stand-in modules (mamba_ssm, ...); put sys.modules back afterwards."""
    saved, path = dict(sys.modules), list(sys.path)
    sys.path.insert(0, str(ROOT / "scripts" / "tools"))
    yield
    for m in set(sys.modules) - set(saved):
        del sys.modules[m]
    sys.modules.update(saved)
    sys.path[:] = path


def _need(sub: str) -> Path:
    root = UPSTREAM / sub
    if not root.is_dir():
        pytest.skip(f"{root} absent (fetch the official code into .upstream/ to run parity)")
    return root


def _parity(upstream: torch.nn.Module, name: str, tmp: Path, *, key: str) -> float:
    from fidelity_mambavision import perturb_all_

    upstream.eval()
    perturb_all_(upstream, seed=0)
    torch.save({key: upstream.state_dict()}, tmp / "up.pth")
    ours = _load(name, tmp / "up.pth")
    with torch.no_grad():
        ref, got = upstream(_x()), ours(_x())
    return float((ref - got).abs().max() / ref.abs().max())


def test_parity_vmamba_v0(isolated_imports, tmp_path: Path) -> None:
    import fidelity_vmamba as fv

    up = fv.import_upstream(_need("VMamba"))
    upstream = up.VSSM(
        depths=[1, 1, 1, 1], dims=8, ssm_d_state=16, ssm_ratio=2.0, ssm_dt_rank="auto", ssm_act_layer="silu",
        ssm_conv=3, ssm_conv_bias=True, forward_type="v0", mlp_ratio=0.0, patch_norm=True, norm_layer="ln",
        downsample_version="v1", patchembed_version="v1",
    )  # fmt: skip
    assert _parity(upstream, "vmamba_v0_t", tmp_path, key="model") <= 1e-5


def test_parity_vim(isolated_imports, tmp_path: Path) -> None:
    import fidelity_vim

    up = fidelity_vim.import_upstream(_need("Vim"))
    upstream = up.VisionMamba(
        img_size=SIZE, patch_size=16, embed_dim=32, depth=2, rms_norm=True, residual_in_fp32=True,
        fused_add_norm=True, final_pool_type="mean", if_abs_pos_embed=True, if_rope=False, bimamba_type="v2",
        if_cls_token=True, if_divide_out=True, use_middle_cls_token=True,
    )  # fmt: skip
    assert _parity(upstream, "vim_t", tmp_path, key="model") <= 1e-5


@pytest.mark.parametrize("name", ["mambavision_t", "mambavision_b"])
def test_parity_mambavision(name: str, isolated_imports, tmp_path: Path) -> None:
    import fidelity_mambavision

    up = fidelity_mambavision.import_upstream(_need("MambaVision"))
    layer_scale = 1e-5 if name == "mambavision_b" else None
    upstream = up.MambaVision(
        dim=16, in_dim=8, depths=[1, 1, 2, 2], num_heads=[1, 1, 2, 2], window_size=[8, 8, 14, 7], mlp_ratio=4,
        layer_scale=layer_scale,
    )  # fmt: skip
    assert _parity(upstream, name, tmp_path, key="state_dict") <= 1e-5


def _sequential_scan(u, delta, A, B, C, D, z, delta_bias):
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = <C_t, h_t> + D u_t, times silu(z): a plain loop over L."""
    dt = torch.nn.functional.softplus(delta + delta_bias[:, None])
    g = B.shape[1]
    rep = u.shape[1] // g
    Bx, Cx = B.repeat_interleave(rep, dim=1), C.repeat_interleave(rep, dim=1)  # (b, d, n, l)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        h = torch.exp(dt[..., t, None] * A) * h + (dt[..., t] * u[..., t])[..., None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    return (torch.stack(ys, -1) + D[:, None] * u) * torch.nn.functional.silu(z)


def test_torch_scan_reference_exact_for_d_state_16() -> None:
    """The bidirectional Vim call shape: two B/C groups, z gate, d_state 16, odd length (no loop over L)."""
    from robusteval.models.kernels.scan import selective_scan

    g = torch.Generator().manual_seed(0)
    b, d, n, length = 2, 12, 16, 197
    u, delta, z = (torch.randn(b, d, length, generator=g, dtype=torch.float64) for _ in range(3))
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 2
    B, C = (torch.randn(b, 2, n, length, generator=g, dtype=torch.float64) for _ in range(2))
    D, bias = (
        torch.randn(d, generator=g, dtype=torch.float64),
        torch.randn(d, generator=g, dtype=torch.float64),
    )
    got = selective_scan(u, delta, A, B, C, D, z, bias, True, backend="torch")
    torch.testing.assert_close(got, _sequential_scan(u, delta, A, B, C, D, z, bias), rtol=1e-12, atol=1e-12)

"""VMamba: registered builders, upstream parameter counts, official checkpoint layout, readable errors.

Forward tests use tiny widths/depths of each registered preset (every architecture flag kept) on
32x32 inputs; full-size models are only built on the meta device. Fidelity against the official
code (same weights, fp32 logits) is scripts/tools/fidelity_vmamba.py, which needs an upstream checkout.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from robusteval.errors import UserError
from robusteval.models import vmamba as V
from robusteval.models.checkpoint import CheckpointMismatch, load_into
from robusteval.models.registry import CONVERTERS, MODELS
from robusteval.models.vmamba_ckpt import convert_official, load_official_file

NAMES = ("vmamba_t", "vmamba_s", "vmamba_b")
# Upstream counts: MzeroMiko/VMamba classification/models/vmamba.py, builders vmamba_tiny_s1l8,
# vmamba_small_s2l15, vmamba_base_s2l15 (the released T/S/B configs) instantiated on CPU and summed
# with sum(p.numel() for p in model.parameters()) (scripts/tools/fidelity_vmamba.py prints the same).
UPSTREAM_PARAMS = {"vmamba_t": 30_249_064, "vmamba_s": 50_147_752, "vmamba_b": 88_557_800}
TINY = dict(dims=8, depths=(1, 1, 1, 1))
PROJ_SUFFIXES = ("op.in_proj.weight", "op.out_proj.weight", "mlp.fc1.weight", "mlp.fc2.weight")


def _tiny(name: str = "vmamba_t", **kw) -> V.VMamba:
    torch.manual_seed(0)
    model = MODELS.get(name).fn(scan_backend="torch", **{**TINY, **kw}).eval()
    with torch.no_grad():  # move parameters off their init so round trips compare real values
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _logits(model: torch.nn.Module, seed: int = 1, size: int = 32) -> torch.Tensor:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def _official(model: torch.nn.Module, *, four_d: bool = True) -> dict:
    """The release layout: {'model': state_dict, ...training extras}, 1x1 projections 4-D."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    if four_d:
        sd = {k: (v[:, :, None, None] if k.endswith(PROJ_SUFFIXES) else v) for k, v in sd.items()}
    return {"model": sd, "epoch": 263, "max_accuracy": 82.6}


@pytest.mark.parametrize("name", NAMES)
def test_registered_card(name: str) -> None:
    card = MODELS.get(name).meta["card"]
    assert card.family == "vmamba" and card.converter == "vmamba" and card.converter in CONVERTERS
    assert card.data.input_size == 224 and card.data.interpolation == "bicubic"
    assert card.data.crop_pct == 0.875 and card.data.mean == (0.485, 0.456, 0.406)
    assert card.weights_url and card.weights_url.startswith("https://github.com/MzeroMiko/VMamba/releases/")
    assert card.params_m == pytest.approx(UPSTREAM_PARAMS[name] / 1e6, abs=0.005)


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_upstream(name: str) -> None:
    with torch.device("meta"):
        model = MODELS.get(name).fn()
    assert sum(p.numel() for p in model.parameters()) == UPSTREAM_PARAMS[name]


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_finite_logits(name: str) -> None:
    logits = _logits(_tiny(name))
    assert logits.shape == (2, 1000) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_presets_follow_upstream_configs() -> None:
    t, s, b = (V.VMAMBA_PRESETS[n] for n in NAMES)
    assert (t["dims"], t["depths"], t["ssm_ratio"]) == (96, (2, 2, 8, 2), 1.0)
    assert (s["dims"], s["depths"], s["ssm_ratio"]) == (96, (2, 2, 15, 2), 2.0)
    assert (b["dims"], b["depths"], b["ssm_ratio"]) == (128, (2, 2, 15, 2), 2.0)
    for p in (t, s, b):
        assert p["ssm_d_state"] == 1 and p["forward_type"] == "v05_noz" and p["mlp_ratio"] == 4.0
        assert (p["downsample_version"], p["patchembed_version"], p["ssm_conv_bias"]) == ("v3", "v2", False)


def test_official_round_trip_4d_projections(tmp_path: Path) -> None:
    src = _tiny()
    path = tmp_path / "vssm_official.pth"
    torch.save(_official(src, four_d=True), path)
    dst = V.vmamba_t(scan_backend="torch", **TINY).eval()
    assert not torch.equal(_logits(dst), _logits(src))
    load_official_file(dst, path)
    assert torch.equal(_logits(dst), _logits(src))


def test_card_converter_fits_official_layout() -> None:
    src = _tiny("vmamba_b")
    dst = V.vmamba_b(scan_backend="torch", **TINY).eval()
    converter = CONVERTERS.get(MODELS.get("vmamba_b").meta["card"].converter).fn
    load_into(dst, _official(src)["model"], converter=converter)
    assert torch.equal(_logits(dst), _logits(src))


def test_legacy_names_are_renamed() -> None:
    model = _tiny(patchembed_version="v1")
    renames = {
        "classifier.head.": "head.",
        "classifier.norm.": "norm.",
        "patch_embed.0.": "patch_embed.proj.",
    }
    sd = {}
    for key, value in model.state_dict().items():
        for new, old in renames.items():
            key = key.replace(new, old) if key.startswith(new) else key
        sd[key.replace(".blocks.0.norm.", ".blocks.0.ln_1.").replace(".op.", ".self_attention.")] = value
    assert "head.weight" in sd and "layers.0.blocks.0.self_attention.Ds" in sd
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(convert_official(sd, expected=expected)) == set(expected)


def test_wrong_config_gives_readable_diff(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(_official(_tiny(dims=16)), path)
    with pytest.raises(CheckpointMismatch) as err:
        load_official_file(V.vmamba_t(scan_backend="torch", **TINY), path)
    msg = str(err.value)
    assert "shape mismatch" in msg and "patch_embed.0.weight" in msg and "Traceback" not in msg


def test_missing_keys_listed(tmp_path: Path) -> None:
    ckpt = _official(_tiny())
    del ckpt["model"]["classifier.head.weight"]
    path = tmp_path / "truncated.pth"
    torch.save(ckpt, path)
    with pytest.raises(UserError, match=r"classifier\.head\.weight"):
        load_official_file(V.vmamba_t(scan_backend="torch", **TINY), path)


def test_pickle_checkpoint_needs_trust(tmp_path: Path) -> None:
    src = _tiny()
    ckpt = _official(src)
    ckpt["config"] = types.SimpleNamespace(MODEL="vssm")  # training dumps pickle their config
    path = tmp_path / "training_dump.pth"
    torch.save(ckpt, path)
    dst = V.vmamba_t(scan_backend="torch", **TINY).eval()
    with pytest.raises(UserError, match="--trust-checkpoint"):
        load_official_file(dst, path)
    load_official_file(dst, path, trust_checkpoint=True)
    assert torch.equal(_logits(dst), _logits(src))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError):
        load_official_file(V.vmamba_t(scan_backend="torch", **TINY), path)


@pytest.mark.parametrize(
    ("forward_type", "gate", "gate_act", "out_norm"),
    [
        ("v05_noz", False, True, "ln"),
        ("v2", True, True, "ln"),
        ("v05_nozact", True, False, "ln"),
        ("v05_onnone_noz", False, True, "none"),
        ("v2noz", False, True, "ln"),
        ("v0", True, True, "ln"),
    ],
)
def test_forward_type_parsing(forward_type: str, gate: bool, gate_act: bool, out_norm: str) -> None:
    ft = V.parse_forward_type(forward_type)
    assert (ft.gate, ft.gate_act, ft.out_norm) == (gate, gate_act, out_norm)


def test_unsupported_forward_type() -> None:
    with pytest.raises(ValueError, match="v052d"):
        V.parse_forward_type("v052d_noz")


def test_z_gate_tower_variant() -> None:
    """CLIP-Mamba VMamba-T220 style: z gate kept, channel-last norms, headless features."""
    model = V.VMamba(
        dims=8, depths=(1, 1, 1, 1), forward_type="v2", norm_layer="ln", num_classes=0, scan_backend="torch"
    ).eval()
    assert model.layers[0].blocks[0].op.in_proj.weight.shape == (32, 8)  # x and z halves
    feats = _logits(model)
    assert feats.shape == (2, 64) and torch.isfinite(feats).all()


def test_v0_style_tower_variant() -> None:
    """VMamba v0 layout (CLIP-Mamba B/S): d_state 16, no MLP, patch merging, v1 patch embed."""
    model = V.VMamba(
        dims=8,
        depths=(1, 1, 1, 1),
        ssm_d_state=16,
        ssm_conv_bias=True,
        forward_type="v2",
        mlp_ratio=0.0,
        downsample_version="v1",
        patchembed_version="v1",
        norm_layer="ln",
        num_classes=0,
        scan_backend="torch",
    ).eval()
    keys = model.state_dict()
    assert "layers.0.downsample.reduction.weight" in keys and "layers.0.blocks.0.mlp.fc1.weight" not in keys
    assert keys["layers.0.blocks.0.op.A_logs"].shape == (4 * 16, 16)
    assert torch.isfinite(_logits(model)).all()


def test_scan_backend_reaches_the_scan() -> None:
    model = _tiny()
    model.set_scan_backend("no-such-backend")
    with pytest.raises(UserError, match="no-such-backend"):
        _logits(model)

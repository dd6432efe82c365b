"""VMamba v0 (the original "vanilla" VSSM release): ``vmamba_v0_t``, ``vmamba_v0_s``, ``vmamba_v0_b``.

Same module as VMamba v2 (:class:`robusteval.models.vmamba.VMamba`) with upstream's ``vanilla_vmamba_*``
configs (MzeroMiko/VMamba ``classification/configs/vssm/vmambav0_*_224.yaml``): d_state 16,
ssm_ratio 2.0, conv bias on, forward type ``v0`` (z gate with SiLU(z), LayerNorm out-norm), no MLP,
v1 patch embed (4x4 conv + LN) and v1 downsample (patch merging). The scan is the same 4-direction
cross scan as v2 (:func:`robusteval.models.kernels.scan.cross_selective_scan`, any d_state).

Release files (``#v0cls``) are ``{'model': state_dict, ...}`` in the legacy names
(``patch_embed.proj``, ``layers.i.blocks.j.ln_1`` / ``.self_attention``, ``norm``, ``head``); the
``"vmamba"`` converter maps them (as upstream's ``VSSM._load_from_state_dict`` does).
"""

from __future__ import annotations

from typing import Any

from robusteval.models import vmamba_ckpt  # noqa: F401  (registers the "vmamba" checkpoint converter)
from robusteval.models.registry import ModelCard, register_model
from robusteval.models.vmamba import VMAMBA_DATA, VMamba

_RELEASE = "https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/"
_V0 = dict(
    ssm_d_state=16,
    ssm_ratio=2.0,
    ssm_dt_rank="auto",
    ssm_act="silu",
    ssm_conv=3,
    ssm_conv_bias=True,
    forward_type="v0",
    mlp_ratio=0.0,
    patch_size=4,
    patch_norm=True,
    patchembed_version="v1",
    downsample_version="v1",
    norm_layer="ln",
)
# Upstream classification/models/vmamba.py vanilla_vmamba_tiny / _small / _base.
VMAMBA_V0_PRESETS: dict[str, dict[str, Any]] = {
    "vmamba_v0_t": dict(_V0, dims=96, depths=(2, 2, 9, 2), drop_path_rate=0.2),
    "vmamba_v0_s": dict(_V0, dims=96, depths=(2, 2, 27, 2), drop_path_rate=0.3),
    "vmamba_v0_b": dict(_V0, dims=128, depths=(2, 2, 27, 2), drop_path_rate=0.6),
}


def _build(name: str, *, scan_backend: str, overrides: dict[str, Any]) -> VMamba:
    return VMamba(**{**VMAMBA_V0_PRESETS[name], **overrides, "scan_backend": scan_backend})


def _card(name: str, *, file: str, size: str, top1: float, params: float, notes: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        family="vmamba_v0",
        data=VMAMBA_DATA,
        weights_url=_RELEASE + file,
        upstream=f"MzeroMiko/VMamba classification/configs/vssm/vmambav0_{size}_224.yaml "
        f"(vanilla_vmamba_{size}, release #v0cls)",
        paper_top1=top1,
        params_m=params,
        converter="vmamba",
        min_input_size=32,
        notes=notes,
    )


@register_model(
    _card("vmamba_v0_t", file="vssmtiny_dp01_ckpt_epoch_292.pth", size="tiny", top1=82.2, params=22.89)
)
def vmamba_v0_t(*, scan_backend: str = "auto", **overrides: Any) -> VMamba:
    """Vanilla VMamba-T: dims 96, depths 2-2-9-2, d_state 16, no MLP."""
    return _build("vmamba_v0_t", scan_backend=scan_backend, overrides=overrides)


@register_model(
    _card("vmamba_v0_s", file="vssmsmall_dp03_ckpt_epoch_238.pth", size="small", top1=83.5, params=44.42)
)
def vmamba_v0_s(*, scan_backend: str = "auto", **overrides: Any) -> VMamba:
    """Vanilla VMamba-S: dims 96, depths 2-2-27-2, d_state 16, no MLP."""
    return _build("vmamba_v0_s", scan_backend=scan_backend, overrides=overrides)


@register_model(
    _card(
        "vmamba_v0_b",
        file="vssmbase_dp06_ckpt_epoch_241.pth",
        size="base",
        top1=83.7,
        params=76.25,
        notes="release page lists vssmbase_dp06_ckpt_epoch_241.pth (83.7); the transfer study's "
        "vssmbase_dp05_ckpt_epoch_260.pth (yaml DROP_PATH_RATE 0.5) has the same layout and loads too",
    )
)
def vmamba_v0_b(*, scan_backend: str = "auto", **overrides: Any) -> VMamba:
    """Vanilla VMamba-B: dims 128, depths 2-2-27-2, d_state 16, no MLP."""
    return _build("vmamba_v0_b", scan_backend=scan_backend, overrides=overrides)

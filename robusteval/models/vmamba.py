"""VMamba (v2) image backbones and the registered classifiers ``vmamba_t``, ``vmamba_s``, ``vmamba_b``.

Our own implementation of the architecture in MzeroMiko/VMamba (``classification/models/vmamba.py``,
class ``VSSM``), written so the official checkpoints load key-for-key: every parameter keeps the
upstream name and shape (``patch_embed.{0,2,5,7}``, ``layers.<i>.blocks.<j>.{norm,op,norm2,mlp}``,
``layers.<i>.downsample.{1,3}``, ``classifier.{norm,head}``). Shape-only differences of released
files (1x1 projections stored 4-D, legacy v0 names) are handled by
:mod:`robusteval.models.vmamba_ckpt`.

Layout: activations stay channel-last ``(B, H, W, C)`` between modules, so LayerNorm and the 1x1
projections are plain ``F.layer_norm`` / ``F.linear``; a ``(B, C, H, W)`` view of that tensor is
``channels_last`` memory, which the stride-2 and depthwise convolutions consume without copies.
Upstream's ``ln2d`` (channel-first) and ``ln`` (channel-last) variants compute the same function
with the same keys, so both load here.

The selective scan itself (4-direction cross-scan, softplus(dt + bias) discretisation, the scan,
the D skip and the cross-merge) is :func:`robusteval.models.kernels.scan.cross_selective_scan`;
``scan_backend`` picks its implementation.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

from robusteval.models import vmamba_ckpt  # noqa: F401  (registers the "vmamba" checkpoint converter)
from robusteval.models.kernels.scan import cross_selective_scan
from robusteval.models.registry import DataConfig, ModelCard, register_model

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
}
# Upstream norm_layer names; "ln" and "ln2d" are the same LayerNorm over channels, only the tensor
# layout upstream differs. BatchNorm variants were never released for classification.
_NORMS = ("ln", "ln2d")
# Forward-type cores that all compute the 4-direction cross-scan; they differ only in upstream's
# kernel choice, einsum-vs-conv1d projections and fp32 forcing, not in the function ("v0"/"v0seq"
# is the original SS2D: same parameters, z gate always on).
_CROSS2D_CORES = ("v0", "v0seq", "v01", "v02", "v03", "v04", "v05", "v1", "v2", "v3", "v4")


@dataclass(frozen=True)
class ForwardType:
    """What an upstream ``forward_type`` string (e.g. ``"v05_noz"``) means for the SS2D block."""

    core: str
    gate: bool  # multiply by the z branch (in_proj doubles its width)
    gate_act: bool  # apply the SSM activation to z first
    out_act: bool  # GELU after the out-norm ("_oact")
    out_norm: str  # "ln", "none" or "sigmoid"


# Postfixes in the order upstream strips them; each may appear with or without the underscore in
# older forks (mamba-clip spells "noz"), so both spellings are checked.
_FLAG_POSTFIXES = ("no32", "oact", "noz", "nozact")
_OUT_NORM_POSTFIXES = {"onnone": "none", "onsigmoid": "sigmoid", "none": "none", "sigmoid": "sigmoid"}


def _strip(tag: str, value: str) -> tuple[bool, str]:
    for spelled in (f"_{tag}", tag):
        if value.endswith(spelled):
            return True, value[: -len(spelled)]
    return False, value


def parse_forward_type(forward_type: str) -> ForwardType:
    """Decode an upstream SS2D ``forward_type`` string; raise ``ValueError`` for unsupported ones."""
    rest = forward_type
    flags: dict[str, bool] = {}
    for tag in _FLAG_POSTFIXES:
        flags[tag], rest = _strip(tag, rest)
    out_norm = "ln"
    for tag, kind in _OUT_NORM_POSTFIXES.items():
        hit, rest = _strip(tag, rest)
        if hit:
            out_norm = kind
            break
    if rest not in _CROSS2D_CORES:
        raise ValueError(
            f"unsupported VMamba forward_type {forward_type!r}: the core {rest!r} is not one of "
            f"{', '.join(_CROSS2D_CORES)} (4-direction cross-scan)"
        )
    return ForwardType(
        core=rest,
        gate=not flags["noz"],
        gate_act=not flags["nozact"],
        out_act=flags["oact"],
        out_norm=out_norm,
    )


class Permute(nn.Module):
    """Parameter-free axis permutation; also keeps ``nn.Sequential`` indices aligned with upstream."""

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class Mlp(nn.Module):
    """Channel-last FFN ``fc2(act(fc1(x)))`` on ``(..., C)``."""

    def __init__(self, dim: int, hidden: int, *, act: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = _ACTIVATIONS[act]()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SS2D(nn.Module):
    """The VMamba 2-D selective-scan mixer on channel-last ``(B, H, W, d_model)`` activations.

    ``in_proj`` (1x1) → [split off z] → depthwise ``d_conv``x``d_conv`` conv → act →
    cross_selective_scan over 4 directions → out-norm → [× act(z)] → ``out_proj`` (1x1).
    Parameter names and shapes are upstream's: ``x_proj_weight (4, R+2N, D)``,
    ``dt_projs_weight (4, D, R)``, ``dt_projs_bias (4, D)``, ``A_logs (4D, N)``, ``Ds (4D,)``.
    """

    K = 4  # scan directions

    def __init__(
        self,
        *,
        d_model: int,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        act: str = "silu",
        d_conv: int = 3,
        conv_bias: bool = False,
        forward_type: str = "v05_noz",
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.ftype = parse_forward_type(forward_type)
        self.d_inner = d_inner = int(ssm_ratio * d_model)
        self.d_state = d_state
        self.dt_rank = int(math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank)
        self.scan_backend = scan_backend

        # Same order as upstream, so the state dict lists keys in the release files' order.
        self.x_proj_weight = nn.Parameter(torch.empty(self.K, self.dt_rank + 2 * d_state, d_inner))
        self.A_logs = nn.Parameter(torch.empty(self.K * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(self.K * d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(self.K, d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(self.K, d_inner))

        self.out_norm: nn.Module = {
            "ln": lambda: nn.LayerNorm(d_inner),
            "none": nn.Identity,
            "sigmoid": nn.Sigmoid,
        }[self.ftype.out_norm]()
        self.in_proj = nn.Linear(d_model, d_inner * (2 if self.ftype.gate else 1), bias=False)
        self.act = _ACTIVATIONS[act]()
        self.conv2d = (
            nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias)
            if d_conv > 1
            else None
        )
        self.out_act = nn.GELU() if self.ftype.out_act else nn.Identity()
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(
        self, *, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4, dt_scale: float = 1.0
    ) -> None:
        """Mamba's init: softplus(dt_bias) log-uniform in [dt_min, dt_max], A = -(1..N), D = 1."""
        bound = self.dt_rank**-0.5 * dt_scale
        self.dt_projs_weight.uniform_(-bound, bound)
        # x_proj is an nn.Linear per direction upstream: kaiming-uniform bound 1/sqrt(fan_in).
        fan_bound = 1.0 / math.sqrt(self.d_inner)
        self.x_proj_weight.uniform_(-fan_bound, fan_bound)
        dt = torch.exp(
            torch.rand(self.K, self.d_inner, device=self.dt_projs_bias.device)
            * (math.log(dt_max) - math.log(dt_min))
            + math.log(dt_min)
        ).clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=self.A_logs.device)
        self.A_logs.copy_(torch.log(a).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, d_model)`` → ``(B, H, W, d_model)``."""
        x = self.in_proj(x)
        z = None
        if self.ftype.gate:
            x, z = x.chunk(2, dim=-1)
            if self.ftype.gate_act:
                z = self.act(z)
        x = x.permute(0, 3, 1, 2)  # (B, D, H, W) view, channels_last memory
        if self.conv2d is not None:
            x = self.conv2d(x)
        x = self.act(x)
        y = cross_selective_scan(
            x,
            x_proj_weight=self.x_proj_weight,
            dt_projs_weight=self.dt_projs_weight,
            dt_projs_bias=self.dt_projs_bias,
            A_logs=self.A_logs,
            Ds=self.Ds,
            backend=self.scan_backend,
        )
        # The scan returns float32; upstream casts back to the input dtype after its out-norm.
        y = self.out_act(self.out_norm(y.permute(0, 2, 3, 1)).to(x.dtype))
        if z is not None:
            y = y * z
        return self.out_proj(y)


class VSSBlock(nn.Module):
    """Pre-norm residual block: ``x + drop_path(op(norm(x)))`` then ``x + drop_path(mlp(norm2(x)))``.

    Either branch is absent when its ratio is 0 (upstream's VMamba v0 has no MLP).
    """

    def __init__(
        self,
        *,
        dim: int,
        drop_path: float = 0.0,
        ssm_kwargs: dict[str, Any],
        ssm_ratio: float,
        mlp_ratio: float = 4.0,
        mlp_act: str = "gelu",
    ) -> None:
        super().__init__()
        if ssm_ratio > 0:
            self.norm = nn.LayerNorm(dim)
            self.op = SS2D(d_model=dim, ssm_ratio=ssm_ratio, **ssm_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if mlp_ratio > 0:
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), act=mlp_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "op"):
            x = x + self.drop_path(self.op(self.norm(x)))
        if hasattr(self, "mlp"):
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchMerging(nn.Module):
    """Upstream downsample "v1": 2x2 space-to-depth (order x00, x10, x01, x11), LN(4C), Linear → out."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


def _conv_downsample(dim: int, out_dim: int, *, kernel: int, padding: int) -> nn.Sequential:
    # Indices 1 (conv) and 3 (norm) are the checkpoint's; 0 and 2 carry no parameters.
    return nn.Sequential(
        Permute(0, 3, 1, 2),
        nn.Conv2d(dim, out_dim, kernel_size=kernel, stride=2, padding=padding),
        Permute(0, 2, 3, 1),
        nn.LayerNorm(out_dim),
    )


_DOWNSAMPLES: dict[str, Callable[[int, int], nn.Module]] = {
    "v1": PatchMerging,
    "v2": lambda d, o: _conv_downsample(d, o, kernel=2, padding=0),
    "v3": lambda d, o: _conv_downsample(d, o, kernel=3, padding=1),
    "none": lambda d, o: nn.Identity(),
}


def _patch_embed_v1(in_chans: int, dim: int, patch: int, norm: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch),
        Permute(0, 2, 3, 1),
        nn.LayerNorm(dim) if norm else nn.Identity(),
    )


def _patch_embed_v2(in_chans: int, dim: int, patch: int, norm: bool) -> nn.Sequential:
    # Two stride-patch/2 3x3 convs; checkpoint indices 0, 2, 5, 7.
    stride = patch // 2
    half = dim // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, half, kernel_size=stride + 1, stride=stride, padding=1),
        Permute(0, 2, 3, 1),
        nn.LayerNorm(half) if norm else nn.Identity(),
        Permute(0, 3, 1, 2),
        nn.GELU(),
        nn.Conv2d(half, dim, kernel_size=stride + 1, stride=stride, padding=1),
        Permute(0, 2, 3, 1),
        nn.LayerNorm(dim) if norm else nn.Identity(),
    )


_PATCH_EMBEDS: dict[str, Callable[[int, int, int, bool], nn.Sequential]] = {
    "v1": _patch_embed_v1,
    "v2": _patch_embed_v2,
}


class Classifier(nn.Module):
    """Final LayerNorm, global average pool, linear head (Identity when ``num_classes == 0``)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x).mean(dim=(1, 2)))


class VMamba(nn.Module):
    """VMamba backbone + classifier (upstream ``VSSM``), inference-oriented.

    Input: float NCHW ``(B, in_chans, H, W)``, normalised with the model card's mean/std.
    Output: logits ``(B, num_classes)``, or pooled, normed features ``(B, dims[-1])`` when
    ``num_classes == 0``. :meth:`forward_features` gives the last stage's ``(B, H/32, W/32, C)`` map.

    Keyword arguments (upstream config names in brackets):

    - ``dims`` [EMBED_DIM]: int C (stages C, 2C, 4C, 8C) or one width per stage.
    - ``depths`` [DEPTHS]: blocks per stage, e.g. ``(2, 2, 15, 2)``.
    - ``ssm_d_state`` [SSM_D_STATE] N; ``ssm_ratio`` [SSM_RATIO] d_inner = ratio·C (0 drops the
      SSM branch); ``ssm_dt_rank`` [SSM_DT_RANK] ``"auto"`` = ceil(C/16); ``ssm_act`` ("silu");
      ``ssm_conv`` [SSM_CONV] depthwise kernel (<2: none); ``ssm_conv_bias`` [SSM_CONV_BIAS].
    - ``forward_type`` [SSM_FORWARDTYPE]: e.g. ``"v05_noz"`` (no z gate, released v2 models),
      ``"v2"`` / ``"v05"`` (z gate with act(z), CLIP-Mamba towers); postfixes ``_nozact``,
      ``_oact``, ``_onnone``, ``_onsigmoid``, ``_no32`` as upstream.
    - ``mlp_ratio`` [MLP_RATIO] (0: no MLP branch), ``mlp_act`` ("gelu").
    - ``drop_path_rate`` [DROP_PATH_RATE]: linear stochastic-depth ramp (inactive in eval).
    - ``patch_size``, ``in_chans``, ``patch_norm``; ``patchembed_version`` [PATCHEMBED] "v1"|"v2";
      ``downsample_version`` [DOWNSAMPLE] "v1" (patch merging) | "v2" (2x2 conv) | "v3" (3x3 s2
      conv) | "none"; ``norm_layer`` [NORM_LAYER] "ln" | "ln2d" (same function and keys).
    - ``num_classes``: 1000, or 0 for a headless tower.
    - ``scan_backend``: ``cross_selective_scan`` backend, "auto" | "mamba" | "triton" | "torch".
    """

    def __init__(
        self,
        *,
        dims: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 9, 2),
        ssm_d_state: int = 1,
        ssm_ratio: float = 2.0,
        ssm_dt_rank: int | str = "auto",
        ssm_act: str = "silu",
        ssm_conv: int = 3,
        ssm_conv_bias: bool = False,
        forward_type: str = "v05_noz",
        mlp_ratio: float = 4.0,
        mlp_act: str = "gelu",
        drop_path_rate: float = 0.1,
        patch_size: int = 4,
        in_chans: int = 3,
        patch_norm: bool = True,
        patchembed_version: str = "v2",
        downsample_version: str = "v3",
        norm_layer: str = "ln2d",
        num_classes: int = 1000,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        if norm_layer.lower() not in _NORMS:
            raise ValueError(f"norm_layer {norm_layer!r} not supported (use one of {', '.join(_NORMS)})")
        if patchembed_version not in _PATCH_EMBEDS:
            raise ValueError(f"patchembed_version {patchembed_version!r} not in {sorted(_PATCH_EMBEDS)}")
        if downsample_version not in _DOWNSAMPLES:
            raise ValueError(f"downsample_version {downsample_version!r} not in {sorted(_DOWNSAMPLES)}")
        depths = list(depths)
        if isinstance(dims, int):
            dims = [dims * 2**i for i in range(len(depths))]
        self.dims = list(dims)
        self.num_features = self.dims[-1]
        self.num_classes = num_classes

        ssm_kwargs = dict(
            d_state=ssm_d_state,
            dt_rank=ssm_dt_rank,
            act=ssm_act,
            d_conv=ssm_conv,
            conv_bias=ssm_conv_bias,
            forward_type=forward_type,
            scan_backend=scan_backend,
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.patch_embed = _PATCH_EMBEDS[patchembed_version](in_chans, self.dims[0], patch_size, patch_norm)
        self.layers = nn.ModuleList()
        start = 0
        for i, depth in enumerate(depths):
            blocks = nn.Sequential(
                *(
                    VSSBlock(
                        dim=self.dims[i],
                        drop_path=rates[start + j],
                        ssm_kwargs=ssm_kwargs,
                        ssm_ratio=ssm_ratio,
                        mlp_ratio=mlp_ratio,
                        mlp_act=mlp_act,
                    )
                    for j in range(depth)
                )
            )
            start += depth
            last = i == len(depths) - 1
            down = nn.Identity() if last else _DOWNSAMPLES[downsample_version](self.dims[i], self.dims[i + 1])
            self.layers.append(nn.Sequential(OrderedDict(blocks=blocks, downsample=down)))
        self.classifier = Classifier(self.num_features, num_classes)
        self.apply(_init_linear_and_norm)

    def set_scan_backend(self, backend: str) -> None:
        """Route every SS2D block through ``cross_selective_scan(..., backend=backend)``."""
        for module in self.modules():
            if isinstance(module, SS2D):
                module.scan_backend = backend

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW image → last-stage map ``(B, H/32, W/32, dims[-1])`` (before the final norm)."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def _init_linear_and_norm(m: nn.Module) -> None:
    # Upstream VSSM._init_weights: truncated-normal Linear weights, zero bias, unit LayerNorm.
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# Released ImageNet-1k classifiers. Configs are upstream's yaml files (classification/configs/vssm),
# eval transform is upstream's build_transform (resize 256 bicubic, center crop 224, ImageNet mean/std).
_RELEASE = "https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/"
_COMMON = dict(
    ssm_d_state=1,
    ssm_dt_rank="auto",
    ssm_act="silu",
    ssm_conv=3,
    ssm_conv_bias=False,
    forward_type="v05_noz",
    mlp_ratio=4.0,
    mlp_act="gelu",
    patch_size=4,
    patchembed_version="v2",
    downsample_version="v3",
    norm_layer="ln2d",
)
VMAMBA_PRESETS: dict[str, dict[str, Any]] = {
    # vmambav2v_tiny_224.yaml (vssm1_tiny_0230s), the released VMamba-T[s1l8]
    "vmamba_t": dict(_COMMON, dims=96, depths=(2, 2, 8, 2), ssm_ratio=1.0, drop_path_rate=0.2),
    # vmambav2_small_224.yaml (vssm1_small_0229), VMamba-S[s2l15]
    "vmamba_s": dict(_COMMON, dims=96, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.3),
    # vmambav2_base_224.yaml (vssm1_base_0229), VMamba-B[s2l15]
    "vmamba_b": dict(_COMMON, dims=128, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.6),
}
VMAMBA_DATA = DataConfig(input_size=224, interpolation="bicubic", crop_pct=0.875)


def _build(name: str, *, scan_backend: str, overrides: dict[str, Any]) -> VMamba:
    return VMamba(**{**VMAMBA_PRESETS[name], **overrides, "scan_backend": scan_backend})


@register_model(
    ModelCard(
        name="vmamba_t",
        family="vmamba",
        data=VMAMBA_DATA,
        weights_url=_RELEASE + "vssm1_tiny_0230s_ckpt_epoch_264.pth",
        upstream="MzeroMiko/VMamba classification/configs/vssm/vmambav2v_tiny_224.yaml (VMamba-T[s1l8])",
        paper_top1=82.6,
        params_m=30.25,
        converter="vmamba",
        min_input_size=32,
        cam_layer="layers.3",  # last stage, channel-last (B, H/32, W/32, C) between modules
        cam_layout="nhwc",
    )
)
def vmamba_t(*, scan_backend: str = "auto", **overrides: Any) -> VMamba:
    """VMamba-T: dims 96, depths 2-2-8-2, ssm_ratio 1.0, d_state 1, v05_noz."""
    return _build("vmamba_t", scan_backend=scan_backend, overrides=overrides)


@register_model(
    ModelCard(
        name="vmamba_s",
        family="vmamba",
        data=VMAMBA_DATA,
        weights_url=_RELEASE + "vssm_small_0229_ckpt_epoch_222.pth",
        upstream="MzeroMiko/VMamba classification/configs/vssm/vmambav2_small_224.yaml (VMamba-S[s2l15])",
        paper_top1=83.6,
        params_m=50.15,
        converter="vmamba",
        min_input_size=32,
        cam_layer="layers.3",  # last stage, channel-last (B, H/32, W/32, C) between modules
        cam_layout="nhwc",
    )
)
def vmamba_s(*, scan_backend: str = "auto", **overrides: Any) -> VMamba:
    """VMamba-S: dims 96, depths 2-2-15-2, ssm_ratio 2.0, d_state 1, v05_noz."""
    return _build("vmamba_s", scan_backend=scan_backend, overrides=overrides)


@register_model(
    ModelCard(
        name="vmamba_b",
        family="vmamba",
        data=VMAMBA_DATA,
        weights_url=_RELEASE + "vssm_base_0229_ckpt_epoch_237.pth",
        upstream="MzeroMiko/VMamba classification/configs/vssm/vmambav2_base_224.yaml (VMamba-B[s2l15])",
        paper_top1=83.9,
        params_m=88.56,
        converter="vmamba",
        min_input_size=32,
        cam_layer="layers.3",  # last stage, channel-last (B, H/32, W/32, C) between modules
        cam_layout="nhwc",
    )
)
def vmamba_b(*, scan_backend: str = "auto", **overrides: Any) -> VMamba:
    """VMamba-B: dims 128, depths 2-2-15-2, ssm_ratio 2.0, d_state 1, v05_noz."""
    return _build("vmamba_b", scan_backend=scan_backend, overrides=overrides)

"""MambaVision (NVlabs) ImageNet-1k classifiers ``mambavision_t``, ``_s``, ``_b``, ``_l``.

Our own implementation of upstream's ``MambaVision`` (``mambavision/models/mamba_vision.py``) with
upstream's names and shapes, so the released files load key-for-key:

- ``.pth.tar`` (timm training dumps, ``{'state_dict': ..., 'epoch', 'arch', 'args', ...}``): our keys.
- HF ``nvidia/MambaVision-*-1K`` ``model.safetensors`` (the remote-code ``MambaVisionModelForImageClassification``
  wraps the network as ``self.model``): every key prefixed ``model.``, which the ``"mambavision"``
  converter strips. No ``trust_remote_code``, no transformers import.

Architecture: conv stem (two 3x3 stride-2 convs + BN + ReLU, ``patch_embed.conv_down``); stages 0-1 of
residual conv blocks (conv-BN-GELU(tanh)-conv-BN); stages 2-3 on non-overlapping windows (padded
bottom/right to the window size, as upstream) with pre-norm blocks whose mixer is the MambaVision
mixer in the first half and multi-head self-attention in the second half, each followed by an MLP
(optional layer scale ``gamma_1``/``gamma_2``); a 3x3 stride-2 conv between stages; BN, average pool, head.

The MambaVision mixer: ``in_proj`` → x, z halves; each a non-causal depthwise conv1d (``padding='same'``,
no bias) + SiLU; the selective scan (d_state 8, D skip, no gate) on x only; ``out_proj(cat(y, z))``.
As upstream, the dt bias enters twice (``dt_proj`` with bias, then ``delta_bias``).
The scan is :func:`robusteval.models.kernels.scan.selective_scan` (``scan_backend``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

from robusteval.models.kernels.scan import selective_scan
from robusteval.models.registry import DataConfig, ModelCard, register_converter, register_model


class MambaVisionMixer(nn.Module):
    """Upstream ``MambaVisionMixer`` (expand 1, d_conv 3, d_state 8): ``(B, L, dim)`` → ``(B, L, dim)``."""

    def __init__(
        self, d_model: int, *, d_state: int = 8, d_conv: int = 3, expand: int = 1, scan_backend: str = "auto"
    ) -> None:
        super().__init__()
        self.d_inner = int(expand * d_model)
        half = self.d_inner // 2
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.scan_backend = scan_backend
        self.in_proj = nn.Linear(d_model, self.d_inner, bias=False)
        self.x_proj = nn.Linear(half, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, half)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(half, 1)
        )
        self.D = nn.Parameter(torch.ones(half))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # Upstream passes bias=conv_bias//2 == 0: no conv biases.
        self.conv1d_x = nn.Conv1d(half, half, d_conv, groups=half, bias=False)
        self.conv1d_z = nn.Conv1d(half, half, d_conv, groups=half, bias=False)
        with torch.no_grad():
            bound = self.dt_rank**-0.5
            self.dt_proj.weight.uniform_(-bound, bound)
            dt = torch.exp(torch.rand(half) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(
                min=1e-4
            )
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    @staticmethod
    def _conv_same(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
        return F.conv1d(x, conv.weight.to(x.dtype), None, padding="same", groups=x.shape[1])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)  # (B, D/2, L) each
        x = F.silu(self._conv_same(x, self.conv1d_x))
        z = F.silu(self._conv_same(z, self.conv1d_z))
        x_dbl = torch.einsum("cd,bdl->bcl", self.x_proj.weight.to(x.dtype), x)
        dt, Bm, Cm = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        # Upstream applies dt_proj with its bias and then passes the same bias again as delta_bias,
        # so softplus sees W dt + 2 b; the released weights were trained that way.
        delta = torch.einsum("dr,brl->bdl", self.dt_proj.weight.to(x.dtype), dt)
        delta = delta + self.dt_proj.bias.to(delta.dtype)[:, None]
        y = selective_scan(
            x,
            delta,
            -torch.exp(self.A_log.float()),
            Bm,
            Cm,
            self.D.float(),
            None,
            self.dt_proj.bias.float(),
            True,
            backend=self.scan_backend,
        )
        return self.out_proj(torch.cat([y.to(z.dtype), z], dim=1).transpose(1, 2))


class Attention(nn.Module):
    """Multi-head self-attention on ``(B, N, C)`` (``qkv`` with bias, ``proj``), scale 1/sqrt(head_dim)."""

    def __init__(self, dim: int, *, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """``x + g1 * mixer(norm1(x))``, then ``x + g2 * mlp(norm2(x))``; mixer is attention or MambaVision."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        attention: bool,
        mlp_ratio: float,
        drop_path: float,
        layer_scale: float | None,
        scan_backend: str,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer: nn.Module = (
            Attention(dim, num_heads=num_heads)
            if attention
            else MambaVisionMixer(dim, d_state=8, d_conv=3, expand=1, scan_backend=scan_backend)
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        if layer_scale is not None:
            self.gamma_1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layer_scale * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mixer(self.norm1(x))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)


class ConvBlock(nn.Module):
    """Residual ``conv3x3-BN-GELU(tanh)-conv3x3-BN`` on NCHW."""

    def __init__(self, dim: int, *, drop_path: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(dim, eps=1e-5)
        self.act1 = nn.GELU(approximate="tanh")
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(dim, eps=1e-5)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x))))))


class Downsample(nn.Module):
    """``reduction.0``: 3x3 stride-2 conv, no bias, C → 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, 2, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(x)


class PatchEmbed(nn.Module):
    """``conv_down``: conv3x3 s2 → BN → ReLU → conv3x3 s2 → BN → ReLU (BN eps 1e-4); NCHW /4."""

    def __init__(self, in_chans: int, in_dim: int, dim: int) -> None:
        super().__init__()
        self.conv_down = nn.Sequential(
            nn.Conv2d(in_chans, in_dim, 3, 2, 1, bias=False),
            nn.BatchNorm2d(in_dim, eps=1e-4),
            nn.ReLU(),
            nn.Conv2d(in_dim, dim, 3, 2, 1, bias=False),
            nn.BatchNorm2d(dim, eps=1e-4),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_down(x)


def _attention_blocks(depth: int) -> range:
    """Upstream: the second half of a stage's blocks are attention (the larger half for odd depth is Mamba)."""
    return range(depth // 2 + 1, depth) if depth % 2 else range(depth // 2, depth)


class Level(nn.Module):
    """One stage: conv blocks (``conv=True``) or windowed Mamba/attention blocks; then the downsample."""

    def __init__(
        self,
        dim: int,
        *,
        depth: int,
        conv: bool,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
        layer_scale: float | None,
        downsample: bool,
        scan_backend: str,
    ) -> None:
        super().__init__()
        self.conv = conv
        self.window_size = window_size
        attn = set(_attention_blocks(depth))
        self.blocks = nn.ModuleList(
            ConvBlock(dim, drop_path=drop_path[i])
            if conv
            else Block(
                dim,
                num_heads=num_heads,
                attention=i in attn,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path[i],
                layer_scale=layer_scale,
                scan_backend=scan_backend,
            )
            for i in range(depth)
        )
        self.downsample = Downsample(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv:
            for blk in self.blocks:
                x = blk(x)
        else:
            B, C, H, W = x.shape
            ws = self.window_size
            x = F.pad(x, (0, (ws - W % ws) % ws, 0, (ws - H % ws) % ws))
            Hp, Wp = x.shape[-2:]
            # (B, C, Hp, Wp) → (B * windows, ws * ws, C), windows and in-window pixels row-major.
            t = x.view(B, C, Hp // ws, ws, Wp // ws, ws).permute(0, 2, 4, 3, 5, 1).reshape(-1, ws * ws, C)
            for blk in self.blocks:
                t = blk(t)
            x = t.view(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, Hp, Wp)
            x = x[:, :, :H, :W].contiguous()
        return x if self.downsample is None else self.downsample(x)


class MambaVision(nn.Module):
    """MambaVision backbone + classifier (inference-oriented).

    Input: float NCHW ``(B, in_chans, H, W)``, card mean/std; any H, W divisible by 32 (windows are
    padded). Output: logits ``(B, num_classes)``, or pooled features ``(B, 8·dim)`` when ``num_classes == 0``.
    Arguments are upstream's: ``dim``, ``in_dim`` (stem width), ``depths``, ``num_heads``, ``window_size``
    (per stage), ``mlp_ratio``, ``drop_path_rate``, ``layer_scale`` (None or the init value of
    ``gamma_1/2``); ``scan_backend`` for the selective scan ("auto" | "mamba" | "torch").
    """

    def __init__(
        self,
        *,
        dim: int,
        in_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_size: Sequence[int],
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.2,
        layer_scale: float | None = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = int(dim * 2 ** (len(depths) - 1))
        self.patch_embed = PatchEmbed(in_chans, in_dim, dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.levels = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.levels.append(
                Level(
                    int(dim * 2**i),
                    depth=depth,
                    conv=i < 2,
                    num_heads=num_heads[i],
                    window_size=window_size[i],
                    mlp_ratio=mlp_ratio,
                    drop_path=rates[start : start + depth],
                    layer_scale=layer_scale,
                    downsample=i < 3,
                    scan_backend=scan_backend,
                )
            )
        self.norm = nn.BatchNorm2d(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def set_scan_backend(self, backend: str) -> None:
        for module in self.modules():
            if isinstance(module, MambaVisionMixer):
                module.scan_backend = backend

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW image → pooled, BN-normed features ``(B, num_features)``."""
        x = self.patch_embed(x)
        for level in self.levels:
            x = level(x)
        return self.norm(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    # Upstream MambaVision._init_weights: truncated-normal Linear weights, zero bias, unit norms.
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


HF_PREFIX = "model."


@register_converter("mambavision")
def convert_mambavision(
    state_dict: Mapping[str, torch.Tensor], *, module: nn.Module
) -> dict[str, torch.Tensor]:
    """HF safetensors layout (``model.<upstream key>``) → our keys; a ``.pth.tar`` state dict passes through."""
    if state_dict and all(k.startswith(HF_PREFIX) for k in state_dict):
        return {k[len(HF_PREFIX) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


# ---------------------------------------------------------------------------------------------
# Released ImageNet-1k models: upstream builders mamba_vision_T/S/B/L and their default_cfgs
# (bicubic, ImageNet mean/std, center crop; crop_pct 1.0 / 0.93 / 1.0 / 1.0).
MAMBAVISION_PRESETS: dict[str, dict[str, Any]] = {
    "mambavision_t": dict(
        dim=80, in_dim=32, depths=(1, 3, 8, 4), num_heads=(2, 4, 8, 16), window_size=(8, 8, 14, 7),
        drop_path_rate=0.2, layer_scale=None,
    ),
    "mambavision_s": dict(
        dim=96, in_dim=64, depths=(3, 3, 7, 5), num_heads=(2, 4, 8, 16), window_size=(8, 8, 14, 7),
        drop_path_rate=0.2, layer_scale=None,
    ),
    "mambavision_b": dict(
        dim=128, in_dim=64, depths=(3, 3, 10, 5), num_heads=(2, 4, 8, 16), window_size=(8, 8, 14, 7),
        drop_path_rate=0.3, layer_scale=1e-5,
    ),
    "mambavision_l": dict(
        dim=196, in_dim=64, depths=(3, 3, 10, 5), num_heads=(4, 8, 16, 32), window_size=(8, 8, 14, 7),
        drop_path_rate=0.3, layer_scale=1e-5,
    ),
}  # fmt: skip


def _card(name: str, *, tag: str, file: str, crop_pct: float, top1: float, params: float) -> ModelCard:
    hub = f"nvidia/MambaVision-{tag}-1K"
    return ModelCard(
        name=name,
        family="mambavision",
        data=DataConfig(input_size=224, interpolation="bicubic", crop_pct=crop_pct),
        hf_hub_id=hub,
        hf_filename="model.safetensors",
        weights_url=f"https://huggingface.co/{hub}/resolve/main/{file}",
        upstream=f"NVlabs/MambaVision mambavision/models/mamba_vision.py mamba_vision_{tag}",
        paper_top1=top1,
        params_m=params,
        converter="mambavision",
        min_input_size=32,
    )


def _build(name: str, *, scan_backend: str, overrides: dict[str, Any]) -> MambaVision:
    return MambaVision(**{**MAMBAVISION_PRESETS[name], **overrides, "scan_backend": scan_backend})


@register_model(
    _card("mambavision_t", tag="T", file="mambavision_tiny_1k.pth.tar", crop_pct=1.0, top1=82.3, params=31.79)
)
def mambavision_t(*, scan_backend: str = "auto", **overrides: Any) -> MambaVision:
    """MambaVision-T: dim 80, depths 1-3-8-4."""
    return _build("mambavision_t", scan_backend=scan_backend, overrides=overrides)


@register_model(
    _card(
        "mambavision_s", tag="S", file="mambavision_small_1k.pth.tar", crop_pct=0.93, top1=83.3, params=50.14
    )
)
def mambavision_s(*, scan_backend: str = "auto", **overrides: Any) -> MambaVision:
    """MambaVision-S: dim 96, depths 3-3-7-5."""
    return _build("mambavision_s", scan_backend=scan_backend, overrides=overrides)


@register_model(
    _card("mambavision_b", tag="B", file="mambavision_base_1k.pth.tar", crop_pct=1.0, top1=84.2, params=97.69)
)
def mambavision_b(*, scan_backend: str = "auto", **overrides: Any) -> MambaVision:
    """MambaVision-B: dim 128, depths 3-3-10-5, layer scale 1e-5."""
    return _build("mambavision_b", scan_backend=scan_backend, overrides=overrides)


@register_model(
    _card(
        "mambavision_l", tag="L", file="mambavision_large_1k.pth.tar", crop_pct=1.0, top1=85.0, params=227.96
    )
)
def mambavision_l(*, scan_backend: str = "auto", **overrides: Any) -> MambaVision:
    """MambaVision-L: dim 196, depths 3-3-10-5, heads 4-8-16-32, layer scale 1e-5."""
    return _build("mambavision_l", scan_backend=scan_backend, overrides=overrides)

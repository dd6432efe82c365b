"""SiMBA image towers (Patro & Agneeswaran 2024) as CLIP-Mamba trains them (``simba.py`` in raytrun/mamba-clip).

Four stages of ``[Mamba token mixer + MLP]`` blocks over a conv stem, then a class-attention-like
"post network" that runs one Mamba + MLP block on the mean token; the output is that token after
the last stage norm (``[B, embed_dims[-1]]``; CLIP-Mamba builds the tower with ``num_classes=0``
and ``token_label=False``, so there is no head). Parameter names follow upstream key-for-key::

    patch_embed1.conv.{0,3,6}.weight  patch_embed1.conv.{1,4,7}.* (BatchNorm)  patch_embed1.{proj,norm}.*
    patch_embed{2,3,4}.{proj,norm}.*  block<s>.<j>.{norm2,attn.norm,attn.mamba.*,mlp.fc1,mlp.dwconv.dwconv,mlp.fc2}.*
    norm{1..4}.*  post_network.0.{norm2,attn.norm,attn.mamba.*,mlp.fc1,mlp.fc2}.*

``attn.mamba`` is mamba-ssm's ``Mamba`` (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``,
``D``, ``out_proj``) with d_state 64, conv width 4, expand 2. Its selective scan goes through
:func:`robusteval.models.kernels.scan.selective_scan` (``scan_backend``); the causal depthwise conv
uses causal-conv1d's CUDA kernel when it is importable and the input is on a GPU.

Upstream's LayerNorms differ in epsilon; we keep each one's:
stage norms, block ``norm2`` use 1e-6; the stem/downsample norms and the Mamba pre-norm 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SIMBA_CONFIGS", "MambaMixer", "Simba", "SimbaConfig"]


@dataclass(frozen=True)
class SimbaConfig:
    """One SiMBA size (upstream ``simba_s``/``simba_b``/``simba_l`` factory arguments)."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    mlp_ratios: tuple[float, float, float, float] = (8, 8, 4, 4)
    stem_hidden_dim: int = 64
    d_state: int = 64
    d_conv: int = 4
    expand: int = 2
    norm_eps: float = 1e-6  # stage norms and block norm2 (upstream partial(nn.LayerNorm, eps=1e-6))


SIMBA_CONFIGS: dict[str, SimbaConfig] = {
    "simba_s": SimbaConfig(embed_dims=(64, 128, 320, 448), depths=(3, 4, 6, 3), stem_hidden_dim=32),
    "simba_b": SimbaConfig(embed_dims=(64, 128, 320, 512), depths=(3, 4, 12, 3)),
    "simba_l": SimbaConfig(embed_dims=(96, 192, 384, 512), depths=(3, 6, 18, 3)),
}


@lru_cache(maxsize=1)
def _causal_conv1d_kernel() -> Any:
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:  # ImportError, or a CUDA build that does not match this torch
        return None
    return causal_conv1d_fn


class MambaMixer(nn.Module):
    """mamba-ssm's ``Mamba`` block (Mamba-1) for inference: ``(B, L, d_model)`` → same shape.

    in_proj → (x, z); x → causal depthwise conv (width ``d_conv``) → SiLU → x_proj → (dt, B, C);
    dt → dt_proj (bias folded into the scan as ``delta_bias``, softplus inside);
    y = selective_scan(x, dt, -exp(A_log), B, C, D) · SiLU(z) → out_proj.
    """

    def __init__(
        self, d_model: int, *, d_state: int = 64, d_conv: int = 4, expand: int = 2, scan_backend: str = "auto"
    ) -> None:
        super().__init__()
        self.d_inner = d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.scan_backend = scan_backend
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.empty(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(
        self, *, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4
    ) -> None:
        """Mamba's init: A = -(1..N), D = 1, softplus(dt bias) log-uniform in [dt_min, dt_max]."""
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=self.A_log.device)
        self.A_log.copy_(torch.log(a).expand_as(self.A_log))
        self.D.fill_(1.0)
        bound = self.dt_rank**-0.5
        self.dt_proj.weight.uniform_(-bound, bound)
        dt = torch.exp(
            torch.rand(self.d_inner, device=self.D.device) * (math.log(dt_max) - math.log(dt_min))
            + math.log(dt_min)
        ).clamp(min=dt_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _conv(self, x: Tensor) -> Tensor:
        """Causal depthwise conv + SiLU on ``(B, d_inner, L)``."""
        kernel = _causal_conv1d_kernel() if x.is_cuda else None
        if kernel is not None:
            weight = self.conv1d.weight.squeeze(1).to(x.dtype)
            bias = None if self.conv1d.bias is None else self.conv1d.bias.to(x.dtype)
            return kernel(x.contiguous(), weight, bias, activation="silu")
        return F.silu(self.conv1d(x)[..., : x.shape[-1]])

    def forward(self, hidden: Tensor) -> Tensor:
        from robusteval.models.kernels.scan import selective_scan

        length = hidden.shape[1]
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, L) each
        x = self._conv(x)
        dt, b, c = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # (B, d_inner, L), bias goes to the scan
        y = selective_scan(
            x.contiguous(),
            dt.contiguous(),
            -torch.exp(self.A_log.float()),
            b.transpose(1, 2).contiguous(),
            c.transpose(1, 2).contiguous(),
            self.D.float(),
            z.contiguous(),
            self.dt_proj.bias.float(),
            True,
            backend=self.scan_backend,
        )
        assert y.shape[-1] == length
        return self.out_proj(y.transpose(1, 2))


class MambaLayer(nn.Module):
    """``mamba(norm(x))``; upstream's token mixer (its residual is added by the block)."""

    def __init__(self, dim: int, *, d_state: int, d_conv: int, expand: int, scan_backend: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)  # upstream default eps (1e-5), unlike the block norms
        self.mamba = MambaMixer(dim, d_state=d_state, d_conv=d_conv, expand=expand, scan_backend=scan_backend)

    def forward(self, x: Tensor) -> Tensor:
        return self.mamba(self.norm(x))


class DWConv(nn.Module):
    """3x3 depthwise conv applied to tokens ``(B, H*W, C)`` laid out as an ``H x W`` map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=True)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w))
        return x.flatten(2).transpose(1, 2)


class ConvMlp(nn.Module):
    """PVTv2's FFN: fc1 → depthwise 3x3 → GELU → fc2 (upstream ``PVT2FFN``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class Mlp(nn.Module):
    """fc1 → GELU → fc2 (upstream ``FFN``, used by the post network)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SimbaBlock(nn.Module):
    """``x + attn(x)`` (attn carries its own pre-norm), then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, mlp_ratio: float, cfg: SimbaConfig, *, scan_backend: str) -> None:
        super().__init__()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = MambaLayer(
            dim, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand, scan_backend=scan_backend
        )
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        x = x + self.attn(x)
        return x + self.mlp(self.norm2(x), h, w)


class ClassBlock(nn.Module):
    """The post network: one Mamba + MLP step applied to the class token alone (sequence length 1)."""

    def __init__(self, dim: int, mlp_ratio: float, cfg: SimbaConfig, *, scan_backend: str) -> None:
        super().__init__()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = MambaLayer(
            dim, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand, scan_backend=scan_backend
        )
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, cls: Tensor) -> Tensor:
        cls = cls + self.attn(cls)
        return cls + self.mlp(self.norm2(cls))


class Stem(nn.Module):
    """Three 3x3-ish conv-BN-ReLU layers (7x7 s2 first), a 3x3 s2 projection, LayerNorm: stride 4."""

    def __init__(self, in_chans: int, hidden: int, dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (k, s) in enumerate([(7, 2), (3, 1), (3, 1)]):
            layers += [
                nn.Conv2d(in_chans if i == 0 else hidden, hidden, k, stride=s, padding=k // 2, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
            ]
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Conv2d(hidden, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(self.conv(x))
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class Downsample(nn.Module):
    """3x3 stride-2 conv on the ``(B, C, H, W)`` map, then LayerNorm over channels of the tokens."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, out_dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class Simba(nn.Module):
    """SiMBA feature tower: float NCHW image (ImageNet-normalised) → ``[B, embed_dims[-1]]``."""

    def __init__(self, cfg: SimbaConfig, *, in_chans: int = 3, scan_backend: str = "auto") -> None:
        super().__init__()
        self.cfg = cfg
        self.num_features = cfg.embed_dims[-1]
        for i, (dim, depth, ratio) in enumerate(zip(cfg.embed_dims, cfg.depths, cfg.mlp_ratios, strict=True)):
            embed = (
                Stem(in_chans, cfg.stem_hidden_dim, dim) if i == 0 else Downsample(cfg.embed_dims[i - 1], dim)
            )
            blocks = nn.ModuleList(
                SimbaBlock(dim, ratio, cfg, scan_backend=scan_backend) for _ in range(depth)
            )
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dim, eps=cfg.norm_eps))
        self.post_network = nn.ModuleList(
            [ClassBlock(cfg.embed_dims[-1], cfg.mlp_ratios[-1], cfg, scan_backend=scan_backend)]
        )
        self.apply(_init_weights)
        for module in self.modules():  # upstream's blanket init would zero the dt biases; keep Mamba's
            if isinstance(module, MambaMixer):
                module.reset_ssm_parameters()

    def set_scan_backend(self, backend: str) -> None:
        for module in self.modules():
            if isinstance(module, MambaMixer):
                module.scan_backend = backend

    def forward(self, x: Tensor) -> Tensor:
        n_stages = len(self.cfg.depths)
        for i in range(n_stages):
            x, h, w = getattr(self, f"patch_embed{i + 1}")(x)
            for block in getattr(self, f"block{i + 1}"):
                x = block(x, h, w)
            if i < n_stages - 1:
                x = getattr(self, f"norm{i + 1}")(x)
                x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        # Upstream prepends the mean token and runs the post network on [cls, tokens], but it only
        # ever updates and reads the class token, so the tokens need not be carried along.
        cls = x.mean(dim=1, keepdim=True)
        for block in self.post_network:
            cls = block(cls)
        return getattr(self, f"norm{n_stages}")(cls[:, 0])


def _init_weights(m: nn.Module) -> None:
    # Upstream's init (only matters for random-weight tests): trunc-normal Linear, fan-out conv.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)

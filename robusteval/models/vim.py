"""Vision Mamba (hustvl/Vim) classifiers ``vim_t``, ``vim_s``, ``vim_b``: bidirectional Mamba ("bimamba v2").

Our own implementation of upstream's ``VisionMamba`` with the released middle-class-token configs
(``vim/models_mamba.py``: ``vim_{tiny,small}_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2``
and ``vim_base_..._with_middle_cls_token_div2``). Parameter names and shapes are upstream's, so the
released ``{'model': state_dict, ...}`` files load key-for-key:
``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``layers.<i>.{norm,mixer}``, ``norm_f``, ``head``;
each mixer holds ``in_proj``, ``conv1d``/``conv1d_b``, ``x_proj``/``x_proj_b``, ``dt_proj``/``dt_proj_b``,
``A_log``/``A_b_log``, ``D``/``D_b``, ``out_proj``.

What upstream computes, and what this module computes in plain PyTorch around one selective scan:

- 16x16 patches, the class token inserted at the middle (index M // 2 of the M patches), absolute
  position embedding; 24 blocks of ``residual += h; h = mixer(RMSNorm(residual))`` (upstream's fused
  add+norm, residual kept in float32), then ``RMSNorm(residual + h)``; the head reads the class token.
- mixer: ``in_proj`` → x, z; forward branch on the sequence and backward branch on the flipped sequence,
  each a causal depthwise conv1d (kernel 4) + SiLU, its own x/dt projections, A, D; both branches go
  through ONE :func:`robusteval.models.kernels.scan.selective_scan` call (channels stacked, B/C as two
  groups, gate SiLU(z)); outputs summed (backward flipped back), halved (``if_divide_out``), ``out_proj``.

No causal-conv1d package and no forked mamba-ssm are needed; ``scan_backend`` picks the scan
(``torch`` reference anywhere, ``mamba`` = mamba-ssm's ``selective_scan_fn`` on CUDA, ``auto``).
Stochastic depth is a training-time op and is left out (inference module).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from robusteval.errors import UserError
from robusteval.models.kernels.scan import selective_scan
from robusteval.models.registry import DataConfig, ModelCard, register_model


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dim, computed in float32 (mamba-ssm's RMSNorm)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + self.eps) * self.weight.float()


def causal_depthwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal depthwise conv along L: ``(B, D, L)``, weight ``(D, 1, K)`` → ``(B, D, L)``; y_t sees x_{t-K+1..t}."""
    k = weight.shape[-1]
    return F.conv1d(
        F.pad(x, (k - 1, 0)),
        weight.to(x.dtype),
        None if bias is None else bias.to(x.dtype),
        groups=x.shape[1],
    )


class BiMambaMixer(nn.Module):
    """Upstream ``Mamba(bimamba_type="v2")``: forward + backward selective scans sharing ``in_proj``/``out_proj``.

    Input and output ``(B, L, d_model)``. ``expand`` 2, ``d_conv`` 4, conv bias on, no linear biases.
    """

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        divide_out: bool = True,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_inner = d_inner = int(expand * d_model)
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.divide_out = divide_out
        self.scan_backend = scan_backend
        # Registration order follows upstream's, so state dicts list keys in the release files' order.
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.A_b_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.conv1d_b = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj_b = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj_b = nn.Linear(self.dt_rank, d_inner)
        self.D_b = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(
        self, *, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4
    ) -> None:
        """Mamba's init: softplus(dt bias) log-uniform in [dt_min, dt_max], A = -(1..N), D = 1."""
        a = torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand(self.d_inner, -1)
        for proj, a_log, d in ((self.dt_proj, self.A_log, self.D), (self.dt_proj_b, self.A_b_log, self.D_b)):
            bound = self.dt_rank**-0.5
            proj.weight.uniform_(-bound, bound)
            dt = torch.exp(
                torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
            ).clamp(min=dt_floor)
            proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            a_log.copy_(a)
            d.fill_(1.0)

    def _branch(self, x: torch.Tensor, conv: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear):
        """One direction: conv + SiLU, then (u, delta, B, C) with u, delta ``(B, D, L)``, B/C ``(B, N, L)``."""
        u = F.silu(causal_depthwise_conv1d(x, conv.weight, conv.bias))
        x_dbl = torch.einsum("cd,bdl->bcl", x_proj.weight.to(u.dtype), u)
        dt, Bm, Cm = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        delta = torch.einsum("dr,brl->bdl", dt_proj.weight.to(u.dtype), dt)
        return u, delta, Bm, Cm

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(h).transpose(1, 2)  # (B, 2 D, L)
        x, z = xz.chunk(2, dim=1)
        fwd = self._branch(x, self.conv1d, self.x_proj, self.dt_proj)
        bwd = self._branch(x.flip(-1), self.conv1d_b, self.x_proj_b, self.dt_proj_b)
        # Both directions in one scan: channels [forward | backward], B/C as two groups.
        u = torch.cat([fwd[0], bwd[0]], dim=1)
        delta = torch.cat([fwd[1], bwd[1]], dim=1)
        Bs = torch.stack([fwd[2], bwd[2]], dim=1)
        Cs = torch.stack([fwd[3], bwd[3]], dim=1)
        A = -torch.exp(torch.cat([self.A_log, self.A_b_log]).float())
        y = selective_scan(
            u,
            delta,
            A,
            Bs,
            Cs,
            torch.cat([self.D, self.D_b]).float(),
            torch.cat([z, z.flip(-1)], dim=1),
            torch.cat([self.dt_proj.bias, self.dt_proj_b.bias]).float(),
            True,
            backend=self.scan_backend,
        )
        y_f, y_b = y.chunk(2, dim=1)
        y = y_f + y_b.flip(-1)
        if self.divide_out:
            y = y / 2
        return self.out_proj(y.transpose(1, 2))


class VimBlock(nn.Module):
    """``norm`` (RMSNorm) + ``mixer``; the residual add happens in :class:`VisionMamba` (upstream's fused add+norm)."""

    def __init__(self, dim: int, *, d_state: int, scan_backend: str) -> None:
        super().__init__()
        self.mixer = BiMambaMixer(dim, d_state=d_state, scan_backend=scan_backend)
        self.norm = RMSNorm(dim)


class PatchEmbed(nn.Module):
    """``proj``: ``patch`` x ``patch`` conv with stride ``stride``, flattened to ``(B, M, dim)``."""

    def __init__(self, *, img_size: int, patch: int, stride: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.img_size = img_size
        self.grid = (img_size - patch) // stride + 1
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise UserError(
                f"Vim takes {self.img_size}x{self.img_size} inputs (its position embedding is fixed); "
                f"got {tuple(x.shape[-2:])}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionMamba(nn.Module):
    """Vim backbone + head (upstream ``VisionMamba`` as released: middle class token, abs pos embed, RMSNorm).

    Input: float NCHW ``(B, in_chans, img_size, img_size)``, card mean/std. Output: logits
    ``(B, num_classes)``, or the normed class-token feature ``(B, embed_dim)`` when ``num_classes == 0``.
    ``scan_backend``: ``selective_scan`` backend, "auto" | "mamba" | "torch".
    """

    def __init__(
        self,
        *,
        embed_dim: int = 192,
        depth: int = 24,
        d_state: int = 16,
        img_size: int = 224,
        patch_size: int = 16,
        stride: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = embed_dim
        self.patch_embed = PatchEmbed(
            img_size=img_size, patch=patch_size, stride=stride, in_chans=in_chans, dim=embed_dim
        )
        num_patches = self.patch_embed.grid**2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.layers = nn.ModuleList(
            VimBlock(embed_dim, d_state=d_state, scan_backend=scan_backend) for _ in range(depth)
        )
        self.norm_f = RMSNorm(embed_dim)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def set_scan_backend(self, backend: str) -> None:
        for module in self.modules():
            if isinstance(module, BiMambaMixer):
                module.scan_backend = backend

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW image → normed class-token feature ``(B, embed_dim)`` (float32 when the residual is)."""
        x = self.patch_embed(x)
        B, M, _ = x.shape
        mid = M // 2
        x = torch.cat([x[:, :mid], self.cls_token.expand(B, -1, -1).to(x.dtype), x[:, mid:]], dim=1)
        x = x + self.pos_embed.to(x.dtype)
        residual = x.float()  # residual_in_fp32
        hidden = self.layers[0].mixer(self.layers[0].norm(residual).to(x.dtype))
        for layer in self.layers[1:]:
            residual = residual + hidden.float()
            hidden = layer.mixer(layer.norm(residual).to(x.dtype))
        out = self.norm_f(residual + hidden.float())
        return out[:, mid].to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------
# Released ImageNet-1k models (HF hustvl/Vim-*-midclstok; files {'model': ..., 'args': Namespace, ...}).
# Eval transform: upstream datasets.build_transform: resize int(224 / 0.875) bicubic, center crop 224.
VIM_DATA = DataConfig(input_size=224, interpolation="bicubic", crop_pct=0.875)
VIM_PRESETS: dict[str, dict[str, Any]] = {
    "vim_t": dict(embed_dim=192, depth=24, d_state=16, patch_size=16, stride=16),
    "vim_s": dict(embed_dim=384, depth=24, d_state=16, patch_size=16, stride=16),
    "vim_b": dict(embed_dim=768, depth=24, d_state=16, patch_size=16, stride=16),
}
_UPSTREAM = "hustvl/Vim vim/models_mamba.py "


def _card(name: str, *, hub: str, file: str, builder: str, top1: float, params: float) -> ModelCard:
    return ModelCard(
        name=name,
        family="vim",
        data=VIM_DATA,
        hf_hub_id=hub,
        hf_filename=file,
        weights_url=f"https://huggingface.co/{hub}/resolve/main/{file}",
        upstream=_UPSTREAM + builder,
        paper_top1=top1,
        params_m=params,
        min_input_size=224,
        notes="fixed 224 px input (absolute position embedding); class token in the middle",
    )


def _build(name: str, *, scan_backend: str, overrides: dict[str, Any]) -> VisionMamba:
    return VisionMamba(**{**VIM_PRESETS[name], **overrides, "scan_backend": scan_backend})


@register_model(
    _card(
        "vim_t",
        hub="hustvl/Vim-tiny-midclstok",
        file="vim_t_midclstok_76p1acc.pth",
        builder="vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
        top1=76.1,
        params=7.15,
    )
)
def vim_t(*, scan_backend: str = "auto", **overrides: Any) -> VisionMamba:
    """Vim-Ti: 192 wide, 24 bimamba-v2 blocks, d_state 16, patch 16."""
    return _build("vim_t", scan_backend=scan_backend, overrides=overrides)


@register_model(
    _card(
        "vim_s",
        hub="hustvl/Vim-small-midclstok",
        file="vim_s_midclstok_80p5acc.pth",
        builder="vim_small_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
        top1=80.5,
        params=25.80,
    )
)
def vim_s(*, scan_backend: str = "auto", **overrides: Any) -> VisionMamba:
    """Vim-S: 384 wide, 24 bimamba-v2 blocks, d_state 16, patch 16."""
    return _build("vim_s", scan_backend=scan_backend, overrides=overrides)


@register_model(
    _card(
        "vim_b",
        hub="hustvl/Vim-base-midclstok",
        file="vim_b_midclstok_81p9acc.pth",
        builder="vim_base_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_middle_cls_token_div2",
        top1=81.9,
        params=97.60,
    )
)
def vim_b(*, scan_backend: str = "auto", **overrides: Any) -> VisionMamba:
    """Vim-B: 768 wide, 24 bimamba-v2 blocks, d_state 16, patch 16."""
    return _build("vim_b", scan_backend=scan_backend, overrides=overrides)

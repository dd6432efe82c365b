"""The CLIP text transformer in OpenAI's layout (also CLIP-Mamba's and open_clip's key names).

A causal pre-LN transformer over BPE tokens; the feature of the end-of-text token (the largest
id in each row) goes through ``ln_final`` and ``text_projection``. State-dict keys:

    token_embedding.weight, positional_embedding, ln_final.{weight,bias}, text_projection,
    transformer.resblocks.<i>.{ln_1,ln_2}.{weight,bias},
    transformer.resblocks.<i>.attn.{in_proj_weight,in_proj_bias,out_proj.weight,out_proj.bias},
    transformer.resblocks.<i>.mlp.{c_fc,c_proj}.{weight,bias}

:class:`ClipTextEncoder` owns exactly these keys at its top level so a CLIP model can inherit from
it and keep OpenAI's flat layout (``visual.*`` beside the text keys).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ClipTextEncoder", "QuickGELU", "TextConfig", "TextTransformer"]


@dataclass(frozen=True)
class TextConfig:
    """Text tower shape; the defaults are CLIP ViT-B's (and every CLIP-Mamba model's)."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    embed_dim: int = 512  # columns of text_projection: the joint image-text space
    quick_gelu: bool = True  # OpenAI-trained weights use x * sigmoid(1.702 x)


class QuickGELU(nn.Module):
    """OpenAI's GELU approximation ``x * sigmoid(1.702 x)`` (their weights were trained with it)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back, as OpenAI's CLIP does for half-precision weights."""

    def forward(self, x: Tensor) -> Tensor:
        out = F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names, batch-first.

    Keeps ``in_proj_weight``/``in_proj_bias``/``out_proj`` so OpenAI checkpoints load as-is, and
    runs through ``scaled_dot_product_attention`` with a causal mask (fused kernels on GPU).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        n, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
        return self.out_proj(y.transpose(1, 2).reshape(n, length, width))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``, MLP 4x wide."""

    def __init__(self, width: int, heads: int, *, quick_gelu: bool = True) -> None:
        super().__init__()
        self.ln_1 = LayerNormFp32(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln_2 = LayerNormFp32(width)
        act: nn.Module = QuickGELU() if quick_gelu else nn.GELU()
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, 4 * width)),
                    ("gelu", act),
                    ("c_proj", nn.Linear(4 * width, width)),
                ]
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TextTransformer(nn.Module):
    """``resblocks``: the stack of causal blocks; input and output ``[N, L, width]``."""

    def __init__(self, width: int, layers: int, heads: int, *, quick_gelu: bool = True) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, quick_gelu=quick_gelu) for _ in range(layers)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.resblocks(x)


class ClipTextEncoder(nn.Module):
    """Tokens ``int64 [N, context_length]`` → text embeddings ``[N, embed_dim]`` (not normalised)."""

    def __init__(self, text: TextConfig = TextConfig()) -> None:
        super().__init__()
        self.text_cfg = text
        self.context_length = text.context_length
        self.token_embedding = nn.Embedding(text.vocab_size, text.width)
        self.positional_embedding = nn.Parameter(torch.empty(text.context_length, text.width))
        self.transformer = TextTransformer(text.width, text.layers, text.heads, quick_gelu=text.quick_gelu)
        self.ln_final = LayerNormFp32(text.width)
        self.text_projection = nn.Parameter(torch.empty(text.width, text.embed_dim))
        self.init_text_parameters()

    @torch.no_grad()
    def init_text_parameters(self) -> None:
        """OpenAI's initialisation (only matters for random-weight tests; checkpoints overwrite it)."""
        cfg = self.text_cfg
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = cfg.width**-0.5 * (2 * cfg.layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=cfg.width**-0.5)
            nn.init.zeros_(block.attn.in_proj_bias)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * cfg.width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=cfg.width**-0.5)

    def encode_text(self, tokens: Tensor) -> Tensor:
        """``tokens``: int64 ``[N, L]`` with L ≤ context_length, end-of-text = largest id per row."""
        if tokens.ndim != 2 or tokens.shape[1] > self.context_length:
            raise ValueError(f"tokens must be [N, <= {self.context_length}], got {tuple(tokens.shape)}")
        eot = tokens.argmax(dim=-1)
        # Attention is causal, so nothing after the last end-of-text token can reach any pooled
        # feature: dropping that padding is exact and saves most of the work on short prompts.
        length = int(eot.max()) + 1 if tokens.numel() else tokens.shape[1]
        tokens = tokens[:, :length]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        x = self.ln_final(self.transformer(x))
        pooled = x[torch.arange(x.shape[0], device=x.device), eot]
        return pooled @ self.text_projection

    def forward(self, tokens: Tensor) -> Tensor:
        return self.encode_text(tokens)

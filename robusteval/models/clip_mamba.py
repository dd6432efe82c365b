"""CLIP-Mamba (Huang, Shen & Yang 2024, arXiv 2404.19394; raytrun/mamba-clip): Mamba image towers trained with CLIP.

Each model is an image tower (VMamba-B/S/T220 from :mod:`robusteval.models.vmamba`, or SiMBA-L
from :mod:`robusteval.models.simba`) with ``image_projection``, OpenAI's CLIP text transformer with
``text_projection``, and ``logit_scale``; scored as a 1000-way classifier through the zero-shot
head (:mod:`robusteval.models.zero_shot`, CLIP-Mamba's 7 ImageNet templates by default).

Released files (``weiquan/mamba-clip`` on Hugging Face) are the training dicts
``{'epoch', 'state_dict', 'optimizer', 'scaler', 'best_acc', 'args'}``: ``state_dict`` holds the
DDP-wrapped model twice, online (``module.visual.*``, ``module.transformer.*``,
``module.token_embedding.weight``, ``module.image_projection``, ...) and EMA (the same names with
``_e``: ``module.visual_e.*``, ``module.transformer_e.*``, ...), plus one ``module.logit_scale``.
Upstream evaluates zero-shot with the EMA copies (``encode_image/encode_text(..., ema=True)``);
the converter here loads those when present. Our module's keys are upstream's online names
without ``module.``, so files saved from it load unchanged.

Eval preprocessing is upstream's ``eval_zeroshot.py``: resize the shorter side to 224 (bilinear),
center crop 224, ImageNet mean/std.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from robusteval.models.clip_text import ClipTextEncoder, TextConfig
from robusteval.models.registry import DataConfig, ModelCard, register_converter, register_model
from robusteval.models.zero_shot import ZERO_SHOT_PARTS, ZeroShotParts, simple_tokenizer
from robusteval.registry import Registry

__all__ = [
    "CLIP_MAMBA_MODELS",
    "EMA_NAMES",
    "ClipImageEncoder",
    "ClipMamba",
    "ClipMambaSpec",
    "build_clip_mamba",
    "select_released_weights",
]

# Upstream (models.py, eval_zeroshot.py): Resize(224) + CenterCrop(224), torchvision's default bilinear.
CLIP_MAMBA_DATA = DataConfig(input_size=224, interpolation="bilinear", crop_pct=1.0)
HF_REPO = "weiquan/mamba-clip"
DEFAULT_TEMPLATES = "clip-mamba7"

# Online name (first key component) → upstream's EMA twin. logit_scale has no twin.
EMA_NAMES: dict[str, str] = {
    "visual": "visual_e",
    "transformer": "transformer_e",
    "token_embedding": "token_embedding_e",
    "positional_embedding": "positional_embedding_e",
    "ln_final": "ln_final_e",
    "image_projection": "image_projection_e",
    "text_projection": "text_projection_e",
}

# Image towers: kind → builder(config, *, scan_backend) returning a module NCHW → [B, vision_width].
TOWERS: Registry[Callable[..., nn.Module]] = Registry("CLIP-Mamba image tower")


@TOWERS.register("vmamba")
def _vmamba_tower(config: Mapping[str, Any], *, scan_backend: str) -> nn.Module:
    from robusteval.models.vmamba import VMamba

    return VMamba(**config, num_classes=0, scan_backend=scan_backend)


@TOWERS.register("simba")
def _simba_tower(config: Mapping[str, Any], *, scan_backend: str) -> nn.Module:
    from robusteval.models.simba import SIMBA_CONFIGS, Simba

    return Simba(SIMBA_CONFIGS[config["size"]], scan_backend=scan_backend)


# mamba-clip's vmamba/configs/vssm1/*.yaml over its config.py defaults (norm "ln", ssm act silu,
# mlp act gelu, patch 4); get_model_config sets NUM_CLASSES = 0, i.e. pooled features, no head.
_VSSM1 = dict(
    ssm_d_state=1,
    ssm_ratio=2.0,
    ssm_dt_rank="auto",
    ssm_conv=3,
    ssm_conv_bias=False,
    mlp_ratio=4.0,
    downsample_version="v3",
    patchembed_version="v2",
    norm_layer="ln",
)


@dataclass(frozen=True)
class ClipMambaSpec:
    """One released CLIP-Mamba model, as data."""

    name: str
    tower: str  # key in TOWERS
    tower_config: dict[str, Any]
    vision_width: int
    upstream: str  # models.py builder and tower config
    hf_filename: str
    sha256: str  # of the released file (Hugging Face LFS pointer)
    paper_zero_shot_top1: float  # ImageNet zero-shot top-1 (%), the paper's / README's table
    tower_params_m: float  # image tower parameters (millions), as built by upstream's code
    text: TextConfig = field(default_factory=TextConfig)


CLIP_MAMBA_MODELS: tuple[ClipMambaSpec, ...] = (
    ClipMambaSpec(
        name="clip_mamba_vmamba_b",
        tower="vmamba",
        tower_config=dict(_VSSM1, dims=128, depths=(2, 2, 15, 2), forward_type="v3noz", drop_path_rate=0.6),
        vision_width=1024,
        upstream="raytrun/mamba-clip models.py CLIP_VMamba_B (vmamba/configs/vssm1/vssm_base_224.yaml)",
        hf_filename="VMamba_B_clip.pt",
        sha256="209a10b80d5a80b2980370401bbcf9c3d0a9035f5a07b1e95ce8558af80d8574",
        paper_zero_shot_top1=38.3,
        tower_params_m=87.5328,
    ),
    ClipMambaSpec(
        name="clip_mamba_vmamba_s",
        tower="vmamba",
        tower_config=dict(_VSSM1, dims=96, depths=(2, 2, 15, 2), forward_type="v3noz", drop_path_rate=0.3),
        vision_width=768,
        upstream="raytrun/mamba-clip models.py CLIP_VMamba_S (vmamba/configs/vssm1/vssm_small_224.yaml)",
        hf_filename="VMamba_S_clip.pt",
        sha256="34d3d3275ce50f02353a1d325be57bddb9985cd3f23fa8468412c65c4e480132",
        paper_zero_shot_top1=40.0,
        tower_params_m=49.378752,
    ),
    ClipMambaSpec(
        name="clip_mamba_vmamba_t220",
        tower="vmamba",
        # Config default forward type "v2": in_proj doubles its width for the z gate, y *= silu(z).
        tower_config=dict(_VSSM1, dims=96, depths=(2, 2, 4, 2), forward_type="v2", drop_path_rate=0.2),
        vision_width=768,
        upstream="raytrun/mamba-clip models.py CLIP_VMamba_T220 (vmamba/configs/vssm1/vssm_tiny_224_0220.yaml)",
        hf_filename="VMamba_T220_clip.pt",
        sha256="d5c6ca16e464df2aa86bd1860dd1cae2508de2354d1c4fa85fd7066dd73b0cc1",
        paper_zero_shot_top1=38.7,
        tower_params_m=31.715904,
    ),
    ClipMambaSpec(
        name="clip_mamba_simba_l",
        tower="simba",
        tower_config={"size": "simba_l"},
        vision_width=512,
        upstream="raytrun/mamba-clip models.py CLIP_Simba_L (simba.py simba_l, num_classes=0, token_label=False)",
        hf_filename="Simba_L_clip.pt",
        sha256="f8a1052b029a3abb586ce92308e31cc8b6e5a95733902ea73bedc2f5b3be7574",
        paper_zero_shot_top1=41.6,
        tower_params_m=65.736512,
    ),
)


class ClipImageEncoder(nn.Module):
    """``visual`` then ``@ projection``: float32 NCHW (card preprocessing) → ``[B, embed_dim]``."""

    def __init__(self, visual: nn.Module, projection: nn.Parameter) -> None:
        super().__init__()
        self.visual = visual
        self.projection = projection

    def forward(self, images: Tensor) -> Tensor:
        feats = self.visual(images)
        return feats @ self.projection.to(feats.dtype)


class ClipMamba(ClipTextEncoder):
    """Image tower + CLIP text transformer in upstream's flat key layout (online names).

    ``encode_image``: float32 NCHW → ``[B, embed_dim]``; ``encode_text``: int64 tokens
    ``[N, 77]`` → ``[N, embed_dim]``; neither is normalised. ``logit_scale`` is log-space.
    """

    def __init__(self, *, visual: nn.Module, vision_width: int, text: TextConfig = TextConfig()) -> None:
        super().__init__(text)
        self.visual = visual
        self.image_projection = nn.Parameter(torch.empty(vision_width, text.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        nn.init.normal_(self.image_projection, std=vision_width**-0.5)

    def encode_image(self, images: Tensor) -> Tensor:
        return self.image_encoder()(images)

    def image_encoder(self) -> ClipImageEncoder:
        """A module sharing this model's tower and projection (what the zero-shot head keeps)."""
        return ClipImageEncoder(self.visual, self.image_projection)

    def set_scan_backend(self, backend: str) -> None:
        self.visual.set_scan_backend(backend)

    def zero_shot_parts(self) -> ZeroShotParts:
        return ZeroShotParts(
            image_encoder=self.image_encoder(),
            encode_text=self.encode_text,
            logit_scale=float(self.logit_scale.detach().exp()),
            tokenize=simple_tokenizer(context_length=self.context_length),
            default_templates=DEFAULT_TEMPLATES,
        )

    def forward(self, images: Tensor) -> Tensor:  # type: ignore[override]
        return self.encode_image(images)


def build_clip_mamba(spec: ClipMambaSpec, *, scan_backend: str = "auto") -> ClipMamba:
    """The CLIP model of ``spec`` with random weights (the factory loads released ones)."""
    tower = TOWERS.get(spec.tower)(spec.tower_config, scan_backend=scan_backend)
    return ClipMamba(visual=tower, vision_width=spec.vision_width, text=spec.text)


def select_released_weights(
    state_dict: Mapping[str, Tensor], *, prefer_ema: bool = True
) -> dict[str, Tensor]:
    """Released ``state_dict`` (``module.`` already stripped or not) → our keys.

    With ``prefer_ema`` and EMA copies present (``visual_e.*``), every ``<name>_e`` tensor replaces
    ``<name>`` and the online ones are dropped; otherwise the ``_e`` tensors are dropped. Keys with
    other first components (``logit_scale``; anything unexpected) pass through for the strict diff.
    """
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    ema_to_online = {v: k for k, v in EMA_NAMES.items()}
    use_ema = prefer_ema and any(k.split(".", 1)[0] == EMA_NAMES["visual"] for k in sd)
    out: dict[str, Tensor] = {}
    for key, tensor in sd.items():
        head, dot, rest = key.partition(".")
        if head in ema_to_online:
            if use_ema:
                out[ema_to_online[head] + dot + rest] = tensor
        elif head in EMA_NAMES:
            if not use_ema:
                out[key] = tensor
        else:
            out[key] = tensor
    return out


@ZERO_SHOT_PARTS.register("clip_mamba")
def _zero_shot_parts(module: ClipMamba, *, card: ModelCard) -> ZeroShotParts:
    return module.zero_shot_parts()


@register_converter("clip_mamba")
def convert_clip_mamba(state_dict: dict[str, Tensor], *, module: nn.Module) -> dict[str, Tensor]:
    """Converter for CLIP-Mamba release files (EMA weights preferred, as upstream evaluates)."""
    return select_released_weights(state_dict, prefer_ema=True)


#: CAM target inside the zero-shot classifier (ZeroShotClassifier → ClipImageEncoder → tower), per
#: tower kind; the VMamba tower's last stage is channel-last. SiMBA (tokens + class token) has none yet.
CAM_LAYERS: dict[str, str] = {"vmamba": "image_encoder.visual.layers.3"}


def _card(spec: ClipMambaSpec) -> ModelCard:
    return ModelCard(
        name=spec.name,
        family="clip_mamba",
        data=CLIP_MAMBA_DATA,
        kind="clip",
        weights_url=f"https://huggingface.co/{HF_REPO}/resolve/main/{spec.hf_filename}",
        hf_hub_id=HF_REPO,
        hf_filename=spec.hf_filename,
        weights_sha256=spec.sha256,
        converter="clip_mamba",
        prefer_ema=True,
        upstream=spec.upstream,
        paper_top1=spec.paper_zero_shot_top1,
        params_m=spec.tower_params_m,
        min_input_size=32,
        cam_layer=CAM_LAYERS.get(spec.tower),
        cam_layout="nhwc" if spec.tower in CAM_LAYERS else None,
        notes=(
            "zero-shot ImageNet classifier (CLIP-Mamba's 7 templates by default); paper_top1 is the "
            "paper's zero-shot ImageNet top-1; params_m counts the image tower"
        ),
    )


for _spec in CLIP_MAMBA_MODELS:
    register_model(_card(_spec))(partial(build_clip_mamba, _spec))

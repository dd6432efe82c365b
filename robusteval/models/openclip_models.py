"""``openclip:<arch>``: any open_clip architecture, with local weights, scored zero-shot.

``robusteval score --models openclip:ViT-B-32-quickgelu --weights PATH`` builds open_clip's model
(``open_clip.create_model(arch)``, random init), loads ``PATH`` through the common checkpoint
loader (open_clip's own key names; ``{'state_dict': {'module.*'}}`` training dicts are unwrapped),
and turns it into a 1000-way classifier with the zero-shot head (OpenAI's 80 templates by default)
and the architecture's own tokenizer. Preprocessing comes from open_clip's config for the
architecture (OpenAI CLIP mean/std, bicubic, shorter side to the input size unless the config
says otherwise). There are no default weights: open_clip tags need a download, so pass a file.

open_clip is imported only when such a name is used (``pip install robusteval[clip]``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import Tensor, nn

from robusteval.errors import UserError
from robusteval.models.registry import MODELS, DataConfig, ModelCard, register_model, register_prefix
from robusteval.models.zero_shot import ZERO_SHOT_PARTS, ZeroShotParts

PREFIX = "openclip:"
DEFAULT_TEMPLATES = "openai80"
# open_clip PreprocessCfg.resize_mode → our DataConfig.crop_mode (crop_pct 1: resize to the input size).
_RESIZE_MODES: dict[str, str] = {"shortest": "center", "squash": "squash", "longest": "border"}


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError:
        raise UserError("openclip: models need open_clip", hint="pip install robusteval[clip]") from None
    return open_clip


def data_config(open_clip: Any, arch: str, model_cfg: dict[str, Any]) -> DataConfig:
    """open_clip's preprocessing for ``arch`` (defaults overlaid by the config's ``preprocess_cfg``)."""
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg

    pp = {**asdict(PreprocessCfg()), **model_cfg.get("preprocess_cfg", {})}
    size = model_cfg.get("vision_cfg", {}).get("image_size", pp["size"])
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise UserError(
                f"openclip:{arch} takes non-square {tuple(size)} inputs, which scoring does not support"
            )
        size = size[0]
    mode = _RESIZE_MODES.get(pp["resize_mode"])
    if mode is None:
        raise UserError(f"openclip:{arch}: open_clip resize_mode {pp['resize_mode']!r} is not supported")
    return DataConfig(
        input_size=int(size),
        interpolation=str(pp["interpolation"]),
        crop_pct=1.0,
        mean=tuple(float(v) for v in pp["mean"]),
        std=tuple(float(v) for v in pp["std"]),
        crop_mode=mode,
    )


def _build(arch: str, **_: Any) -> nn.Module:
    model = _open_clip().create_model(arch, pretrained=None)
    return model.eval()


@register_prefix(PREFIX)
def register_openclip(name: str) -> None:
    """Register ``openclip:<arch>`` for an architecture open_clip knows (its config lists it)."""
    if name in MODELS:
        return
    arch = name.removeprefix(PREFIX)
    open_clip = _open_clip()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise UserError(
            f"open_clip has no architecture {arch!r}",
            hint='see python -c "import open_clip; print(open_clip.list_models())"',
        )
    data = data_config(open_clip, arch, cfg)
    card = ModelCard(
        name=name,
        family="openclip",
        data=data,
        kind="clip",
        upstream=f"open_clip {open_clip.__version__} create_model({arch!r})",
        min_input_size=data.input_size,  # ViTs take exactly their configured size
        notes="zero-shot ImageNet classifier from local weights (--weights PATH); OpenAI's 80 templates",
    )
    register_model(card)(partial(_build, arch))


class _EncodeImage(nn.Module):
    """open_clip's ``encode_image`` as a module (NCHW → ``[B, embed_dim]``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.encode_image(images)


@ZERO_SHOT_PARTS.register("openclip")
def _zero_shot_parts(model: nn.Module, *, card: ModelCard) -> ZeroShotParts:
    tokenizer = _open_clip().get_tokenizer(card.name.removeprefix(PREFIX))
    return ZeroShotParts(
        image_encoder=_EncodeImage(model),
        encode_text=model.encode_text,
        logit_scale=float(model.logit_scale.detach().exp()),
        tokenize=lambda texts: tokenizer(list(texts)),
        default_templates=DEFAULT_TEMPLATES,
    )

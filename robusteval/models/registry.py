"""Model registry: one decorated builder per name, its pretrained cfg and preprocessing as data.

    @register_model(ModelCard(name="vmamba_b", family="vmamba", data=DataConfig(...), ...))
    def vmamba_b(*, scan_backend: str = "auto") -> nn.Module: ...

:func:`create_model` builds, loads weights (``weights=None`` → the card's default source), and
returns a :class:`LoadedModel` whose ``card.data`` says how the model wants its pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from robusteval.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class DataConfig:
    """How a model wants its input: square ``input_size`` px, resize to input/crop_pct, center crop.

    ``mean``/``std`` are per-channel in [0, 1] RGB units; ``interpolation`` is a torchvision name.
    """

    input_size: int = 224
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelCard:
    """Everything known about a registered name, as data (timm's pretrained cfg)."""

    name: str
    family: str
    data: DataConfig = field(default_factory=DataConfig)
    num_classes: int = 1000
    kind: str = "classifier"  # "classifier" or "clip" (zero-shot head built from text)
    weights_url: str | None = None  # official release file, downloaded when online
    hf_hub_id: str | None = None
    upstream: str = ""  # which upstream config this name pins
    paper_top1: float | None = None
    params_m: float | None = None  # parameter count upstream reports, millions
    notes: str = ""


MODELS: Registry = Registry("model", list_command="robusteval list models")


def register_model(card: ModelCard):
    """Decorator: register a builder ``fn(**kwargs) -> nn.Module`` under ``card.name``."""
    return MODELS.register(card.name, card=card)

"""Model registry: one decorated builder per name, its pretrained cfg and preprocessing as data.

    @register_model(ModelCard(name="vmamba_b", family="vmamba", data=DataConfig(...), ...))
    def vmamba_b(*, scan_backend: str = "auto") -> nn.Module: ...

:func:`robusteval.models.create_model` builds, loads weights (``weights="default"`` → the card's
default source), and returns a ``LoadedModel`` whose ``card.data`` says how the model wants its pixels.

Besides :data:`MODELS`, three small registries let a family plug into loading without touching the
factory (all keyed by data that lives on the card):

- :data:`CONVERTERS` (``card.converter``): ``fn(state_dict, *, module) -> state_dict`` turning an
  official release layout into the module's own keys; only called when the file does not fit as is.
- :data:`PREFIXES`: dynamic names such as ``timm:<any timm name>``; ``fn(name)`` registers ``name``
  in :data:`MODELS` on first use.
- :data:`AFTER_LOAD` (``card.kind``): ``fn(module, *, card, weights, device) -> nn.Module`` run once
  weights are in (``weights`` is ``{"source", "sha256"}``), e.g. to build a zero-shot head from the
  now loaded text tower, cached by the weights' sha256.

This module imports no torch so that listing names stays cheap.
"""

from __future__ import annotations

import math
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

    ``mean``/``std`` are per-channel in [0, 1] RGB units; ``interpolation`` is a torchvision name
    (``"bilinear"``, ``"bicubic"``); ``crop_mode`` is timm's (``"center"``, ``"squash"``, ``"border"``).
    """

    input_size: int = 224
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_mode: str = "center"

    @property
    def resize_size(self) -> int:
        """Shorter side in px before the center crop: ``floor(input_size / crop_pct)`` (timm's rule)."""
        return math.floor(self.input_size / self.crop_pct)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelCard:
    """Everything known about a registered name, as data (timm's pretrained cfg).

    Default weights are looked for in this order: ``weights_package`` (a file shipped inside an
    installed Python package, ``"<package>/<path inside it>"``), the Hugging Face hub
    (``hf_hub_id`` + ``hf_filename``), then ``weights_url``; local copies and caches before downloads.
    """

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
    hf_filename: str = "model.safetensors"
    weights_package: str | None = None  # "<importable package>/<relative path to the file>"
    weights_sha256: str | None = None  # expected sha256 of the default weights file, when pinned
    converter: str | None = None  # name in CONVERTERS for official layouts that differ from the module
    prefer_ema: bool = False  # when a training dict holds both, load the EMA weights
    min_input_size: int | None = None  # smallest square input the architecture takes (fast tests)
    # Class activation maps (robusteval explain): the module whose output the CAM methods weigh, as
    # a dotted path inside the built module, and that output's layout: "nchw" (B, C, H, W), "nhwc"
    # (B, H, W, C) or "tokens" (B, N, C; leading class tokens dropped, N made square). None: derived
    # from timm's ``feature_info`` (last stage) and the output's shape, when the module has it.
    cam_layer: str | None = None
    cam_layout: str | None = None


MODELS: Registry = Registry("model", list_command="robusteval list models")
CONVERTERS: Registry = Registry("checkpoint converter")
PREFIXES: Registry = Registry("model name prefix", list_command="robusteval list models")
AFTER_LOAD: Registry = Registry("after-load hook")


def register_model(card: ModelCard):
    """Decorator: register a builder ``fn(**kwargs) -> nn.Module`` under ``card.name``.

    A builder that takes a ``scan_backend`` keyword receives create_model's ``scan_backend``.
    """
    return MODELS.register(card.name, card=card)


def register_converter(name: str):
    """Decorator: ``fn(state_dict: dict[str, Tensor], *, module) -> dict[str, Tensor]`` named by cards."""
    return CONVERTERS.register(name)


def register_prefix(prefix: str):
    """Decorator: ``fn(name: str) -> None`` registers a dynamic ``name`` (starting with ``prefix``)."""
    return PREFIXES.register(prefix)


def register_after_load(kind: str):
    """Decorator: ``fn(module, *, card, weights, device) -> nn.Module`` run for cards of this ``kind``."""
    return AFTER_LOAD.register(kind)


def card_of(name: str) -> ModelCard:
    """The card of an already registered name (see ``robusteval.models.resolve`` for lazy lookup)."""
    return MODELS.get(name).meta["card"]

"""Where class activation maps are taken: the card's ``cam_layer`` / ``cam_layout``, as data.

A layout names how the target module's output is laid out; :data:`LAYOUTS` turns each into the
``(B, C, H, W)`` tensor the CAM methods weigh (grad-cam's ``reshape_transform``). A model without a
card entry (``timm:<name>``) uses its timm ``feature_info`` (last stage) and a layout read off the
output's shape against that stage's channel count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robusteval.errors import UserError


def _nchw(t: Any) -> Any:
    return t


def _nhwc(t: Any) -> Any:
    return t.permute(0, 3, 1, 2)


def _tokens(t: Any) -> Any:
    """``(B, N, C)`` → ``(B, C, s, s)`` with ``s = floor(sqrt(N))``; the leading ``N - s²`` (class) tokens dropped."""
    side = math.isqrt(t.shape[1])
    grid = t[:, t.shape[1] - side * side :]
    return grid.reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)


#: layout name → ``fn(output) -> (B, C, H, W)`` view (grad-cam's reshape_transform).
LAYOUTS: dict[str, Callable[[Any], Any]] = {"nchw": _nchw, "nhwc": _nhwc, "tokens": _tokens}


@dataclass(frozen=True)
class CamTarget:
    """The module CAM methods hook (``path`` inside the model) and how its output is laid out."""

    path: str
    layout: str
    module: Any
    source: str  # "card" or "timm feature_info"

    @property
    def reshape(self) -> Callable[[Any], Any] | None:
        fn = LAYOUTS[self.layout]
        return None if fn is _nchw else fn


def _layout_from_shape(shape: tuple[int, ...], channels: int | None) -> str:
    if len(shape) == 3:
        return "tokens"
    if len(shape) == 4 and channels is not None and shape[-1] == channels and shape[1] != channels:
        return "nhwc"
    if len(shape) == 4:
        return "nchw"
    raise UserError(f"the CAM target's output has shape {tuple(shape)}; expected 3-D tokens or a 4-D map")


def cam_target(module: Any, card: Any, *, probe: Any | None = None) -> CamTarget:
    """The CAM target of ``module`` (built from ``card``); ``probe`` (a float NCHW batch) reads the layout.

    Raises ``UserError`` when neither the card nor timm's ``feature_info`` names a layer.
    """
    path, layout, source = card.cam_layer, card.cam_layout, "card"
    channels = None
    if path is None:
        info = getattr(module, "feature_info", None)
        last = info[-1] if info else None
        if isinstance(last, dict) and last.get("module"):
            path, channels, source = str(last["module"]), last.get("num_chs"), "timm feature_info"
    if path is None:
        raise UserError(
            f"model {card.name} has no CAM layer (card field cam_layer) and no timm feature_info",
            hint="use --method ig or occlusion for it, or add cam_layer/cam_layout to its card",
        )
    try:
        target = module.get_submodule(path)
    except AttributeError:
        raise UserError(f"model {card.name}: cam_layer {path!r} is not a module of it") from None
    if layout is None:
        if probe is None:
            raise UserError(f"model {card.name}: cam_layout unknown and no probe input to read it from")
        layout = _layout_from_shape(_output_shape(module, target, probe), channels)
    if layout not in LAYOUTS:
        raise UserError(f"model {card.name}: cam_layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    return CamTarget(path=path, layout=layout, module=target, source=source)


def _output_shape(module: Any, target: Any, probe: Any) -> tuple[int, ...]:
    import torch

    seen: list[tuple[int, ...]] = []
    handle = target.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        with torch.no_grad():
            module(probe[:1])
    finally:
        handle.remove()
    return seen[0]

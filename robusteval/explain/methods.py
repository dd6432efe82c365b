"""Attribution methods, each one decorated function over a library (pytorch-grad-cam, captum).

Every method has the same contract::

    @register_method("gradcam", lib="grad-cam", needs_layer=True)
    def gradcam(model, x, *, targets, layer):
        '''model: eval-mode classifier, float NCHW → logits; x: float32 [B, 3, H, W] normalised as
        the model's card says; targets: one class index per image; layer: the CamTarget (None for
        methods that need none). Returns float32 [B, H, W], >= 0, each map scaled to max 1.'''

The libraries are imported inside the functions (the ``explain`` extra: ``pip install robusteval[explain]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from robusteval.errors import UserError
from robusteval.registry import Registry

MethodFn = Callable[..., np.ndarray]
METHODS: Registry[MethodFn] = Registry("attribution method", list_command="robusteval explain --help")

#: Integrated gradients: Riemann steps from the baseline (0 in normalised units = the mean colour).
IG_STEPS = 32
#: Occlusion: a square patch of the mean colour slid over the image (px, at the model's input size).
OCCLUSION_WINDOW, OCCLUSION_STRIDE = 32, 16


def register_method(name: str, *, lib: str, needs_layer: bool):
    """Decorator: ``fn(model, x, *, targets, layer) -> float32 [B, H, W]`` (see the module docstring)."""
    return METHODS.register(name, lib=lib, needs_layer=needs_layer)


def _need(module: str, lib: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"attribution methods of {lib} need the package {lib!r}", hint="pip install robusteval[explain]"
        ) from None


def unit_max(maps: np.ndarray) -> np.ndarray:
    """Clip at 0 and scale each ``[H, W]`` map to max 1 (an all-zero map stays 0)."""
    maps = np.clip(np.asarray(maps, dtype=np.float32), 0, None)
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return maps / np.where(peak > 0, peak, 1.0)[:, None, None]


def _cam(cls_name: str):
    def run(model: Any, x: Any, *, targets: list[int], layer: Any) -> np.ndarray:
        cams = _need("pytorch_grad_cam", "grad-cam")
        targets_mod = _need("pytorch_grad_cam.utils.model_targets", "grad-cam")
        with getattr(cams, cls_name)(
            model=model, target_layers=[layer.module], reshape_transform=layer.reshape
        ) as cam:
            out = cam(input_tensor=x, targets=[targets_mod.ClassifierOutputTarget(int(t)) for t in targets])
        return unit_max(out)

    return run


# (name, pytorch-grad-cam class): one data row per CAM method.
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "hirescam": "HiResCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "eigencam": "EigenCAM",  # class-agnostic: the true- and predicted-class maps coincide
    "layercam": "LayerCAM",
}
for _name, _cls in CAM_METHODS.items():
    register_method(_name, lib="grad-cam", needs_layer=True)(_cam(_cls))


@register_method("ig", lib="captum", needs_layer=False)
def integrated_gradients(model: Any, x: Any, *, targets: list[int], layer: Any = None) -> np.ndarray:
    """captum IntegratedGradients from the mean-colour baseline; |attribution| summed over channels."""
    import torch

    attr = _need("captum.attr", "captum")
    ig = attr.IntegratedGradients(model)
    out = ig.attribute(
        x, baselines=torch.zeros_like(x), target=list(map(int, targets)), n_steps=IG_STEPS,
        internal_batch_size=max(1, len(targets)) * 8,
    )  # fmt: skip
    return unit_max(out.detach().abs().sum(dim=1).cpu().numpy())


@register_method("occlusion", lib="captum", needs_layer=False)
def occlusion(model: Any, x: Any, *, targets: list[int], layer: Any = None) -> np.ndarray:
    """captum Occlusion: logit drop when a mean-colour square covers each place (positive part)."""
    attr = _need("captum.attr", "captum")
    occ = attr.Occlusion(model)
    out = occ.attribute(
        x, target=list(map(int, targets)), baselines=0.0,
        sliding_window_shapes=(3, OCCLUSION_WINDOW, OCCLUSION_WINDOW),
        strides=(3, OCCLUSION_STRIDE, OCCLUSION_STRIDE), perturbations_per_eval=16,
    )  # fmt: skip
    return unit_max(out.detach().sum(dim=1).cpu().numpy())


def compute_maps(
    name: str, model: Any, x: Any, *, targets: list[int], layer: Any, batch_size: int = 16
) -> np.ndarray:
    """Method ``name`` over ``x`` in chunks of ``batch_size`` images → float32 [B, H, W] in 0..1."""
    entry = METHODS.get(name)
    if entry.meta["needs_layer"] and layer is None:
        raise UserError(f"method {name} needs a CAM layer", hint="use --method ig or occlusion")
    parts = [
        entry.fn(model, x[i : i + batch_size], targets=targets[i : i + batch_size], layer=layer)
        for i in range(0, len(targets), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, *x.shape[-2:]), np.float32)

"""The 21 study transformations as imgaug augmenters (suite ``study21``).

Each op is ``op(image, *, seed, **params) -> image`` on uint8 HWC RGB, registered in
:data:`robusteval.corrupt.reference.OPS` as ``iaa_<set name>`` (the prefix keeps them apart from the
ImageNet-C ops, which reuse names such as ``jpeg_compression`` and ``gaussian_blur``).

Params are the plain data of ``transforms/study21.toml`` and map onto the imgaug constructor's
keyword arguments of the same name. A two-element list ``[lo, hi]`` becomes imgaug's tuple
``(lo, hi)``, i.e. a value drawn uniformly from that range per image; scalars are fixed values;
tables become dicts (``translate_percent = {x = [..], y = [..]}``).

Determinism: augmenters are cached per (op, params) in-process, and every call re-seeds the
augmenter from ``seed`` (``seed_``) with imgaug's sample prefetching off, so the output depends
only on (image, seed, params), never on what ran before in the process. The cached augmenters
are re-seeded in place, so ops are not thread-safe: the corrupt stage parallelises over processes.

``Crop`` and ``CropAndPad`` of pyimgaug 0.5 fail on NumPy 2 (a scalar conversion TypeError in
``_prevent_zero_size_after_crop_``, with ``percent=`` and ``px=`` alike), so :func:`crop` and
:func:`crop_and_pad` reproduce their semantics here: per-side fractions drawn independently
from ``U(lo, hi)``, rounded to pixels as imgaug does, crop then constant pad, then resized back
to the input size with imgaug's cubic ``imresize_single_image`` (``keep_size=True``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from robusteval.corrupt.reference import OPS


@dataclass(frozen=True)
class ImgaugOp:
    """One study set's imgaug augmenter. ``random``: whether the seed changes the output."""

    augmenter: str
    random: bool
    params: str


# Set name -> augmenter. ``params`` documents the TOML keys (units as imgaug defines them).
STUDY_OPS: dict[str, ImgaugOp] = {
    "additive_gaussian_noise": ImgaugOp(
        "AdditiveGaussianNoise", True, "scale: noise std in uint8 units (0..255); per_channel: bool"
    ),
    "affine": ImgaugOp(
        "Affine",
        True,
        "rotate: degrees; shear: degrees; scale: zoom factor; translate_percent: fraction of size;"
        " mode/cval: fill of uncovered pixels (default constant black)",
    ),
    "hue_saturation": ImgaugOp(
        "AddToHueAndSaturation",
        True,
        "value_hue: added hue in imgaug units (-255..255 spans the full hue circle);"
        " value_saturation: added saturation (0..255 scale)",
    ),
    "cutout": ImgaugOp(
        "Cutout",
        True,
        "nb_iterations: squares per image; size: side as fraction of the image side; cval: fill 0..255",
    ),
    "dropout": ImgaugOp("Dropout", True, "p: fraction of pixels set to 0"),
    "edge_detect": ImgaugOp("EdgeDetect", False, "alpha: blend of the edge image over the input, 0..1"),
    "emboss": ImgaugOp("Emboss", False, "alpha: blend 0..1; strength: emboss kernel strength"),
    "piecewise_affine": ImgaugOp(
        "PiecewiseAffine", True, "scale: std of control-point jitter as fraction of the image size"
    ),
    "salt": ImgaugOp("Salt", True, "p: fraction of pixels replaced by salt (white-ish)"),
    "fast_snowy_landscape": ImgaugOp(
        "FastSnowyLandscape",
        False,
        "lightness_threshold: HLS lightness (0..255) below which pixels are brightened;"
        " lightness_multiplier: brightening factor",
    ),
    "fliplr": ImgaugOp("Fliplr", False, "p: flip probability (1.0: always)"),
    "gaussian_blur": ImgaugOp("GaussianBlur", False, "sigma: Gaussian std in pixels"),
    "grayscale": ImgaugOp("Grayscale", False, "alpha: blend towards greyscale, 0..1"),
    "invert": ImgaugOp("Invert", False, "p: inversion probability (1.0: always)"),
    "linear_contrast": ImgaugOp("LinearContrast", False, "alpha: contrast factor around 128 (1: identity)"),
    "multiply": ImgaugOp("Multiply", False, "mul: brightness factor (1: identity)"),
    "multiply_elementwise": ImgaugOp(
        "MultiplyElementwise", True, "mul: per-pixel factor range; per_channel: bool"
    ),
    "perspective": ImgaugOp(
        "PerspectiveTransform", True, "scale: std of corner jitter as fraction of the image size"
    ),
    "jpeg_compression": ImgaugOp(
        "JpegCompression", False, "compression: 0..100, higher is stronger (quality = 100 - compression)"
    ),
}


def _imgaug_arg(value: Any) -> Any:
    """TOML plain data -> imgaug argument: ``[lo, hi]`` -> ``(lo, hi)`` (uniform range)."""
    if isinstance(value, list):
        if len(value) != 2 or not all(isinstance(v, int | float) for v in value):
            raise ValueError(f"a range must be [lo, hi] numbers, got {value!r}")
        return (value[0], value[1])
    if isinstance(value, dict):
        return {k: _imgaug_arg(v) for k, v in value.items()}
    return value


@lru_cache(maxsize=256)
def _augmenter(augmenter: str, params_json: str) -> Any:
    import imgaug.augmenters as iaa
    import imgaug.parameters as iap

    kwargs = {k: _imgaug_arg(v) for k, v in json.loads(params_json).items()}
    # Built without prefetchers: a prefetcher would hand out samples drawn in earlier calls.
    with iap.no_prefetching():
        return getattr(iaa, augmenter)(**kwargs)


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 HWC RGB, got {image.dtype} {image.shape}")


def run_imgaug(augmenter: str, image: np.ndarray, *, seed: int, params: dict[str, Any]) -> np.ndarray:
    """Run imgaug ``augmenter`` built from ``params`` on uint8 HWC ``image`` with random state ``seed``."""
    import imgaug.parameters as iap

    _check_image(image)
    aug = _augmenter(augmenter, json.dumps(params, sort_keys=True))
    with iap.no_prefetching(), warnings.catch_warnings():
        # scikit-image (PiecewiseAffine) and imageio (JpegCompression) deprecation chatter; not actionable.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        aug.seed_(int(seed))
        out = aug(image=image)
    return np.ascontiguousarray(out, dtype=np.uint8)


def _make_op(name: str, spec: ImgaugOp):
    def op(image: np.ndarray, *, seed: int, **params: Any) -> np.ndarray:
        return run_imgaug(spec.augmenter, image, seed=seed, params=params)

    op.__name__ = f"iaa_{name}"
    op.__doc__ = f"imgaug {spec.augmenter} on uint8 HWC RGB. Params: {spec.params}."
    return op


for _name, _spec in STUDY_OPS.items():
    OPS.register(f"iaa_{_name}", backend="imgaug", random=_spec.random, augmenter=_spec.augmenter)(
        _make_op(_name, _spec)
    )


# --- Crop / CropAndPad, reproduced (pyimgaug 0.5's own fail on NumPy 2) -------------------------


def _fractions(seed: int, percent: float | list[float]) -> np.ndarray:
    """Per-side fractions (top, right, bottom, left), each drawn from ``U(lo, hi)``."""
    if isinstance(percent, list):
        lo, hi = _imgaug_arg(percent)
        return np.random.default_rng(int(seed)).uniform(lo, hi, size=4)
    return np.full(4, float(percent))


def _side_pixels(shape: tuple[int, ...], fractions: np.ndarray) -> np.ndarray:
    """Fractions -> signed pixels as imgaug rounds them (float32 size x fraction, round half even)."""
    h, w = np.float32(shape[0]), np.float32(shape[1])
    sizes = np.array([h, w, h, w], dtype=np.float32)
    return np.round(sizes * fractions.astype(np.float32)).astype(np.int64)


def _keep_nonempty(size: int, start: int, end: int) -> tuple[int, int]:
    """imgaug's guard: give back rows/cols, start side first, so at least 1 px remains."""
    remaining = size - (start + end)
    if remaining >= 1:
        return start, end
    regain = abs(remaining) + 1
    return start - int(np.ceil(regain / 2)), end - int(np.floor(regain / 2))


def crop_and_pad_px(
    image: np.ndarray, px: np.ndarray, *, pad_mode: str = "constant", pad_cval: int = 0
) -> np.ndarray:
    """imgaug CropAndPad(px=..., keep_size=True) for fixed signed per-side pixels (t, r, b, l).

    Negative values crop, positive values pad (``pad_mode`` as in ``numpy.pad``, ``pad_cval``
    0..255); the result is resized back to the input size with imgaug's cubic interpolation.
    """
    import imgaug as ia

    h, w = image.shape[:2]
    crop = np.maximum(-px, 0)
    pad = np.maximum(px, 0)
    top, bottom = _keep_nonempty(h, int(crop[0]), int(crop[2]))
    left, right = _keep_nonempty(w, int(crop[3]), int(crop[1]))
    out = image[top : h - bottom, left : w - right]
    if pad.any():
        widths = ((int(pad[0]), int(pad[2])), (int(pad[3]), int(pad[1])), (0, 0))
        kw = {"constant_values": pad_cval} if pad_mode == "constant" else {}
        out = np.pad(out, widths, mode=pad_mode, **kw)
    if out.shape[:2] != (h, w):
        out = ia.imresize_single_image(out, (h, w))
    return np.ascontiguousarray(out, dtype=np.uint8)


@OPS.register("iaa_crop", backend="imgaug", random=True, augmenter="Crop")
def crop(image: np.ndarray, *, seed: int, percent: float | list[float]) -> np.ndarray:
    """imgaug ``Crop(percent=(lo, hi), keep_size=True)`` on uint8 HWC RGB.

    ``percent``: fraction of the height (top/bottom) or width (left/right) cut from each side,
    drawn per side from ``U(lo, hi)``; the crop is resized back to the input size (cubic).
    """
    _check_image(image)
    return crop_and_pad_px(image, -_side_pixels(image.shape, _fractions(seed, percent)))


@OPS.register("iaa_crop_and_pad", backend="imgaug", random=True, augmenter="CropAndPad")
def crop_and_pad(
    image: np.ndarray,
    *,
    seed: int,
    percent: float | list[float],
    pad_mode: str = "constant",
    pad_cval: int = 0,
) -> np.ndarray:
    """imgaug ``CropAndPad(percent=(lo, hi), keep_size=True)`` on uint8 HWC RGB.

    ``percent``: per-side fraction drawn from ``U(lo, hi)``; negative crops, positive pads with
    ``pad_cval`` (0..255, constant mode); the result is resized back to the input size (cubic).
    """
    _check_image(image)
    px = _side_pixels(image.shape, _fractions(seed, percent))
    return crop_and_pad_px(image, px, pad_mode=pad_mode, pad_cval=pad_cval)

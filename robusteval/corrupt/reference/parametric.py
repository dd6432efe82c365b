"""model-vs-human's parametric image manipulations (suites ``frequency`` and ``ood-parametric``).

Formulas follow Geirhos et al.'s ``image_manipulation.py`` (the code behind model-vs-human's
parametric datasets): images are floats in [0, 1]; grey = 0.2125 R + 0.7154 G + 0.0721 B
(scikit-image's ``rgb2gray``); background grey 0.4423 (their mean pixel value); every result is
clipped to [0, 1]. Greyscale results are replicated to three channels.

Floats become uint8 by truncation, ``(255 x).astype(uint8)`` of the clipped value, as upstream's
``save_img`` does (robusteval rounded to nearest before; every op's spec hash carries the
``uint8-truncate`` variant since, so older records are told apart).

Power equalisation and false colour use upstream's measured data, shipped unchanged as package
data with its CC BY 4.0 licence (``robusteval/assets/generalisation_humans_dnns/``): the stimuli's
mean amplitude spectrum and the monitor's measured gamma curve.

Every op takes the level's ``value`` (the number reports plot, named by the set's
``level_label``) plus any fixed settings of the set. Ops are ``op(image, *, seed, **params)`` on
uint8 HWC RGB; only uniform noise and phase scrambling use ``seed``
(``numpy.random.RandomState(seed)``).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from robusteval.corrupt.reference import OPS

#: in every op's spec hash: results are truncated to uint8 as upstream's save_img
QUANTISE = "uint8-truncate"
GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])
BG_GREY = 0.4423


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB -> float64 HWC in [0, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 HWC RGB, got {image.dtype} {image.shape}")
    return image.astype(np.float64) / 255.0


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB -> float64 HW luminance in [0, 1] (rgb2gray weights)."""
    return to_float(image) @ GREY_WEIGHTS


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (HW grey or HWC RGB) -> uint8 HWC RGB: clip, ``(255 x).astype(uint8)``
    (truncation, as upstream's ``save_img``)."""
    out = (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def _gaussian(grey: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(grey, sigma, mode="constant", cval=BG_GREY)


def _grey_contrast(grey: np.ndarray, contrast: float) -> np.ndarray:
    if not 0.0 <= contrast <= 1.0:
        raise ValueError(f"contrast must be in [0, 1], got {contrast}")
    return (1.0 - contrast) / 2.0 + grey * contrast


@OPS.register("mvh_low_pass", random=False, variant=QUANTISE)
def low_pass(image: np.ndarray, *, seed: int, value: float) -> np.ndarray:
    """Grey image blurred by a Gaussian of std ``value`` px (constant border 0.4423); 0: grey only."""
    return to_uint8(_gaussian(to_grey(image), float(value)))


@OPS.register("mvh_high_pass", random=False, variant=QUANTISE)
def high_pass(image: np.ndarray, *, seed: int, value: float | str) -> np.ndarray:
    """Grey minus its Gaussian low-pass (std ``value`` px), re-centred on mean 0.4423.

    ``value = "inf"`` (or ``math.inf``) is the unfiltered grey image (their "inf" condition). The re-centring adds
    ``0.4423 - mean(grey - lowpass)``, so the result's mean is 0.4423 before clipping.
    """
    grey = to_grey(image)
    if math.isinf(float(value)):
        return to_uint8(grey)
    detail = grey - _gaussian(grey, float(value))
    return to_uint8(detail + (BG_GREY - detail.mean()))


@OPS.register("mvh_contrast", random=False, variant=QUANTISE)
def contrast(image: np.ndarray, *, seed: int, value: float) -> np.ndarray:
    """Grey image at contrast ``value`` in [0, 1]: ``(1 - c) / 2 + c * grey``."""
    return to_uint8(_grey_contrast(to_grey(image), float(value)))


@OPS.register("mvh_uniform_noise", random=True, variant=QUANTISE)
def uniform_noise(image: np.ndarray, *, seed: int, value: float, contrast: float = 0.3) -> np.ndarray:
    """Grey image at ``contrast``, plus per-pixel noise ``U(-value, value)`` (seeded), clipped."""
    grey = _grey_contrast(to_grey(image), float(contrast))
    width = float(value)
    noise = np.random.RandomState(int(seed)).uniform(low=-width, high=width, size=grey.shape)
    return to_uint8(grey + noise)


def _fft_centred(grey: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(grey))


def _ifft_centred(spectrum: np.ndarray) -> np.ndarray:
    return np.fft.ifft2(np.fft.ifftshift(spectrum)).real


@OPS.register("mvh_phase_scrambling", random=True, variant=QUANTISE)
def phase_scrambling(image: np.ndarray, *, seed: int, value: float) -> np.ndarray:
    """Grey image with Fourier phases shifted by ``U(-value, value)`` degrees (seeded).

    As upstream: on the centred spectrum's ``[1:, 1:]`` block (the point-symmetric part for even
    sizes), flattened, the first half gets ``+shift[i]`` and the part after the centre gets
    ``-shift[i]`` in the same order (upstream does not mirror the shifts onto the conjugate
    partners); the real part of the inverse transform is kept and clipped.
    """
    grey = to_grey(image)
    h, w = grey.shape
    length = (h - 1) * (w - 1)
    rng = np.random.RandomState(int(seed))
    shifts = (rng.random_sample(length // 2) - 0.5) * 2.0 * float(value) / 180.0 * np.pi

    spectrum = _fft_centred(grey)
    amplitude, phase = np.abs(spectrum), np.angle(spectrum)
    block = phase[1:, 1:].flatten()
    block[: length // 2] += shifts
    block[length // 2 + 1 :] -= shifts
    phase[1:, 1:] = block.reshape(h - 1, w - 1)
    return to_uint8(_ifft_centred(amplitude * np.exp(1j * phase)))


@cache
def measured(name: str) -> np.ndarray:
    """Upstream's measured array ``name`` (``mean_power_spectrum_grey`` or ``x_gamma_function``),
    float64, read-only, from the package data (see its NOTICE.md)."""
    import io
    from importlib import resources

    blob = (
        resources.files("robusteval").joinpath(f"assets/generalisation_humans_dnns/{name}.npy").read_bytes()
    )
    arr = np.load(io.BytesIO(blob), allow_pickle=False)
    arr.setflags(write=False)
    return arr


@OPS.register("mvh_power_equalisation", random=False, variant=QUANTISE)
def power_equalisation(image: np.ndarray, *, seed: int, value: int) -> np.ndarray:
    """``value`` 0: grey image; 1: the grey image's Fourier phases with upstream's measured mean
    amplitude spectrum (centred, 224x224), real part of the inverse transform, clipped.

    Only for 224x224 images, the size of the measured spectrum (the corrupt stage's crops).
    """
    grey = to_grey(image)
    if int(value) == 0:
        return to_uint8(grey)
    spectrum = measured("mean_power_spectrum_grey")
    if grey.shape != spectrum.shape:
        raise ValueError(
            f"power equalisation needs {spectrum.shape} images (the measured spectrum's size), got {grey.shape}"
        )
    phase = np.angle(_fft_centred(grey))
    return to_uint8(_ifft_centred(spectrum * np.exp(1j * phase)))


@OPS.register("mvh_rotation", random=False, variant=QUANTISE)
def rotation(image: np.ndarray, *, seed: int, value: int) -> np.ndarray:
    """Grey image rotated counter-clockwise by ``value`` in {0, 90, 180, 270} degrees."""
    degrees = int(value)
    if degrees % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {value}")
    grey = to_grey(image)
    if degrees % 180 and grey.shape[0] != grey.shape[1]:
        raise ValueError(f"{degrees} degree rotation needs a square image, got {grey.shape}")
    return to_uint8(np.rot90(grey, k=degrees // 90))


# Cone fundamentals per monitor primary and the DKL opponent transform, from upstream
# (``get_opponent_colours``); the white point is M @ (0.5, 0.5, 0.5).
_CONES = np.array(
    [
        [0.1619982647, 0.208049264, 0.0389347448],
        [0.0330275785, 0.2496504557, 0.0618343518],
        [0.0015524055, 0.0198861001, 0.1890224274],
    ]
)
_CONE_WHITE = np.array([0.20449114, 0.17225619, 0.10523047])
_DKL = np.array(
    [
        [9.27590805, 9.27590805, 0.0],
        [7.86421647, -9.33587662, 0.0],
        [-3.39709047, -3.39709047, 12.16230246],
    ]
)


def _nearest_index(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of increasing ``table`` (ties: the lower index, as argmin)."""
    hi = np.clip(np.searchsorted(table, values), 1, len(table) - 1)
    lo = hi - 1
    take_lo = (values - table[lo]) <= (table[hi] - values)
    return np.where(take_lo, lo, hi)


@OPS.register("mvh_false_colour", random=False, variant=QUANTISE)
def false_colour(image: np.ndarray, *, seed: int, value: int) -> np.ndarray:
    """``value`` 0: the colour image; 1: opponent colours (L-M and S-(L+M) axes negated in DKL).

    As upstream: each 8-bit value is linearised by the measured monitor curve
    (``x_gamma_function``), the result clipped to [0, 1] and mapped back to the index of the
    nearest curve value (ties: the lower index), which is the output's 8-bit value.
    """
    to_float(image)  # validates the input
    if int(value) == 0:
        return np.ascontiguousarray(image.copy())
    curve = measured("x_gamma_function").ravel()
    linear = curve[image]
    dkl = (linear @ _CONES.T - _CONE_WHITE) @ _DKL.T
    dkl[..., 1:] *= -1.0
    cones = dkl @ np.linalg.inv(_DKL).T + _CONE_WHITE
    rgb = np.clip(cones @ np.linalg.inv(_CONES).T, 0.0, 1.0)
    return _nearest_index(rgb, curve).astype(np.uint8)


@OPS.register("mvh_colour", random=False, variant=QUANTISE)
def colour(image: np.ndarray, *, seed: int, value: int) -> np.ndarray:
    """``value`` 0: the colour image unchanged; 1: greyscale (rgb2gray, replicated)."""
    grey = to_grey(image)
    if int(value) == 0:
        return np.ascontiguousarray(image.copy())
    return to_uint8(grey)

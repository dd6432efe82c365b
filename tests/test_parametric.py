"""model-vs-human frequency and OOD parametric sets: every level, and formulas against hand-computed pixels."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

import robusteval.corrupt.reference.parametric as pm
from robusteval.corrupt.reference import OPS
from robusteval.corrupt.spec import load_specs
from robusteval.datasets.decode import load_rgb, resize_center_crop

SUITES = ("frequency", "ood-parametric")
CELLS = [(s.name, sev) for s in load_specs().values() if s.suite in SUITES for sev in s.severities]

# The conditions of model-vs-human / Geirhos et al. 2018, in level order.
LADDERS = {
    "low_pass": [0, 1, 3, 5, 7, 10, 15, 40],
    "high_pass": [math.inf, 3, 1.5, 1, 0.7, 0.55, 0.45, 0.4],
    "grey_contrast": [1, 0.5, 0.3, 0.15, 0.1, 0.05, 0.03, 0.01],
    "uniform_noise": [0, 0.03, 0.05, 0.1, 0.2, 0.35, 0.6, 0.9],
    "phase_scrambling": [0, 30, 60, 90, 120, 150, 180],
    "rotation": [0, 90, 180, 270],
    "power_equalisation": [0, 1],
    "false_colour": [0, 1],
    "colour_greyscale": [0, 1],
}


def _apply(name: str, sev: int, image: np.ndarray, seed: int) -> np.ndarray:
    spec = load_specs()[name]
    return OPS.get(spec.op).fn(image, seed=seed, **spec.params(sev))


def _synthetic() -> np.ndarray:
    y, x = np.mgrid[0:224, 0:224].astype(np.float64)
    img = np.stack([x / 223 * 255, y / 223 * 255, 128 + 100 * np.sin(x / 7) * np.cos(y / 11)], axis=2)
    img[50:110, 70:150] = (220, 60, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def _const(rgb: tuple[int, int, int], size: int = 224) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (size, size, 3)).copy()


@pytest.fixture(scope="module")
def real(val1300: Path) -> np.ndarray:
    with open(val1300 / "labels.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    return resize_center_crop(load_rgb(val1300 / row["path"]))


def test_ladders_are_model_vs_humans() -> None:
    specs = {s.name: s for s in load_specs().values() if s.suite in SUITES}
    assert set(specs) == set(LADDERS)
    for name, values in LADDERS.items():
        spec = specs[name]
        assert [float(level["value"]) for level in spec.levels] == values, name
        assert spec.level_label != "severity" and spec.op in OPS
    assert all(level.get("contrast") == 0.3 for level in specs["uniform_noise"].levels)


@pytest.mark.parametrize(("name", "sev"), CELLS)
def test_every_level_shape_and_determinism(name: str, sev: int) -> None:
    img = _synthetic()
    a = _apply(name, sev, img, seed=11)
    assert a.dtype == np.uint8 and a.shape == (224, 224, 3) and a.flags.c_contiguous
    assert np.array_equal(a, _apply(name, sev, img, seed=11))
    spec = load_specs()[name]
    other = _apply(name, sev, img, seed=12)
    if OPS.get(spec.op).meta["random"] and float(spec.params(sev)["value"]) > 0:
        assert not np.array_equal(a, other), "seeded noise must change with the seed"
    else:
        assert np.array_equal(a, other)
    colour_out = name == "false_colour" or (name == "colour_greyscale" and sev == 1)
    assert np.array_equal(a[..., 0], a[..., 1]) != colour_out, "grey results are replicated to RGB"


def _grey8(img: np.ndarray) -> np.ndarray:
    """Hand formula: floor(255 (0.2125 R + 0.7154 G + 0.0721 B) / 255 + 0.5)."""
    f = img.astype(np.float64)
    grey = (0.2125 * f[..., 0] + 0.7154 * f[..., 1] + 0.0721 * f[..., 2]) / 255.0
    return np.floor(grey * 255.0 + 0.5).astype(np.uint8)


def test_greyscale_pixels_by_hand() -> None:
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (255, 0, 0)  # 0.2125 * 255 = 54.19 -> 54
    img[0, 1] = (0, 255, 0)  # 0.7154 * 255 = 182.43 -> 182
    img[1, 0] = (0, 0, 255)  # 0.0721 * 255 = 18.39 -> 18
    img[1, 1] = (200, 100, 50)  # 42.5 + 71.54 + 3.605 = 117.645 -> 118
    out = pm.colour(img, seed=0, value=1)
    assert out[..., 0].tolist() == [[54, 182], [18, 118]]
    assert np.array_equal(out[..., 0], out[..., 2])
    assert np.array_equal(pm.colour(img, seed=0, value=0), img)


def test_contrast_on_a_constant_image() -> None:
    # grey = 117.645 / 255 = 0.461353; c = 0.5: 0.25 + 0.230676 = 0.480676 -> 122.57 -> 123
    out = pm.contrast(_const((200, 100, 50)), seed=0, value=0.5)
    assert np.all(out == 123)
    # c = 0.1: 0.45 + 0.0461353 = 0.4961353 -> 126.51 -> 127;  c = 0.01: 0.495 + 0.0046 -> 127.4 -> 127
    assert np.all(pm.contrast(_const((200, 100, 50)), seed=0, value=0.1) == 127)
    assert np.all(pm.contrast(_const((0, 0, 0)), seed=0, value=0.3) == 89)  # 0.35 * 255 = 89.25
    assert np.all(pm.contrast(_const((255, 255, 255)), seed=0, value=0.3) == 166)  # 0.65 * 255 = 165.75
    with pytest.raises(ValueError):
        pm.contrast(_const((1, 2, 3)), seed=0, value=1.5)


def test_low_pass_sigma0_is_grey_and_blur_pulls_borders_to_background(real: np.ndarray) -> None:
    assert np.array_equal(pm.low_pass(real, seed=0, value=0)[..., 0], _grey8(real))
    out = pm.low_pass(_const((255, 255, 255)), seed=0, value=1)[..., 0]
    assert np.all(out[10:-10, 10:-10] == 255)  # the kernel sums to 1 inside
    # Corner: per axis only the offsets 0..4 of the truncated (4 sigma) kernel fall inside.
    k = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    inside = k[4:].sum() / k.sum()
    corner = 0.4423 + (1 - 0.4423) * inside**2
    assert out[0, 0] == math.floor(corner * 255 + 0.5)


def test_high_pass(real: np.ndarray) -> None:
    assert np.array_equal(pm.high_pass(real, seed=0, value="inf")[..., 0], _grey8(real))
    assert np.array_equal(pm.high_pass(real, seed=0, value=math.inf), pm.high_pass(real, seed=0, value="inf"))
    # A constant image has no detail away from the border: the centre sits at 0.4423 - mean(detail).
    from scipy.ndimage import gaussian_filter

    g = np.full((224, 224), 117.645 / 255)
    detail = g - gaussian_filter(g, 3, mode="constant", cval=0.4423)
    centre = 0.4423 - detail.mean()
    out = pm.high_pass(_const((200, 100, 50)), seed=0, value=3)[..., 0]
    assert np.all(out[20:-20, 20:-20] == math.floor(centre * 255 + 0.5))
    # Away from the constant border a brightness offset only moves everything by one constant
    # (the global re-centring), and the mean lands on 0.4423.
    a = pm.high_pass(real // 2, seed=0, value=1)[5:-5, 5:-5, 0].astype(int)
    b = pm.high_pass(real // 2 + 100, seed=0, value=1)[5:-5, 5:-5, 0].astype(int)
    assert np.ptp(a - b) <= 1
    assert abs(pm.high_pass(real // 2, seed=0, value=1).mean() - 0.4423 * 255) < 1.0


def test_uniform_noise_width_and_contrast() -> None:
    img = _synthetic()
    base = pm.contrast(img, seed=0, value=0.3).astype(int)
    assert np.array_equal(pm.uniform_noise(img, seed=5, value=0.0), base)
    out = pm.uniform_noise(img, seed=5, value=0.1).astype(int)
    diff = out - base
    assert np.abs(diff).max() <= 26  # 0.1 * 255 = 25.5, plus rounding
    assert abs(diff.mean()) < 0.5 and diff.std() > 10  # U(-w, w) has std w / sqrt(3) = 14.7
    # Same seed -> same noise field: numpy.random.RandomState(seed).uniform(-w, w, (H, W)).
    noise = np.random.RandomState(5).uniform(-0.1, 0.1, (224, 224))
    grey = 0.35 + 0.3 * (img.astype(float) / 255 @ np.array([0.2125, 0.7154, 0.0721]))
    assert np.array_equal(out[..., 0], np.floor(np.clip(grey + noise, 0, 1) * 255 + 0.5))


def test_phase_scrambling(real: np.ndarray) -> None:
    zero = pm.phase_scrambling(real, seed=3, value=0)[..., 0].astype(int)
    assert np.abs(zero - _grey8(real)).max() <= 1  # FFT round trip, rounding at .5 only
    g = _grey8(real).astype(float)
    scrambled = [pm.phase_scrambling(real, seed=3, value=w)[..., 0].astype(float) for w in (30, 90, 180)]
    corr = [np.corrcoef(g.ravel(), s.ravel())[0, 1] for s in scrambled]
    assert corr[0] > corr[1] > corr[2] and corr[0] > 0.5 and abs(corr[2]) < 0.2


def test_power_equalisation_keeps_only_phase(real: np.ndarray) -> None:
    spec = load_specs()["power_equalisation"]
    params = spec.params(2)
    # Two images whose grey levels differ only in contrast around 128 share all non-DC phases.
    v = (real[..., 1].astype(int) // 2) * 2
    a = np.repeat(v[..., None], 3, axis=2).astype(np.uint8)
    b = np.repeat((128 + (v - 128) // 2)[..., None], 3, axis=2).astype(np.uint8)
    out_a = pm.power_equalisation(a, seed=0, **params).astype(int)
    out_b = pm.power_equalisation(b, seed=0, **params).astype(int)
    assert np.abs(out_a - out_b).max() <= 1
    assert abs(out_a.mean() - params["mean"] * 255) < 3  # DC fixed to the spectrum's mean
    assert np.array_equal(pm.power_equalisation(real, seed=0, **spec.params(1))[..., 0], _grey8(real))
    amp = pm.power_law_amplitude((8, 8), slope=1.0, amplitude=0.5, mean=0.25)
    assert amp[4, 4] == 0.25 * 64  # centred DC
    assert amp[4, 5] == pytest.approx(0.5 * 8 * 8)  # f = 1/8 cycles/px, f^-1 = 8


def test_rotation_of_a_known_array() -> None:
    vals = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    img = np.repeat(vals[..., None], 3, axis=2)  # R = G = B, so grey = the value
    r90 = pm.rotation(img, seed=0, value=90)[..., 0]
    assert r90[0].tolist() == [30, 70, 110, 150]  # counter-clockwise: the last column on top
    assert np.array_equal(r90, np.transpose(vals)[::-1, :])  # upstream rotate90
    assert np.array_equal(pm.rotation(img, seed=0, value=180)[..., 0], vals[::-1, ::-1])
    assert np.array_equal(pm.rotation(img, seed=0, value=270)[..., 0], np.transpose(vals[::-1, :]))
    assert np.array_equal(pm.rotation(img, seed=0, value=0)[..., 0], vals)
    with pytest.raises(ValueError):
        pm.rotation(img, seed=0, value=45)


def test_false_colour() -> None:
    gamma = load_specs()["false_colour"].params(2)["gamma"]
    greys = np.repeat(np.linspace(30, 220, 16).astype(np.uint8)[None, :, None], 3, axis=2)
    # Grey lies on the DKL luminance axis: negating the two chromatic axes leaves it in place.
    assert np.abs(pm.false_colour(greys, seed=0, value=1, gamma=gamma).astype(int) - greys).max() <= 1
    red = _const((200, 80, 80), size=4)
    out = pm.false_colour(red, seed=0, value=1, gamma=gamma)[0, 0].astype(int)
    assert out[1] > out[0], f"red should turn green-ish, got {out}"
    # Negating twice restores in-gamut colours up to the 8-bit round trips.
    img = (_synthetic()[::8, ::8] // 8 + 150).astype(np.uint8)  # pale colours stay in gamut
    twice = pm.false_colour(pm.false_colour(img, seed=0, value=1, gamma=gamma), seed=0, value=1, gamma=gamma)
    assert np.abs(twice.astype(int) - img).max() <= 3
    assert np.array_equal(pm.false_colour(img, seed=0, value=0, gamma=gamma), img)

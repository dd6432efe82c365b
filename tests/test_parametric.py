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
    """Hand formula: floor(255 (0.2125 R + 0.7154 G + 0.0721 B) / 255) (upstream's truncation)."""
    grey = (img / 255.0) @ np.array([0.2125, 0.7154, 0.0721])  # rgb2gray's order of operations
    return np.floor(grey * 255.0).astype(np.uint8)


def test_greyscale_pixels_by_hand() -> None:
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (255, 0, 0)  # 0.2125 * 255 = 54.19 -> 54
    img[0, 1] = (0, 255, 0)  # 0.7154 * 255 = 182.43 -> 182
    img[1, 0] = (0, 0, 255)  # 0.0721 * 255 = 18.39 -> 18
    img[1, 1] = (200, 100, 50)  # 42.5 + 71.54 + 3.605 = 117.645 -> 117 (truncated)
    out = pm.colour(img, seed=0, value=1)
    assert out[..., 0].tolist() == [[54, 182], [18, 117]]
    assert np.array_equal(out[..., 0], out[..., 2])
    assert np.array_equal(pm.colour(img, seed=0, value=0), img)


def test_contrast_on_a_constant_image() -> None:
    # grey = 117.645 / 255 = 0.461353; c = 0.5: 0.25 + 0.230676 = 0.480676 -> 122.57 -> 122
    out = pm.contrast(_const((200, 100, 50)), seed=0, value=0.5)
    assert np.all(out == 122)
    # c = 0.1: 0.45 + 0.0461353 = 0.4961353 -> 126.51 -> 126;  c = 0.01: 0.495 + 0.0046 -> 127.4 -> 127
    assert np.all(pm.contrast(_const((200, 100, 50)), seed=0, value=0.1) == 126)
    assert np.all(pm.contrast(_const((200, 100, 50)), seed=0, value=0.01) == 127)
    assert np.all(pm.contrast(_const((0, 0, 0)), seed=0, value=0.3) == 89)  # 0.35 * 255 = 89.25
    assert np.all(pm.contrast(_const((255, 255, 255)), seed=0, value=0.3) == 165)  # 0.65 * 255 = 165.75
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
    assert out[0, 0] == math.floor(corner * 255)


def test_high_pass(real: np.ndarray) -> None:
    assert np.array_equal(pm.high_pass(real, seed=0, value="inf")[..., 0], _grey8(real))
    assert np.array_equal(pm.high_pass(real, seed=0, value=math.inf), pm.high_pass(real, seed=0, value="inf"))
    # A constant image has no detail away from the border: the centre sits at 0.4423 - mean(detail).
    from scipy.ndimage import gaussian_filter

    g = np.full((224, 224), 117.645 / 255)
    detail = g - gaussian_filter(g, 3, mode="constant", cval=0.4423)
    centre = 0.4423 - detail.mean()
    out = pm.high_pass(_const((200, 100, 50)), seed=0, value=3)[..., 0]
    assert np.all(out[20:-20, 20:-20] == math.floor(centre * 255))
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
    assert np.array_equal(out[..., 0], (np.clip(grey + noise, 0, 1) * 255).astype(np.uint8))


def test_phase_scrambling(real: np.ndarray) -> None:
    zero = pm.phase_scrambling(real, seed=3, value=0)[..., 0].astype(int)
    assert np.abs(zero - _grey8(real)).max() <= 1  # FFT round trip, rounding at .5 only
    g = _grey8(real).astype(float)
    scrambled = [pm.phase_scrambling(real, seed=3, value=w)[..., 0].astype(float) for w in (30, 90, 180)]
    corr = [np.corrcoef(g.ravel(), s.ravel())[0, 1] for s in scrambled]
    assert corr[0] > corr[1] > corr[2] and corr[0] > 0.5 and abs(corr[2]) < 0.2


def test_power_equalisation_keeps_only_phase(real: np.ndarray) -> None:
    # Two images whose grey levels differ only in contrast around 128 share all non-DC phases.
    v = (real[..., 1].astype(int) // 2) * 2
    a = np.repeat(v[..., None], 3, axis=2).astype(np.uint8)
    b = np.repeat((128 + (v - 128) // 2)[..., None], 3, axis=2).astype(np.uint8)
    out_a = pm.power_equalisation(a, seed=0, value=1).astype(int)
    out_b = pm.power_equalisation(b, seed=0, value=1).astype(int)
    assert np.abs(out_a - out_b).max() <= 1
    spectrum = pm.measured("mean_power_spectrum_grey")
    dc = spectrum[112, 112] / 224**2  # the centred DC term fixes the mean grey level
    assert abs(out_a.mean() - dc * 255) < 3
    assert np.array_equal(pm.power_equalisation(real, seed=0, value=0)[..., 0], _grey8(real))
    with pytest.raises(ValueError, match="224"):
        pm.power_equalisation(real[:100, :100], seed=0, value=1)


def test_rotation_of_a_known_array() -> None:
    vals = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    img = np.repeat(vals[..., None], 3, axis=2)  # R = G = B, so grey = the value up to truncation:
    grey = _grey8(img)  # the weights sum to 1 only up to float rounding, so 100 -> 99 and 50 -> 49
    assert grey[2, 1] == 90 and grey[2, 2] == 99 and grey[1, 1] == 49
    r90 = pm.rotation(img, seed=0, value=90)[..., 0]
    assert r90[0].tolist() == [30, 70, 110, 150]  # counter-clockwise: the last column on top
    assert np.array_equal(r90, np.transpose(grey)[::-1, :])  # upstream rotate90
    assert np.array_equal(pm.rotation(img, seed=0, value=180)[..., 0], grey[::-1, ::-1])
    assert np.array_equal(pm.rotation(img, seed=0, value=270)[..., 0], np.transpose(grey[::-1, :]))
    assert np.array_equal(pm.rotation(img, seed=0, value=0)[..., 0], grey)
    with pytest.raises(ValueError):
        pm.rotation(img, seed=0, value=45)


def test_false_colour() -> None:
    greys = np.repeat(np.linspace(30, 220, 16).astype(np.uint8)[None, :, None], 3, axis=2)
    # Grey lies on the DKL luminance axis: negating the two chromatic axes leaves it in place.
    assert np.abs(pm.false_colour(greys, seed=0, value=1).astype(int) - greys).max() <= 1
    red = _const((200, 80, 80), size=4)
    out = pm.false_colour(red, seed=0, value=1)[0, 0].astype(int)
    assert out[1] > out[0], f"red should turn green-ish, got {out}"
    # Negating twice restores in-gamut colours up to the 8-bit round trips.
    img = (_synthetic()[::8, ::8] // 8 + 150).astype(np.uint8)  # pale colours stay in gamut
    twice = pm.false_colour(pm.false_colour(img, seed=0, value=1), seed=0, value=1)
    assert np.abs(twice.astype(int) - img).max() <= 3
    assert np.array_equal(pm.false_colour(img, seed=0, value=0), img)


# ---------------------------------------------------------------- against upstream's formulas
#
# Independent implementations of generalisation-humans-DNNs' image_manipulation.py, written out
# here from its description: images float64 in [0, 1]; scikit-image rgb2gray; scipy.fftpack;
# einsum colour transforms; argmin nearest-value lookup; saved by save_img's (255 x).astype(uint8).

ASSETS = Path(pm.__file__).resolve().parents[2] / "assets" / "generalisation_humans_dnns"


def _save_img(x: np.ndarray) -> np.ndarray:
    out = (x * 255.0).astype("uint8")
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out


def _upstream_power_equalisation(rgb01: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    from scipy import fftpack
    from skimage.color import rgb2gray

    phase = np.angle(fftpack.fftshift(fftpack.fft2(rgb2gray(rgb01))))
    grey = fftpack.ifft2(fftpack.ifftshift(spectrum * np.exp(1j * phase))).real
    grey[grey > 1] = 1
    grey[grey < 0] = 0
    return grey


def _upstream_false_colour(rgb01: np.ndarray, curve: np.ndarray) -> np.ndarray:
    cones_of = np.array(
        [
            [0.1619982647, 0.208049264, 0.0389347448],
            [0.0330275785, 0.2496504557, 0.0618343518],
            [0.0015524055, 0.0198861001, 0.1890224274],
        ]
    )
    dkl_of = np.array(
        [[9.27590805, 9.27590805, 0], [7.86421647, -9.33587662, 0], [-3.39709047, -3.39709047, 12.16230246]]
    )
    white = [0.20449114, 0.17225619, 0.10523047]
    linear = curve[(rgb01 * 255).astype(np.uint8)].reshape(rgb01.shape)
    dkl = np.einsum("ij,klj->kli", dkl_of, np.einsum("ij,klj->kli", cones_of, linear) - white)
    dkl[:, :, 1] *= -1
    dkl[:, :, 2] *= -1
    cones = np.einsum("ij,klj->kli", np.linalg.inv(dkl_of), dkl) + white
    rgb = np.einsum("ij,klj->kli", np.linalg.inv(cones_of), cones)
    rgb[rgb > 1] = 1
    rgb[rgb < 0] = 0
    idx = np.abs(curve.reshape(1, 1, 1, -1) - rgb[..., None]).argmin(axis=-1)
    return idx / 255


def test_shipped_measured_data_is_upstreams_and_licensed() -> None:
    import hashlib

    notice = (ASSETS / "NOTICE.md").read_text()
    for name in ("mean_power_spectrum_grey.npy", "x_gamma_function.npy"):
        digest = hashlib.sha256((ASSETS / name).read_bytes()).hexdigest()
        assert f"{name} `{digest}`" in notice
    assert "Attribution 4.0 International" in (ASSETS / "LICENSE.txt").read_text()
    assert pm.measured("mean_power_spectrum_grey").shape == (224, 224)
    assert pm.measured("x_gamma_function").shape == (256, 1)


def test_power_equalisation_and_false_colour_equal_upstreams_formulas(real: np.ndarray) -> None:
    spectrum = np.load(ASSETS / "mean_power_spectrum_grey.npy")
    curve = np.load(ASSETS / "x_gamma_function.npy")
    for img in (real, _synthetic()):
        want = _save_img(_upstream_power_equalisation(img / 255.0, spectrum))
        assert np.array_equal(_apply("power_equalisation", 2, img, seed=0), want)
        part = img[::3, ::2]  # per pixel: a subsample keeps the brute-force nearest search small
        want = _save_img(_upstream_false_colour(part / 255.0, curve))
        assert np.array_equal(_apply("false_colour", 2, part, seed=0), want)


def test_every_parametric_op_truncates_and_says_so_in_its_hash() -> None:
    from skimage.color import rgb2gray

    img = _synthetic()
    want = _save_img(rgb2gray(img / 255.0))  # upstream's grey image, saved
    assert np.array_equal(_apply("colour_greyscale", 2, img, seed=0), want)
    assert np.array_equal(_apply("low_pass", 1, img, seed=0), want)  # sigma 0
    for spec in load_specs().values():
        if spec.suite in SUITES:
            assert OPS.get(spec.op).meta["variant"] == "uint8-truncate"
            plain = {"op": spec.op, "params": spec.params(1)}
            import hashlib
            import json

            old = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]
            assert spec.spec_hash(1) != old

"""The 21 study transformations: every set x severity, determinism, ladders, the Crop workaround."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import robusteval.corrupt.reference.study as study_ops
from robusteval.corrupt.reference import OPS
from robusteval.corrupt.spec import load_specs
from robusteval.datasets.decode import load_rgb, resize_center_crop

STUDY_NAMES = [
    "additive_gaussian_noise", "affine", "crop", "hue_saturation", "crop_and_pad", "cutout", "dropout",
    "edge_detect", "emboss", "piecewise_affine", "salt", "fast_snowy_landscape", "fliplr", "gaussian_blur",
    "grayscale", "invert", "linear_contrast", "multiply", "multiply_elementwise", "perspective",
    "jpeg_compression",
]  # fmt: skip
SINGLE_LEVEL = {"fliplr", "grayscale", "invert"}


def _study_specs():
    return [s for s in load_specs().values() if s.suite == "study21"]


CELLS = [(s.name, sev) for s in _study_specs() for sev in s.severities]


def _synthetic() -> np.ndarray:
    """224x224 RGB with smooth gradients, a bright square and texture, so every op has something to move."""
    y, x = np.mgrid[0:224, 0:224].astype(np.float64)
    img = np.stack([x / 223 * 255, y / 223 * 255, 128 + 100 * np.sin(x / 9) * np.cos(y / 13)], axis=2)
    img[60:120, 80:160] = (230, 200, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def _small() -> np.ndarray:
    """112x112 version of :func:`_synthetic` for the many-op tests (PiecewiseAffine is slow at 224)."""
    return np.ascontiguousarray(_synthetic()[::2, ::2])


@pytest.fixture(scope="module")
def real(val1300: Path) -> list[np.ndarray]:
    with open(val1300 / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:2]
    return [resize_center_crop(load_rgb(val1300 / r["path"])) for r in rows]


def _apply(name: str, sev: int, image: np.ndarray, seed: int) -> np.ndarray:
    spec = load_specs()[name]
    return OPS.get(spec.op).fn(image, seed=seed, **spec.params(sev))


def test_the_21_sets_and_their_levels() -> None:
    specs = {s.name: s for s in _study_specs()}
    assert sorted(specs) == sorted(STUDY_NAMES)
    for name, spec in specs.items():
        assert spec.op in OPS, spec.op
        assert len(spec.levels) == (1 if name in SINGLE_LEVEL else 5), name
        assert spec.description


@pytest.mark.parametrize(("name", "sev"), CELLS)
def test_every_cell_shape_and_determinism(name: str, sev: int) -> None:
    img = _synthetic()
    spec = load_specs()[name]
    a = _apply(name, sev, img, seed=1234)
    assert a.dtype == np.uint8 and a.shape == (224, 224, 3) and a.flags.c_contiguous
    assert np.array_equal(a, _apply(name, sev, img, seed=1234)), "same seed must give the same bytes"
    assert not np.array_equal(a, img), "every level must change the image"
    other = _apply(name, sev, img, seed=99)
    if OPS.get(spec.op).meta["random"]:
        assert not np.array_equal(a, other), "a random op must depend on the seed"
    else:
        assert np.array_equal(a, other), "a deterministic op must not depend on the seed"


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_other_sizes_keep_their_shape(name: str) -> None:
    """The pipeline feeds 224x224, other callers may not."""
    top = len(load_specs()[name].levels)
    small = _apply(name, top, _synthetic()[:60, :90], seed=1)
    assert small.shape == (60, 90, 3) and small.dtype == np.uint8


def test_no_dependence_on_history() -> None:
    img = _small()
    first = {n: _apply(n, 3 if n not in SINGLE_LEVEL else 1, img, seed=7) for n in STUDY_NAMES}
    for n in reversed(STUDY_NAMES):  # run everything again with other seeds in between
        _apply(n, 5 if n not in SINGLE_LEVEL else 1, img, seed=8)
    for n in STUDY_NAMES:
        assert np.array_equal(first[n], _apply(n, 3 if n not in SINGLE_LEVEL else 1, img, seed=7)), n


def test_same_bytes_in_a_fresh_process() -> None:
    img = _small()
    names = [n for n in STUDY_NAMES if n not in SINGLE_LEVEL]
    here = {n: hashlib.sha256(_apply(n, 4, img, seed=31337).tobytes()).hexdigest() for n in names}
    code = (
        "import hashlib, json, sys\n"
        "from tests.test_study_ops import _apply, _small\n"
        "img = _small()\n"
        f"names = {list(reversed(names))!r}\n"
        "print(json.dumps({n: hashlib.sha256(_apply(n, 4, img, seed=31337).tobytes()).hexdigest()"
        " for n in names}))\n"
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


@pytest.mark.parametrize("name", [n for n in STUDY_NAMES if n not in SINGLE_LEVEL])
def test_distance_from_clean_grows_with_severity(name: str, real: list[np.ndarray]) -> None:
    dist = []
    for sev in range(1, 6):
        d = [
            np.abs(_apply(name, sev, im, seed=2024 + i).astype(float) - im).mean()
            for i, im in enumerate(real)
        ]
        dist.append(float(np.mean(d)))
    assert all(b >= a for a, b in zip(dist, dist[1:], strict=False)), (
        f"{name}: mean |out - clean| per severity {dist}"
    )
    assert dist[-1] > dist[0]


# --- Crop / CropAndPad: pyimgaug 0.5's own fail on NumPy 2; ours must crop as imgaug means ----------


def test_crop_fixed_percent_is_a_center_crop_resized_back() -> None:
    import imgaug as ia

    img = _synthetic()
    out = study_ops.crop(img, seed=0, percent=0.1)  # round(224 * 0.1) = 22 px off every side
    expected = ia.imresize_single_image(img[22:202, 22:202], (224, 224))
    assert np.array_equal(out, expected)
    assert np.array_equal(study_ops.crop(img, seed=0, percent=[0.1, 0.1]), expected)
    assert np.array_equal(study_ops.crop(img, seed=5, percent=0.0), img)


def test_crop_and_pad_fixed_percent_pads_black_then_resizes() -> None:
    import imgaug as ia

    img = _synthetic()
    out = study_ops.crop_and_pad(img, seed=0, percent=0.25)  # 56 px of black on every side
    padded = np.zeros((336, 336, 3), np.uint8)
    padded[56:280, 56:280] = img
    assert np.array_equal(out, ia.imresize_single_image(padded, (224, 224)))
    assert out[:20].max() == 0 and out[:, -20:].max() == 0
    cropped = study_ops.crop_and_pad(img, seed=0, percent=-0.1)
    assert np.array_equal(cropped, study_ops.crop(img, seed=0, percent=0.1))


def test_crop_matches_imgaug_when_its_numpy2_bug_is_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    """With imgaug's scalar conversion fixed, its Crop/CropAndPad(px=...) give our bytes."""
    import imgaug.augmenters as iaa
    import imgaug.augmenters.size as size

    def fixed(axis_size, crop_start, crop_end):
        start, end = size._prevent_zero_sizes_after_crops_(
            np.array([axis_size]), np.array([crop_start]), np.array([crop_end])
        )
        return int(start[0]), int(end[0])

    monkeypatch.setattr(size, "_prevent_zero_size_after_crop_", fixed)
    img = _synthetic()
    px = np.array([-5, -17, -30, -2])  # top, right, bottom, left; negative = crop
    theirs = iaa.CropAndPad(px=tuple(int(v) for v in px), keep_size=True)(image=img)
    assert np.array_equal(study_ops.crop_and_pad_px(img, px), theirs)
    px = np.array([12, -7, 3, -20])
    theirs = iaa.CropAndPad(px=tuple(int(v) for v in px), pad_mode="constant", pad_cval=0)(image=img)
    assert np.array_equal(study_ops.crop_and_pad_px(img, px), theirs)
    # imgaug's guard against empty crops: more than the whole height requested.
    px = np.array([-150, 0, -150, 0])
    theirs = iaa.CropAndPad(px=tuple(int(v) for v in px), keep_size=False)(image=img)
    assert theirs.shape[0] == 1
    ours_rows = study_ops._keep_nonempty(224, 150, 150)
    assert 224 - sum(ours_rows) == 1 and np.array_equal(img[ours_rows[0] : 224 - ours_rows[1]], theirs)


def test_crop_range_is_sampled_per_side_within_bounds() -> None:
    fr = np.array([study_ops._fractions(s, [0.05, 0.3]) for s in range(200)])
    assert fr.min() >= 0.05 and fr.max() <= 0.3
    assert len({tuple(r) for r in fr.round(6)}) == 200  # per image
    assert np.all(fr.std(axis=0) > 0.05)  # per side, independently
    px = study_ops._side_pixels((224, 100, 3), np.array([0.5, 0.5, 0.104, 0.105]))
    assert px.tolist() == [112, 50, 23, 10]  # heights for top/bottom, widths for right/left

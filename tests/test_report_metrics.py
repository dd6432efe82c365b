"""Report metrics against values computed by hand (the arithmetic is written out in each test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robusteval import metrics
from robusteval.references import ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS


def test_topk_accuracy_ignores_unknown_labels():
    top5 = np.array([[1, 2, 3, 4, 5], [9, 1, 2, 3, 4], [7, 8, 9, 10, 11], [0, 1, 2, 3, 4]])
    labels = np.array([1, 1, 12, -1])
    # known: rows 0-2; top-1 right only in row 0; label in top-5 in rows 0 and 1
    assert metrics.topk_accuracy(top5=top5, labels=labels, k=1) == pytest.approx(1 / 3)
    assert metrics.topk_accuracy(top5=top5, labels=labels, k=5) == pytest.approx(2 / 3)
    assert math.isnan(metrics.topk_accuracy(top5=top5[:1], labels=np.array([-1]), k=1))
    with pytest.raises(ValueError):
        metrics.topk_accuracy(top5=top5[:, :2], labels=labels, k=5)


def test_mca_and_relative_robustness():
    # mean over transformations of their mean over severities; nan (not scored) is left out
    per_set = {
        "a": metrics.mean_over_severities({1: 0.9, 2: 0.7}),  # 0.8
        "b": metrics.mean_over_severities({1: 0.6}),  # single-level set
        "c": math.nan,
    }
    mca = metrics.mean_corrupted_accuracy(per_set)
    assert mca == pytest.approx(0.7)
    assert metrics.relative_robustness(mca=mca, clean=0.875) == pytest.approx(0.8)
    assert math.isnan(metrics.relative_robustness(mca=mca, clean=0.0))
    assert math.isnan(metrics.mean_corrupted_accuracy({}))


def test_ce_mce_and_relative_mce_by_hand():
    model = {"A": {1: 0.2, 2: 0.4}, "B": {1: 0.5}}
    base = {"A": {1: 0.4, 2: 0.6, 3: 0.9}, "B": {1: 0.25}}  # severity 3 unmatched: not counted
    ce = {k: metrics.corruption_error(errors=model[k], baseline_errors=base[k]) for k in model}
    assert ce["A"] == pytest.approx((0.2 + 0.4) / (0.4 + 0.6))  # 0.6
    assert ce["B"] == pytest.approx(0.5 / 0.25)  # 2.0
    assert metrics.mean_of(ce.values()) == pytest.approx(1.3)

    rel = {
        k: metrics.relative_corruption_error(
            errors=model[k], clean_error=0.1, baseline_errors=base[k], baseline_clean_error=0.2
        )
        for k in model
    }
    assert rel["A"] == pytest.approx(((0.2 - 0.1) + (0.4 - 0.1)) / ((0.4 - 0.2) + (0.6 - 0.2)))  # 2/3
    assert rel["B"] == pytest.approx((0.5 - 0.1) / (0.25 - 0.2))  # 8.0
    assert metrics.mean_of(rel.values()) == pytest.approx((2 / 3 + 8.0) / 2)

    # the baseline loses nothing on this transformation: relative CE is undefined, not infinite
    assert math.isnan(
        metrics.relative_corruption_error(
            errors={1: 0.3}, clean_error=0.1, baseline_errors={1: 0.2}, baseline_clean_error=0.2
        )
    )
    assert math.isnan(metrics.corruption_error(errors={1: 0.3}, baseline_errors={2: 0.3}))


def test_alexnet_normalised_ce():
    errs = {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8, 5: 0.9}  # mean 0.7
    ce = metrics.alexnet_corruption_error(corruption="gaussian_noise", errors=errs)
    assert ce == pytest.approx(0.7 / 0.886428)
    rel = metrics.alexnet_relative_corruption_error(corruption="gaussian_noise", errors=errs, clean_error=0.2)
    assert rel == pytest.approx((0.7 - 0.2) / (0.886428 - 0.4348))
    # sum of the 15 published numbers (added by hand from the paper's table): catches a mistyped entry
    assert len(ALEXNET_ERRORS) == 15 and ALEXNET_CLEAN_ERROR == 0.4348
    assert sum(ALEXNET_ERRORS.values()) == pytest.approx(11.834896, abs=1e-9)
    # Hendrycks' sum form equals the mean form when all five severities are present
    summed = sum(errs.values()) / (5 * ALEXNET_ERRORS["gaussian_noise"])
    assert ce == pytest.approx(summed)


@pytest.mark.parametrize(
    ("name", "suite", "expected"),
    [
        ("c_jpeg_compression", "imagenet-c", "jpeg_compression"),
        ("jpeg_compression", "imagenet-c", "jpeg_compression"),  # released folder name
        ("jpeg_compression", "study21", None),  # the study's imgaug JPEG is not ImageNet-C's
        ("c_fog", None, "fog"),
        ("imagenet-c/fog", None, "fog"),
        ("fog", None, None),
        ("c_speckle_noise", "imagenet-c", None),  # held-out corruption: no AlexNet error
        ("c_fog", "study21", None),
    ],
)
def test_imagenet_c_names(name, suite, expected):
    assert metrics.imagenet_c_name(name, suite=suite) == expected


def test_ece_tiny_example():
    conf = np.array([0.9, 0.91, 0.3, 0.95])
    hit = np.array([1, 0, 0, 1])
    # 15 bins of width 1/15: 0.9 and 0.91 share (13/15, 14/15], 0.3 is in (4/15, 5/15], 0.95 in the last
    by_hand = 2 / 4 * abs(0.5 - 0.905) + 1 / 4 * abs(0.0 - 0.3) + 1 / 4 * abs(1.0 - 0.95)
    assert by_hand == pytest.approx(0.29)
    assert metrics.expected_calibration_error(confidence=conf, correct=hit) == pytest.approx(by_hand)
    # perfectly calibrated in every bin -> 0; edges 0 and 1 land in the first and last bins
    assert (
        metrics.expected_calibration_error(confidence=np.array([1.0, 1.0]), correct=np.array([1, 1])) == 0.0
    )
    assert metrics.expected_calibration_error(confidence=np.array([0.0]), correct=np.array([0])) == 0.0
    assert math.isnan(metrics.expected_calibration_error(confidence=np.array([]), correct=np.array([])))


def test_ece_bin_count_matters():
    conf = np.array([0.55, 0.65])
    hit = np.array([0, 1])
    # one bin: |0.5 - 0.6| = 0.1; 15 bins: each alone, (0.55 + 0.35) / 2 = 0.45
    assert metrics.expected_calibration_error(confidence=conf, correct=hit, n_bins=1) == pytest.approx(0.1)
    assert metrics.expected_calibration_error(confidence=conf, correct=hit) == pytest.approx(0.45)


def test_error_consistency_tiny_example():
    a = np.array([1, 1, 0, 0, 1, 0, 1, 1], dtype=bool)
    b = np.array([1, 0, 0, 1, 1, 0, 1, 0], dtype=bool)
    k = metrics.error_consistency(correct_a=a, correct_b=b)
    # p_a = 5/8, p_b = 4/8; agree on trials 0, 2, 4, 5, 6 -> c_obs = 5/8
    # c_exp = 0.625 * 0.5 + 0.375 * 0.5 = 0.5; kappa = (0.625 - 0.5) / (1 - 0.5) = 0.25
    assert (k.n, k.acc_a, k.acc_b) == (8, 0.625, 0.5)
    assert k.c_obs == pytest.approx(0.625)
    assert k.c_exp == pytest.approx(0.5)
    assert k.kappa == pytest.approx(0.25)
    assert metrics.error_consistency(correct_a=a, correct_b=a).kappa == pytest.approx(1.0)
    assert metrics.error_consistency(correct_a=a, correct_b=~a).kappa < 0
    ones = np.ones(4, dtype=bool)
    assert math.isnan(metrics.error_consistency(correct_a=ones, correct_b=ones).kappa)
    with pytest.raises(ValueError):
        metrics.error_consistency(correct_a=a, correct_b=b[:3])

"""Robustness metrics as pure functions of accuracies, errors and per-image predictions.

Units: accuracies and errors are fractions in [0, 1]; severities are the 1-based integers of the
set specs. Nothing here reads files or knows about records; :mod:`robusteval.report.tables` feeds
these functions. An undefined value (empty input, zero denominator) is ``nan``, never an exception,
so one missing cell leaves the rest of a report intact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from robusteval.references import ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS

NAN = float("nan")

#: Prefixes under which ImageNet-C corruptions may be recorded (``c_fog``); the bare folder name
#: (``fog``) is used as-is when the record's suite says it is ImageNet-C.
_IMAGENET_C_PREFIXES = ("imagenet-c/", "imagenet_c/", "imagenet-c_", "imagenet_c_", "imagenet-c-", "c_")


# --- per-image predictions ------------------------------------------------------------------


def known_labels(labels: np.ndarray) -> np.ndarray:
    """Mask of images whose label is known (``labels >= 0``; ``-1`` marks unknown)."""
    return np.asarray(labels) >= 0


def topk_correct(*, top5: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Per-image bool: the label is among the first ``k`` of ``top5`` (int [n, >=k]).

    Images with unknown labels (``-1``) count as incorrect here; callers mask them with
    :func:`known_labels`.
    """
    top5 = np.asarray(top5)
    labels = np.asarray(labels)
    if top5.ndim != 2 or top5.shape[1] < k or k < 1:
        raise ValueError(f"top-{k} needs predictions shaped [n, >={k}], got {top5.shape}")
    return (top5[:, :k] == labels[:, None]).any(axis=1) & (labels >= 0)


def topk_accuracy(*, top5: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Top-``k`` accuracy in [0, 1] over images with known labels; ``nan`` when there are none."""
    mask = known_labels(labels)
    if not mask.any():
        return NAN
    return float(topk_correct(top5=top5, labels=labels, k=k)[mask].mean())


def expected_calibration_error(*, confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE of top-1 confidences in [0, 1] against per-image correctness (Guo et al. 2017).

    ``n_bins`` equal-width bins ``(lo, hi]`` (a confidence of exactly 0 falls in the first);
    ECE = sum over bins of (bin size / n) * |accuracy(bin) - mean confidence(bin)|, in [0, 1].
    """
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.shape != hit.shape:
        raise ValueError(f"confidence {conf.shape} and correct {hit.shape} differ in shape")
    if conf.size == 0:
        return NAN
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(idx, weights=hit, minlength=n_bins)
    # (n_b / n) * |acc_b - conf_b| == |hits_b - conf_sum_b| / n, so no per-bin division is needed
    return float(np.abs(hit_sum - conf_sum).sum() / conf.size)


def cell_metrics(
    *, top5: np.ndarray, top5_prob: np.ndarray, labels: np.ndarray, num_classes: int
) -> dict[str, float | None]:
    """A cell's top-1, top-5 (``None`` for label spaces of 5 classes or fewer) and 15-bin ECE, in
    0..1, over the images with known labels; all ``None`` when no label is known."""
    known = known_labels(labels)
    if not known.any():
        return {"top1": None, "top5": None, "ece": None}
    lab = np.asarray(labels)[known]
    top = np.asarray(top5)[known].astype(np.int64)
    hit1 = top[:, 0] == lab
    hit5 = (top == lab[:, None]).any(axis=1)
    conf = np.asarray(top5_prob)[known, 0].astype(np.float64)
    return {
        "top1": float(hit1.mean()),
        "top5": float(hit5.mean()) if num_classes > 5 else None,
        "ece": expected_calibration_error(confidence=conf, correct=hit1),
    }


@dataclass(frozen=True)
class Consistency:
    """Error consistency of two observers on the same trials (Geirhos et al. 2020).

    ``c_obs``: fraction of trials both got right or both got wrong; ``c_exp``: that fraction
    expected from their accuracies alone; ``kappa`` = (c_obs - c_exp) / (1 - c_exp) in [-1, 1].
    """

    n: int
    acc_a: float
    acc_b: float
    c_obs: float
    c_exp: float
    kappa: float


def error_consistency(*, correct_a: np.ndarray, correct_b: np.ndarray) -> Consistency:
    """Cohen's kappa on per-image correctness of two models over the same images (same order).

    ``kappa`` is ``nan`` when ``c_exp`` is 1 (both models all-right or both all-wrong), where
    agreement says nothing about errors.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"correctness vectors differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        return Consistency(0, NAN, NAN, NAN, NAN, NAN)
    p_a, p_b = float(a.mean()), float(b.mean())
    c_obs = float((a == b).mean())
    c_exp = p_a * p_b + (1.0 - p_a) * (1.0 - p_b)
    kappa = (c_obs - c_exp) / (1.0 - c_exp) if c_exp < 1.0 else NAN
    return Consistency(int(a.size), p_a, p_b, c_obs, c_exp, kappa)


# --- accuracies over transformations --------------------------------------------------------


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_over_severities(acc_by_severity: Mapping[int, float]) -> float:
    """Mean accuracy of one transformation over its severities (a single-level set: its value)."""
    vals = _finite(acc_by_severity.values())
    return sum(vals) / len(vals) if vals else NAN


def mean_corrupted_accuracy(acc_by_set: Mapping[str, float]) -> float:
    """mCA: the mean over transformations of each one's mean-over-severities accuracy.

    ``acc_by_set`` maps the study's transformations (21 when complete) to their mean accuracy;
    each transformation weighs the same whatever its number of severities.
    """
    vals = _finite(acc_by_set.values())
    return sum(vals) / len(vals) if vals else NAN


def relative_robustness(*, mca: float, clean: float) -> float:
    """mCA / clean top-1: 1 means no loss under the transformations; ``nan`` if clean is 0."""
    if not (math.isfinite(mca) and math.isfinite(clean)) or clean <= 0:
        return NAN
    return mca / clean


# --- corruption errors ----------------------------------------------------------------------


def _aligned(errors: Mapping[int, float], baseline: Mapping[int, float]) -> list[int]:
    """Severities where both the model's and the baseline's error are finite numbers."""
    return sorted(s for s in errors if s in baseline and len(_finite([errors[s], baseline[s]])) == 2)


def corruption_error(*, errors: Mapping[int, float], baseline_errors: Mapping[int, float]) -> float:
    """CE = sum_s E_s(model) / sum_s E_s(baseline) over the severities both have (Hendrycks 2019).

    ``errors`` map severity → top-1 error in [0, 1]; 1.0 means as fragile as the baseline.
    """
    sev = _aligned(errors, baseline_errors)
    den = sum(baseline_errors[s] for s in sev)
    if not sev or den <= 0:
        return NAN
    return sum(errors[s] for s in sev) / den


def relative_corruption_error(
    *,
    errors: Mapping[int, float],
    clean_error: float,
    baseline_errors: Mapping[int, float],
    baseline_clean_error: float,
) -> float:
    """Relative CE = sum_s (E_s - E_clean) / sum_s (E_s^base - E_clean^base).

    Measures the *drop* from clean relative to the baseline's drop. ``nan`` when the baseline
    loses no accuracy on this transformation (denominator <= 0): the ratio would be meaningless.
    """
    sev = _aligned(errors, baseline_errors)
    if not sev or len(_finite([clean_error, baseline_clean_error])) != 2:
        return NAN
    den = sum(baseline_errors[s] - baseline_clean_error for s in sev)
    if den <= 0:
        return NAN
    return sum(errors[s] - clean_error for s in sev) / den


def mean_of(values: Iterable[float]) -> float:
    """Mean of the finite values (mCE from CEs, relative mCE from relative CEs); ``nan`` if none."""
    vals = _finite(values)
    return sum(vals) / len(vals) if vals else NAN


def imagenet_c_name(set_name: str, *, suite: str | None = None) -> str | None:
    """The ImageNet-C corruption a set is, or ``None``.

    ``c_fog`` (or ``imagenet-c/fog``) names ImageNet-C's fog in any suite; a bare folder name
    (``fog``) counts only when the record's suite is ``imagenet-c`` — the study's own
    ``jpeg_compression`` (imgaug semantics) is not ImageNet-C's.
    """
    if suite not in (None, "imagenet-c"):
        return None
    name = set_name
    for prefix in _IMAGENET_C_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    else:
        if suite != "imagenet-c":
            return None
    return name if name in ALEXNET_ERRORS else None


def alexnet_corruption_error(*, corruption: str, errors: Mapping[int, float]) -> float:
    """CE normalised by AlexNet's published error: mean_s E_s / E_AlexNet(corruption).

    The published AlexNet figure is the mean over severities 1..5, so this equals Hendrycks'
    sum ratio when all five severities are present.
    """
    mean_err = mean_of(errors.values())
    return mean_err / ALEXNET_ERRORS[corruption]


def alexnet_relative_corruption_error(
    *, corruption: str, errors: Mapping[int, float], clean_error: float
) -> float:
    """Relative CE against AlexNet: (mean_s E_s - E_clean) / (E_AlexNet(c) - E_AlexNet(clean))."""
    mean_err = mean_of(errors.values())
    if not math.isfinite(clean_error):
        return NAN
    return (mean_err - clean_error) / (ALEXNET_ERRORS[corruption] - ALEXNET_CLEAN_ERROR)

"""Pure statistics for accuracies measured on finite image sets (numpy + stdlib; checked against
scipy and statsmodels in tests/test_stats.py; no robusteval imports).

Every accuracy is a fraction in [0, 1] and every interval a two-sided 95% interval unless
``confidence`` says otherwise. One cell's accuracy gets a Wilson score interval; a statistic of
several cells that share images (mCA, mCE, relative robustness, a paired difference of means) gets a
percentile bootstrap that resamples *images* (the rows of a correctness matrix) with one seeded
generator, so the same seed gives the same interval. Paired comparisons of two models on the same
images use the exact McNemar test (a two-sided binomial test on the discordant pairs) and an
Agresti-Min interval for the difference; a family of tests is corrected with Holm's step-down.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

CONFIDENCE = 0.95
#: Bootstrap replicates and seed used by the report (reproducible intervals).
N_BOOT = 1000
SEED = 0


def z_value(confidence: float = CONFIDENCE) -> float:
    """The two-sided normal quantile for ``confidence`` (1.959964 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (exact to float precision)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
        for i in range(k + 1)
    ]
    top = max(logs)
    return math.exp(top) * math.fsum(math.exp(v - top) for v in logs)


def wilson_interval(*, k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (fractions); ``(nan, nan)`` when ``n == 0``."""
    if n <= 0:
        return (math.nan, math.nan)
    z = z_value(confidence)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k <= 0 else max(0.0, centre - half)
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return (lo, hi)


def mcnemar_exact(*, b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts ``b`` (only A right) and ``c``
    (only B right): the binomial test of ``b`` successes in ``b + c`` trials at 1/2, i.e.
    ``min(1, 2 P(X <= min(b, c)))`` — equal to ``scipy.stats.binomtest(b, b + c).pvalue`` (checked in
    the tests; computed here because importing scipy.stats costs seconds). 1.0 if no discordant pair."""
    if b + c == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_half_cdf(min(int(b), int(c)), int(b + c)))


def paired_difference_interval(
    *, b: int, c: int, n: int, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(difference, lower, upper) of acc_A − acc_B on ``n`` paired images, fractions.

    ``b``: images only A got right, ``c``: only B. The difference is ``(b − c) / n``; the interval is
    Agresti & Min (2005): a Wald interval after adding 1/2 to each of the four cells of the 2×2 table.
    """
    if n <= 0:
        return (math.nan, math.nan, math.nan)
    z = z_value(confidence)
    diff = (b - c) / n
    bt, ct, nt = b + 0.5, c + 0.5, n + 2.0
    d = (bt - ct) / nt
    se = math.sqrt(max(0.0, (bt + ct) / nt - d * d) / nt)
    return (diff, max(-1.0, d - z * se), min(1.0, d + z * se))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given; ``nan`` stays ``nan`` and is left out
    of the family). Equal to ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out.tolist()


def mcnemar_pairs_needed(
    *, discordance: float, delta: float = 0.01, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Paired images needed for McNemar's test to detect an accuracy difference ``delta`` (fraction)
    at two-sided level ``alpha`` with ``power``, when a fraction ``discordance`` of images is
    discordant (Connor 1987): n = (z_{α/2} √ψ + z_β √(ψ − δ²))² / δ². ``nan`` if ψ ≤ δ²."""
    if not (math.isfinite(discordance) and discordance > delta * delta and delta > 0):
        return math.nan
    za, zb = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    return (za * math.sqrt(discordance) + zb * math.sqrt(discordance - delta * delta)) ** 2 / (delta * delta)


# --- bootstrap over images ------------------------------------------------------------------


def bootstrap_weights(*, n: int, n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """Multinomial resampling counts float64 [n_boot, n]: row r says how often image i is drawn."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def replicate_means(correct: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-replicate mean of each column of ``correct`` float [n_images, n_cells] (0/1, ``nan`` where
    a cell lacks the image) under resampling ``weights`` [n_boot, n_images] → [n_boot, n_cells]."""
    known = np.isfinite(correct)
    x = np.where(known, correct, 0.0)
    num = weights @ x
    den = weights @ known.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def bootstrap_interval(
    correct: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """(estimate, lower, upper) of ``statistic`` by a percentile bootstrap over images.

    ``correct`` float [n_images, n_cells]: per-image top-1 correctness (0/1, ``nan`` missing) of
    every cell the statistic reads, rows aligned on the same images (a cluster = one image, so
    cells sharing images — severities, models — are resampled together). ``statistic`` maps cell
    accuracies [..., n_cells] to values [...] (vectorised over leading axes). Replicates where the
    statistic is undefined are dropped; ``nan`` bounds when fewer than half remain.
    """
    correct = np.asarray(correct, dtype=np.float64)
    if correct.ndim != 2 or correct.shape[0] == 0:
        return (math.nan, math.nan, math.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = float(statistic(np.nanmean(correct, axis=0)[None, :])[0])
        reps = statistic(
            replicate_means(correct, bootstrap_weights(n=correct.shape[0], n_boot=n_boot, seed=seed))
        )
    reps = reps[np.isfinite(reps)]
    if len(reps) < n_boot / 2:
        return (estimate, math.nan, math.nan)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    return (estimate, float(lo), float(hi))


@dataclass(frozen=True)
class PairedTest:
    """Model A against model B on the same ``n`` images: ``b`` only A right, ``c`` only B right;
    ``diff`` = acc_A − acc_B with its interval (fractions); exact McNemar ``p``."""

    n: int
    b: int
    c: int
    diff: float
    lower: float
    upper: float
    p: float

    @property
    def discordance(self) -> float:
        return (self.b + self.c) / self.n if self.n else math.nan


def paired_test(
    *, correct_a: np.ndarray, correct_b: np.ndarray, confidence: float = CONFIDENCE
) -> PairedTest:
    """Paired comparison of two bool [n] correctness vectors on the same images (same order)."""
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    n = int(a.size)
    b, c = int(np.sum(a & ~bb)), int(np.sum(~a & bb))
    diff, lo, hi = paired_difference_interval(b=b, c=c, n=n, confidence=confidence)
    return PairedTest(n=n, b=b, c=c, diff=diff, lower=lo, upper=hi, p=mcnemar_exact(b=b, c=c))


# --- OOD detection ------------------------------------------------------------------------------


def auroc(*, positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores where ``positive`` should score higher than ``negative``:
    P(pos > neg) + P(pos = neg) / 2 (Mann-Whitney, ties counted half); ``nan`` if a side is empty."""
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return math.nan
    _, inverse, counts = np.unique(np.concatenate([pos, neg]), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average ranks, 1-based
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def average_precision(*, positive: np.ndarray, negative: np.ndarray) -> float:
    """AUPR as average precision (sklearn's ``average_precision_score``): Σ_k (R_k − R_{k−1}) P_k over
    the distinct score thresholds, highest first; ``nan`` if there is no positive."""
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if pos.size == 0:
        return math.nan
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="stable")
    scores, is_pos = scores[order], is_pos[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # end of each distinct threshold
    tp = np.cumsum(is_pos)[last]
    precision = tp / (last + 1)
    recall = tp / pos.size
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

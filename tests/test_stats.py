"""robusteval.stats against hand-computed cases (and statsmodels / scipy where installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robusteval import stats


def test_wilson_matches_the_hand_computed_interval():
    # p = 0.8, n = 10, z = 1.959964: centre 0.716741, half-width 0.226578
    lo, hi = stats.wilson_interval(k=8, n=10)
    assert (lo, hi) == pytest.approx((0.490162, 0.943318), abs=2e-6)
    assert stats.wilson_interval(k=0, n=20)[0] == 0.0
    assert stats.wilson_interval(k=20, n=20)[1] == 1.0
    assert all(math.isnan(v) for v in stats.wilson_interval(k=0, n=0))


def test_wilson_matches_scipy():
    from scipy.stats import binomtest

    for k, n in [(83, 100), (1, 7), (500, 1300)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert stats.wilson_interval(k=k, n=n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_mcnemar_exact_by_hand():
    assert stats.mcnemar_exact(b=1, c=9) == pytest.approx(22 / 1024)  # 2 * (1 + 10) / 2**10
    assert stats.mcnemar_exact(b=5, c=5) == pytest.approx(1.0)
    assert stats.mcnemar_exact(b=0, c=0) == 1.0
    assert stats.mcnemar_exact(b=0, c=6) == pytest.approx(2 / 64)


def test_mcnemar_matches_scipy_binomtest():
    from scipy.stats import binomtest

    for b, c in [(3, 11), (40, 61), (7, 7), (0, 1), (250, 310), (1200, 1100)]:
        assert stats.mcnemar_exact(b=b, c=c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_paired_difference_agresti_min_by_hand():
    diff, lo, hi = stats.paired_difference_interval(b=9, c=1, n=10)
    # cells + 1/2: d = 8/12, var = (11/12 - d^2) / 12
    assert diff == pytest.approx(0.8)
    assert lo == pytest.approx(2 / 3 - 1.959964 * math.sqrt((11 / 12 - 4 / 9) / 12), abs=1e-6)
    assert hi == 1.0
    t = stats.paired_test(correct_a=[1, 1, 0, 1, 0], correct_b=[1, 0, 0, 0, 1])
    assert (t.n, t.b, t.c, t.diff, t.p) == (5, 2, 1, pytest.approx(0.2), pytest.approx(1.0))


def test_holm_by_hand_and_against_statsmodels():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    got = stats.holm([0.2, math.nan, 0.001])
    assert got[0] == pytest.approx(0.2) and math.isnan(got[1]) and got[2] == pytest.approx(0.002)
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(3).random(17) ** 3
    assert stats.holm(p) == pytest.approx(list(multitest.multipletests(p, method="holm")[1]))


def test_power_formula_by_hand():
    # psi 0.1, delta 0.01: (1.959964 * 0.316228 + 0.841621 * 0.316070)^2 / 1e-4 = 7846.5
    assert stats.mcnemar_pairs_needed(discordance=0.1, delta=0.01) == pytest.approx(7846.5, abs=0.5)
    assert math.isnan(stats.mcnemar_pairs_needed(discordance=0.0))


def test_bootstrap_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    x = (rng.random((400, 3)) < [0.8, 0.6, 0.7]).astype(float)
    x[::50, 2] = np.nan  # a cell missing some images

    def mean_of_cells(acc):
        return acc.mean(axis=-1)

    a = stats.bootstrap_interval(x, mean_of_cells, seed=1)
    b = stats.bootstrap_interval(x, mean_of_cells, seed=1)
    assert a == b
    est, lo, hi = a
    assert est == pytest.approx(np.nanmean(x, axis=0).mean())
    assert lo < est < hi
    # one column: close to the Wilson interval of the same data
    col = x[:, :1]
    wl, wh = stats.wilson_interval(k=int(col.sum()), n=400)
    _, blo, bhi = stats.bootstrap_interval(col, mean_of_cells, n_boot=4000)
    assert blo == pytest.approx(wl, abs=0.015) and bhi == pytest.approx(wh, abs=0.015)


def test_auroc_and_aupr_by_hand_and_against_sklearn():
    # pos {3, 2}, neg {1, 2}: pairs (3>1, 3>2, 2>1, 2=2) -> (3 + 0.5) / 4
    assert stats.auroc(positive=[3, 2], negative=[1, 2]) == pytest.approx(3.5 / 4)
    # ranked 3(+) 2(+,-) 1(-): thresholds 3 -> P 1, R .5; 2 -> P 2/3, R 1  => .5 + .5 * 2/3
    assert stats.average_precision(positive=[3, 2], negative=[1, 2]) == pytest.approx(0.5 + 1 / 3)
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    pos, neg = np.round(rng.normal(0.5, 1, 300), 1), np.round(rng.normal(0, 1, 500), 1)
    y = np.r_[np.ones(300), np.zeros(500)]
    s = np.r_[pos, neg]
    assert stats.auroc(positive=pos, negative=neg) == pytest.approx(sk.roc_auc_score(y, s))
    assert stats.average_precision(positive=pos, negative=neg) == pytest.approx(
        sk.average_precision_score(y, s)
    )

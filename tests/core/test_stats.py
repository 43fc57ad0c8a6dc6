"""Success-rate intervals and the paired test the benchmarks report, against scipy's references."""

import pytest
from scipy.stats import binomtest

from tenfold.core.benchkit import mcnemar_p, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (41, 64), (1, 1)])
def test_wilson_interval_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(64, 64)
    assert hi == 1.0 and 0.9 < lo < 1.0  # not empty at a perfect score
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


@pytest.mark.parametrize("a,b", [(0, 0), (7, 1), (1, 7), (5, 5), (12, 3), (0, 6)])
def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs(a, b):
    if a + b == 0:
        assert mcnemar_p(a, b) == 1.0
        return
    assert mcnemar_p(a, b) == pytest.approx(binomtest(a, a + b, 0.5).pvalue)
    assert mcnemar_p(a, b, one_sided=True) == pytest.approx(
        binomtest(a, a + b, 0.5, alternative="greater").pvalue
    )

"""Law-T, Law-P, the aligned partner rank and the choice, against laws with known parameters."""

import math

import numpy as np
import pytest

from tenfold.mars import laws

TRUE_T = laws.LawT(a=3.0, beta=0.6, alpha=0.5, c=4.0)


def test_law_t_fit_recovers_known_parameters():
    d = [64, 64, 64, 128, 128, 128, 256, 256]
    r = [1, 4, 16, 1, 4, 16, 2, 32]
    t = [float(TRUE_T.time(ri, di)) for ri, di in zip(r, d, strict=True)]
    fit = laws.fit_law_t(d, r, t)
    for name in ("a", "beta", "alpha", "c"):
        assert getattr(fit, name) == pytest.approx(getattr(TRUE_T, name), rel=1e-3, abs=1e-3)


def test_law_p_fit_recovers_known_parameters_with_one_e_per_size():
    true = laws.LawP({64.0: 3.0, 128.0: 2.5}, a=0.8, gamma_v=0.7, b=1.5, gamma_l=0.4)
    pts = [(d, rv, rl) for d in (64.0, 128.0) for rv, rl in ((8, 8), (1, 8), (32, 8), (8, 1), (8, 32))]
    ppl = [float(true.ppl(rv, rl, d)) for d, rv, rl in pts]
    fit = laws.fit_law_p(*zip(*pts, strict=True), ppl)
    assert fit.e == pytest.approx(true.e, rel=1e-3)
    for name in ("a", "gamma_v", "b", "gamma_l"):
        assert getattr(fit, name) == pytest.approx(getattr(true, name), rel=1e-3)


def test_partner_rank_inverts_law_t_and_is_nan_below_the_floor():
    for r in (1, 3, 17, 64):
        t = float(TRUE_T.time(r, 512))
        assert TRUE_T.rank_for_time(t, 512) == pytest.approx(r, rel=1e-9)
    # faster than the LLM's floor c: the closed form's bracket is negative (the paper's complex rank)
    assert math.isnan(TRUE_T.rank_for_time(TRUE_T.c - 1, 512))


def test_choose_keeps_aligned_pairs_and_takes_the_lowest_predicted_ppl():
    grid = [1, 2, 4, 8, 16, 32]
    law_v = laws.LawT(a=100.0, beta=0.0, alpha=1.0, c=0.0)  # t_v = 100 / r
    law_l = laws.LawT(a=400.0, beta=0.0, alpha=1.0, c=0.0)  # t_l = 400 / r: aligned when r_l = 4 r_v
    law_p = laws.LawP({1.0: 0.0}, a=1.0, gamma_v=1.0, b=1.0, gamma_l=1.0)  # bigger is better in both
    c = laws.choose(law_v, law_l, law_p, grid, grid, d=1, tol=0.01)
    # partners beyond the grid (64, 128) are not snapped to its end: those pairs would not align
    assert set(c.candidates) == {(1, 4), (2, 8), (4, 16), (8, 32)}
    assert c.pair == (8, 32) and c.fallback is None and c.complex_partners == 0
    # the brief's literal "snapped to grid": partners beyond the grid snap to its end, (16, 32), (32, 32)
    c = laws.choose(law_v, law_l, law_p, grid, grid, d=1, tol=0.01, snap_beyond_grid=True)
    assert c.pair == (32, 32) and (16, 32) in c.candidates
    # with Law-P penalising the LLM rank, the aligned pair with the smallest LLM rank wins
    c = laws.choose(law_v, law_l, laws.LawP({1.0: 0.0}, 0.0, 1.0, -1.0, 1.0), grid, grid, d=1, tol=0.01)
    assert c.pair == (1, 4)


def test_choose_falls_back_and_counts_complex_partners():
    grid = [1, 4, 16]
    law_v = laws.LawT(a=1.0, beta=0.0, alpha=1.0, c=0.0)  # the vision tower converges in <= 1 step
    law_l = laws.LawT(a=1.0, beta=0.0, alpha=1.0, c=50.0)  # the LLM never faster than 50 steps
    law_p = laws.LawP({1.0: 0.0}, 1.0, 1.0, 1.0, 1.0)
    c = laws.choose(law_v, law_l, law_p, grid, grid, d=1, tol=0.5, default=(4, 4))
    assert c.pair == (4, 4) and c.fallback == "no aligned pair" and c.complex_partners == 3
    assert laws.choose(None, law_l, law_p, grid, grid, 1).fallback == "a law did not fit"


def test_too_few_probes_is_a_fit_error():
    with pytest.raises(laws.FitError, match="at least 4"):
        laws.fit_law_t([1, 2, 3], [1, 2, 3], [1, 2, 3])
    with pytest.raises(laws.FitError, match="at least 6"):
        laws.fit_law_p([1, 1, 2, 2, 2], [1, 2, 1, 2, 3], [1, 2, 1, 2, 3], np.ones(5))

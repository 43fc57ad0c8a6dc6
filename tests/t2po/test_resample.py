"""Turn-level dynamic sampling: the band test, the regeneration bound, replacement, and its counts."""

import math

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.rl.multiturn import TurnOutput
from tenfold.t2po.resample import T2POTurns, TurnStats, in_band


def test_band_is_open_on_both_sides():
    assert in_band(0.5, 0.4)  # moved 0.1 < 0.3
    assert not in_band(0.5, 0.5)  # no change at all: not resampled (0 < |d| is strict)
    assert not in_band(0.9, 0.5)  # moved 0.4: progress
    assert not in_band(0.5, None)  # first turn
    assert not in_band(math.nan, 0.5)
    assert in_band(0.5, 0.3, eta=0.3) is True and not in_band(0.5, 0.2, eta=0.3)


class Scripted(T2POTurns):
    """T2POTurns with `_sample` replaced by scores from a script (one list per call)."""

    def __init__(self, scripts, **kw):
        super().__init__(**kw)
        self.scripts, self.calls = list(scripts), []

    def _sample(self, model, tok, prompts, seed):
        scores = self.scripts.pop(0)
        assert len(scores) == len(prompts)
        self.calls.append(len(prompts))
        return [TurnOutput([1], f"s{s}", score=s) for s in scores]


def test_regenerates_at_most_max_try_times_and_keeps_the_last_attempt():
    # prompt 0: first turn (never resampled); prompt 1: stays in the band every time; prompt 2: out
    gen = Scripted([[0.0, 0.45, 1.0], [0.41], [0.42]], resample=True)
    outs = gen(None, None, [[1], [2], [3]], [None, 0.5, 0.5], seed=0)
    assert gen.calls == [3, 1, 1]  # two regenerations of prompt 1 only, then the bound stops it
    assert [o.generations for o in outs] == [1, 3, 1]
    assert outs[1].score == 0.42  # the last attempt replaces the earlier ones, better or not
    assert gen.stats.regenerations == 2 and gen.stats.eligible == 2 and gen.stats.first_in_band == 1


def test_stops_as_soon_as_the_turn_leaves_the_band():
    gen = Scripted([[0.45], [0.95]], resample=True)
    outs = gen(None, None, [[1]], [0.5], seed=0)
    assert outs[0].generations == 2 and gen.calls == [1, 1]


def test_no_resampling_when_off_but_q_is_still_measured():
    gen = Scripted([[0.45, 0.9]], resample=False)
    outs = gen(None, None, [[1], [2]], [0.5, 0.5], seed=0)
    assert [o.generations for o in outs] == [1, 1]
    assert gen.stats.q == 0.5 and gen.stats.regenerations == 0


def test_stats_expectation_formula():
    s = TurnStats(turns=10, eligible=8, first_in_band=4, regenerations=6)
    d = s.as_dict()
    assert d["q"] == 0.5 and d["expected_per_eligible"] == pytest.approx(1 + 0.5 + 0.25)
    assert d["measured_per_eligible"] == pytest.approx(1 + 6 / 8)
    assert d["generations_per_turn"] == pytest.approx(1.6)


def test_bad_settings():
    with pytest.raises(TenfoldError):
        T2POTurns(eta=0)
    with pytest.raises(TenfoldError):
        T2POTurns(max_try=-1)


def test_forced_close_tag_tokens_are_masked_only_when_asked():
    from tenfold.core.models import build_preset
    from tenfold.core.thinking import ThinkingCutoff

    model, tok = build_preset("micro", seed=0)
    prompts = [tok.encode("<think>"), tok.encode("no thinking here:")]
    cut = ThinkingCutoff(budget=4, patience=10**6)
    kept = T2POTurns(cut, max_new_tokens=20, temperature=0.0)(model, tok, prompts, [None, None], seed=0)
    masked = T2POTurns(cut, max_new_tokens=20, temperature=0.0, train_forced=False)(
        model, tok, prompts, [None, None], seed=0
    )
    assert kept[0].loss_mask is None  # the paper's default: every generated token is trained on
    assert masked[0].token_ids == kept[0].token_ids  # the same generation, only the mask differs
    # the budget closes thinking after 4 tokens: the 8 bytes of "</think>" that follow are masked
    assert tok.decode(masked[0].token_ids[4:12]) == "</think>"
    assert masked[0].loss_mask == [1] * 4 + [0] * 8 + [1] * (len(masked[0].token_ids) - 12)
    assert masked[1].loss_mask is None  # nothing forced outside thinking: nothing to mask

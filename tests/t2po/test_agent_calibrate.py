"""The agent's reply format and the calibration of the cut-off on hand-made signals."""

import random

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.core.thinking import CutoffMachine, ThinkingCutoff
from tenfold.t2po.agent import expert_reply, filler, parse_reply
from tenfold.t2po.calibrate import Trace, band_share, choose, first_stagnation, regions, score_grid


def test_parse_reply():
    assert parse_reply("<think>came from west. so: go east.</think> go east") == "go east"
    assert parse_reply("<think>hmm, hmm, hmm") is None  # thinking never closed
    assert parse_reply("<think>x</think>   ") is None
    assert parse_reply("Take  Coin.") == "take coin"  # no thinking at all: the whole reply


def test_expert_reply_has_filler_on_the_asked_share():
    rng = random.Random(0)
    replies = [expert_reply(None, [("o", "go north")], "go east", rng, 0.5, 6) for _ in range(400)]
    assert all(parse_reply(r) == "go east" and "came from south." in r for r in replies)
    with_filler = sum(not r.startswith("<think>came") for r in replies) / len(replies)
    assert 0.4 < with_filler < 0.6
    with pytest.raises(TenfoldError):
        filler(rng, 1)


def test_first_stagnation_matches_the_core_state_machine():
    # a hand-made sequence: jumps, then flat within eps 0.01 from index 3 on
    signals = [0.1, -1.0, 0.2, 0.205, 0.21, 0.212, 0.213, 0.5]
    # counter: t=3 |0.005|->1, t=4 ->2, t=5 ->3 : cut at t=5 with patience 3
    assert first_stagnation(signals, 0.01, 3) == 5
    assert first_stagnation(signals, 0.01, 5) is None
    machine = CutoffMachine(ThinkingCutoff(eps=0.01, patience=3, budget=None), [99], inside=True)
    actions = [machine.step(m) for m in signals[:6]]
    assert actions[:5] == [None] * 5 and actions[5] == 99  # the core forces the close tag at t = 5


def test_regions_and_grid_choice():
    text = "<think>hmm, hmm, came from west. so: go east.</think> go east"
    start, reason, end = regions(text)
    assert text[start:reason] == "hmm, hmm, " and text[end:].startswith("</think>")
    assert regions("go east") is None

    # filler flat (cut there is good), reasoning jumpy: a long-patience tight-eps cut lands in the filler
    def jumpy(n):
        return [float((-1) ** i) for i in range(n)]

    sig = jumpy(start) + [0.3] * (reason - start) + jumpy(end - reason) + [0.0] * (len(text) - end)
    rows = score_grid([Trace(text, sig, None, 0.0)], eps_grid=(1e-3,), patience_grid=(3, 50))
    by_p = {r["patience"]: r for r in rows}
    assert by_p[3]["filler_cut"] == 1.0 and by_p[3]["false_cut"] == 0.0 and by_p[3]["false_stop"] == 0.0
    assert by_p[3]["saved_per_turn"] == end - (start + 3)
    assert by_p[50]["saved_per_turn"] == 0
    assert choose(rows)["patience"] == 3
    # a flat action after the thinking: patience 3 would end it half-written (a false stop)
    flat_action = jumpy(start) + jumpy(end - start) + [0.0] * (len(text) - end)
    row = score_grid([Trace(text, flat_action, None, 0.0)], eps_grid=(1e-3,), patience_grid=(3,))[0]
    assert row["false_stop"] == 1.0 and row["saved_per_turn"] == 0


def test_band_share():
    traces = [Trace("", [], None, 0.1), Trace("", [], 0.1, 0.2), Trace("", [], 0.2, 0.9)]
    assert band_share(traces, 0.3) == 0.5


def test_bare_thoughts_carry_no_reasoning_but_the_right_action():
    rng = random.Random(1)
    replies = [
        expert_reply(None, [("o", "go north")], "go east", rng, 0.5, 6, bare_share=0.25) for _ in range(400)
    ]
    bare = [r for r in replies if "so:" not in r]
    assert 0.18 < len(bare) / len(replies) < 0.32
    assert all(parse_reply(r) == "go east" for r in replies)
    assert "<think></think> go east" in bare  # an empty thought is among them

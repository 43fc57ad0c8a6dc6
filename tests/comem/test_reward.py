"""The memory-training reward: structured action match (verb + arguments) and the length penalty."""

import pytest

from tenfold.comem.reward import (
    RewardConfig,
    action_match,
    edit_similarity,
    length_penalty,
    structured,
    summary_reward,
)
from tenfold.core.errors import TenfoldError


def test_structured_parses_replies_and_bare_actions():
    assert structured("think: door blue 482. act: code 482") == ("code", "482")
    assert structured("Left.") == ("left", "")
    assert structured("") == ("", "")


def test_edit_similarity_against_hand_values():
    assert edit_similarity("482", "482") == 1.0
    assert edit_similarity("482", "483") == pytest.approx(2 / 3)  # one substitution in three
    assert edit_similarity("482", "48") == pytest.approx(2 / 3)  # one deletion
    assert edit_similarity("", "") == 1.0 and edit_similarity("", "12") == 0.0


def test_action_match_follows_the_paper_weights():
    assert action_match("act: code 482", "code 482") == pytest.approx(1.0)
    assert action_match("code 483", "code 482") == pytest.approx(0.4 + 0.6 * 2 / 3)
    assert action_match("left", "left") == pytest.approx(1.0)  # no arguments: equal (empty) arguments
    assert action_match("right", "left") == 0.0  # another function: capped at nothing
    assert action_match("go", "code 482") == 0.0
    with pytest.raises(TenfoldError, match="no verb"):
        action_match("go", "")


def test_length_penalty_starts_after_the_free_length_and_is_capped():
    cfg = RewardConfig(free_chars=10, penalty_per_char=0.1, max_penalty=0.5)
    assert length_penalty("x" * 10, cfg) == 0.0
    assert length_penalty("x" * 13, cfg) == pytest.approx(0.3)
    assert length_penalty("x" * 100, cfg) == 0.5
    assert summary_reward("x" * 13, "code 482", "code 482", cfg) == pytest.approx(0.7)


def test_bad_reward_config():
    with pytest.raises(TenfoldError, match="non-negative"):
        RewardConfig(penalty_per_char=-1)

"""GiGPO's two advantage levels on hand-made trajectories, computed here by hand."""

import math

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.rl.gigpo import (
    StepRecord,
    discounted_returns,
    episode_advantages,
    gigpo_advantages,
    step_advantages,
    step_groups,
)


def test_discounted_returns_by_hand():
    assert discounted_returns([0, 0, 1], 0.5) == [0.25, 0.5, 1.0]
    assert discounted_returns([-0.1, 0, 1], 0.95) == pytest.approx([-0.1 + 0.95**2, 0.95, 1.0])


def two_episodes():
    # one task, two episodes from the same start "A". Episode 0: A -> B -> win (rewards 0, 1).
    # Episode 1: A -> C (invalid, -0.1) -> C -> never wins (0).
    return [
        StepRecord(0, 0, "A", 0.0),
        StepRecord(0, 0, "B", 1.0),
        StepRecord(0, 1, "A", -0.1),
        StepRecord(0, 1, "C", 0.0),
        StepRecord(0, 1, "C", 0.0),
    ]


def test_step_groups_join_identical_anchors_within_a_task_only():
    steps = two_episodes() + [StepRecord(1, 2, "A", 0.0)]  # same text, another task: its own group
    assert step_groups(steps) == [0, 1, 0, 2, 2, 3]


def test_episode_level_is_grpo_over_the_groups_episodes():
    adv = episode_advantages(two_episodes())
    # returns 1.0 and -0.1: mean 0.45, population std 0.55 -> +1 and -1
    assert adv[0] == pytest.approx(1.0, abs=1e-5) and adv[1] == pytest.approx(-1.0, abs=1e-5)


def test_step_level_normalises_discounted_returns_within_anchor_groups():
    g = 0.95
    adv = step_advantages(two_episodes(), gamma=g)
    # anchor A: returns 0 + g*1 = 0.95 (episode 0) and -0.1 (episode 1) -> +1 / -1
    assert adv[0] == pytest.approx(1.0, abs=1e-5) and adv[2] == pytest.approx(-1.0, abs=1e-5)
    assert adv[1] == 0.0  # B is reached once: no comparison, no signal
    # anchor C twice in episode 1, both with return 0: equal -> 0
    assert adv[3] == 0.0 and adv[4] == 0.0


def test_combined_advantage_and_grpo_special_case():
    steps = two_episodes()
    total = gigpo_advantages(steps, gamma=0.95, step_weight=1.0)
    ep, st = episode_advantages(steps), step_advantages(steps, 0.95)
    assert total == pytest.approx([ep[s.episode] + a for s, a in zip(steps, st, strict=True)])
    assert gigpo_advantages(steps, step_weight=0.0) == pytest.approx([ep[s.episode] for s in steps])
    half = gigpo_advantages(steps, step_weight=0.5)
    assert half[0] == pytest.approx(ep[0] + 0.5 * st[0])


def test_unscaled_and_bad_input():
    adv = episode_advantages(two_episodes(), scale_by_std=False)
    assert adv[0] == pytest.approx(0.55) and adv[1] == pytest.approx(-0.55)
    with pytest.raises(TenfoldError, match="gamma"):
        gigpo_advantages(two_episodes(), gamma=1.5)
    with pytest.raises(TenfoldError, match="episode 0"):
        episode_advantages([StepRecord(0, 0, "A", 0), StepRecord(1, 0, "B", 0)])


def test_all_equal_group_gives_zero_not_nan():
    steps = [StepRecord(0, e, "A", 1.0) for e in range(4)]
    assert all(a == 0.0 and not math.isnan(a) for a in gigpo_advantages(steps))

"""The memory model's reward training: which cuts and steps it learns from, the reward the frozen agent
gives a summary, and one GRPO step of the rollout worker."""

import asyncio

import pytest

from tenfold.comem.context import SUMMARY_PREFIX
from tenfold.comem.memory_rl import (
    AgentJudge,
    MemoryRLRecipe,
    MemoryRollouts,
    cut_items,
    mix_cuts,
    targets_of,
)
from tenfold.comem.reward import RewardConfig
from tenfold.comem.trajectories import episode_steps
from tenfold.core.errors import TenfoldError
from tenfold.core.models import build_preset
from tenfold.envs.vault import VaultConfig, VaultGame
from tests.comem.fakes import ReadingAgent


def played(cfg: VaultConfig) -> VaultGame:
    """A game played by the expert (what a full-context agent that never errs would log)."""
    game = VaultGame(cfg)
    while not game.done:
        game.step(game.expert_reply())
    return game


def reading_actor(views):
    agent = ReadingAgent()
    return [asyncio.run(agent.chat(v)).text for v in views]


@pytest.fixture(scope="module")
def tok():
    return build_preset("tiny")[1]


def test_a_cut_serves_the_critical_steps_whose_fact_it_covers():
    game = played(VaultConfig(40, 2, 1, seed=3))
    steps = episode_steps(game)
    for cut in range(4, 40, 4):
        got = {s.t for s in targets_of(game, steps, cut)}
        want = {f.use for f in game.facts if f.reveal < cut <= f.use}
        assert got == want
        assert all(s.critical and s.action == game.expert_action(s.t) for s in targets_of(game, steps, cut))


def test_cut_items_flag_the_cuts_that_add_a_fact_and_carry_the_expert_previous_summary(tok):
    game = played(VaultConfig(40, 2, 1, seed=5))
    items = cut_items([game], None, tok, 4, "expert", seed=0)
    assert items and all(it.targets for it in items)
    for it in items:
        assert it.adds == any(it.cut - 4 <= f.reveal < it.cut <= f.use for f in game.facts)
        text = tok.decode(list(it.prompt))
        previous = game.expert_summary(it.cut - 4) if it.cut > 4 else "nothing to keep."
        assert f"Memory so far: {previous}" in text
    assert any(it.adds for it in items) and not all(it.adds for it in items)


def test_mix_cuts_keeps_every_adding_cut_and_caps_the_carried_ones(tok):
    games = [played(VaultConfig(60, 3, 1, seed=s)) for s in range(6)]
    items = cut_items(games, None, tok, 4, "expert", seed=0)
    mixed = mix_cuts(items, 0.25, seed=0)
    adds = [it for it in items if it.adds]
    assert {id(it) for it in adds} <= {id(it) for it in mixed}
    assert len(mixed) - len(adds) == round(len(adds) * 0.25 / 0.75)


def test_the_reward_follows_the_action_the_agent_takes_from_the_summary(tok):
    game = played(VaultConfig(40, 2, 1, seed=7))
    items = [it for it in cut_items([game], None, tok, 4, "expert", seed=0) if len(it.targets) == 3]
    it = items[0]
    door = next(f for f in game.facts if f.kind == "door")
    wrong_digit = door.text[:-1] + str((int(door.text[-1]) + 1) % 10)
    everything = "; ".join(f.text for f in game.facts) + "."
    judge = AgentJudge(reading_actor, RewardConfig(free_chars=100))
    full, one_off, nothing, verbose = judge.rewards(
        [
            (it, everything),
            (it, everything.replace(door.text, wrong_digit)),
            (it, "nothing to keep."),
            (it, everything + " filler" * 40),
        ]
    )
    assert full == {"reward": 1.0, "match": 1.0, "penalty": 0.0}
    # one wrong digit: that door's code is 2/3 similar, the other two steps are right
    assert one_off["match"] == pytest.approx((2 + 0.4 + 0.6 * 2 / 3) / 3)
    # no facts: the reading agent answers `code 0` / `left`, right by chance at most at the fork
    assert nothing["match"] < one_off["match"]
    assert verbose["match"] == 1.0 and verbose["penalty"] > 0 and verbose["reward"] < 1.0


def test_the_agent_sees_the_task_the_summary_and_the_latest_observation_only(tok):
    game = played(VaultConfig(40, 2, 1, seed=7))
    it = cut_items([game], None, tok, 4, "expert", seed=0)[0]
    seen = []
    AgentJudge(lambda views: seen.extend(views) or ["go"] * len(views)).rewards([(it, "door red 123.")])
    for view, step in zip(seen, it.targets, strict=True):
        assert [m["role"] for m in view] == ["system", "user", "user"]
        assert view[1]["content"].endswith(SUMMARY_PREFIX + "door red 123.")
        assert view[2]["content"] == game.observation(step.t)


def test_one_worker_step_gives_group_relative_advantages(tok):
    model, tok = build_preset("tiny", seed=0)
    games = [played(VaultConfig(40, 2, 1, seed=s)) for s in range(3)]
    items = cut_items(games, None, tok, 4, "mixed", seed=0)
    cfg = MemoryRLRecipe(group_size=4, prompts_per_step=3, summary_tokens=12).rl_config()
    batch = MemoryRollouts(items, AgentJudge(reading_actor), cfg).collect(model, tok, step=0)
    assert len(batch.rollouts) == batch.generated == 12
    for g in range(3):
        group = [r for r in batch.rollouts if r.group == g]
        assert len(group) == 4
        assert abs(sum(r.advantage for r in group)) < 1e-4
        # a higher reward never gets a lower advantage within a group
        ranked = sorted(group, key=lambda r: r.reward)
        assert all(a.advantage <= b.advantage + 1e-6 for a, b in zip(ranked, ranked[1:], strict=False))
    assert 0 <= batch.metrics["informative_share"] <= 1


def test_bad_recipes_are_refused():
    with pytest.raises(TenfoldError, match="previous_from"):
        MemoryRLRecipe(previous_from="oracle").validate()
    with pytest.raises(TenfoldError, match="carry_share"):
        MemoryRLRecipe(carry_share=1.0).validate()
    with pytest.raises(TenfoldError, match="group_size"):
        MemoryRLRecipe(group_size=1).validate()


def test_every_character_costs_and_a_cut_off_summary_pays_the_most(tok):
    game = played(VaultConfig(40, 2, 1, seed=7))
    it = cut_items([game], None, tok, 4, "expert", seed=0)[0]
    needed = "; ".join(f.text for f in game.facts) + "."
    judge = AgentJudge(reading_actor)
    once, twice, cut = judge.rewards(
        [(it, needed), (it, needed + " " + needed), (it, needed)], [False, False, True]
    )
    assert once["match"] == twice["match"] == cut["match"] == 1.0
    assert once["reward"] > twice["reward"] > cut["reward"]  # repeating facts is not free
    assert cut["penalty"] == judge.reward.max_penalty

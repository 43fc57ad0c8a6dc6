import pytest

from tenfold.core.errors import TenfoldError
from tenfold.envs.text_env import NOTHING_HAPPENED, TaskSpec, TextEnv, VaultEnv
from tenfold.envs.vault import VaultConfig


def make(seed=0, steps=20, doors=1, forks=1, **kw) -> VaultEnv:
    return VaultEnv(VaultConfig(steps, doors, forks, seed), **kw)


def play(env, actions):
    return [env.step(a) for a in actions]


def test_vault_env_is_a_text_env():
    assert isinstance(make(), TextEnv)


def test_expert_plan_from_reset_wins():
    env = make(seed=3)
    env.reset()
    results = play(env, env.expert_plan())
    assert all(r.valid for r in results) and not any(r.done for r in results[:-1])
    last = results[-1]
    assert last.done and last.won and last.reward == 1.0 and env.won
    assert sum(r.reward for r in results) == 1.0  # Vault rewards only the winning ending
    assert env.steps_taken == 20 and env.expert_plan() == []


def test_expert_plan_from_a_later_state_still_wins():
    env = make(seed=4)
    play(env, ["go", "dance", "go"])  # two rooms walked, one invalid action
    plan = env.expert_plan()
    assert len(plan) == 18 and play(env, plan)[-1].won


def test_wrong_code_at_a_door_is_valid_but_loses():
    env = make(seed=5, steps=20, doors=2, forks=0)
    results = []
    while not env.done:
        action = env.expert_plan()[0]
        if action.startswith("code "):  # a wrong code: the walk moves on, the episode is lost
            action = "code 99" if action != "code 99" else "code 98"
        results.append(env.step(action))
    assert all(r.valid for r in results)
    assert results[-1].done and not results[-1].won and not env.won
    assert sum(r.reward for r in results) == 0.0 and env.steps_taken == 20


def test_step_after_done_raises_and_reset_replays():
    env = make(seed=1)
    first = env.reset()
    play(env, env.expert_plan())
    with pytest.raises(TenfoldError, match="over"):
        env.step("go")
    assert env.reset() == first and env.steps_taken == 0 and not env.won


def test_admissible_contains_the_expert_action_everywhere():
    env = make(seed=2, steps=24, doors=2, forks=2)
    while not env.done:
        admissible = env.admissible_actions()
        assert env.expert_plan()[0] in admissible and "go" in admissible
        env.step(env.expert_plan()[0])
    assert env.admissible_actions() == []


def test_invalid_action_keeps_the_room_and_counts_a_step():
    env = make(seed=6)
    obs = env.reset()
    plan = env.expert_plan()
    r = env.step("dance")
    assert not r.valid and not r.done and r.reward == 0.0
    assert r.observation == f"{NOTHING_HAPPENED} {obs}"
    assert env.steps_taken == 1 and env.expert_plan() == plan
    assert not env.step("left").valid  # a fork's word in a corridor is outside the room's grammar


def test_react_replies_are_parsed():
    env = make(seed=7)
    results = play(env, [f"think: easy. act: {a}" for a in env.expert_plan()])
    assert results[-1].won


def test_step_cap_ends_an_episode_of_invalid_actions():
    env = make(seed=8, max_steps=25)
    results = []
    while not env.done:
        results.append(env.step("dance"))
    assert len(results) == 25 == env.steps_taken and results[-1].done and not results[-1].won
    with pytest.raises(TenfoldError):
        env.step("go")


def test_task_spec_builds_identical_copies():
    spec = TaskSpec.of("vault", seed=9, steps=20, doors=1, forks=1)
    assert spec == TaskSpec.of("vault", forks=1, doors=1, steps=20, seed=9) and hash(spec)
    group = [spec.make() for _ in range(4)]
    assert len({env.reset() for env in group}) == 1
    assert len({tuple(env.expert_plan()) for env in group}) == 1
    assert group[0].max_steps == 40
    other = TaskSpec.of("vault", seed=10, steps=20, doors=1, forks=1).make()
    assert other.expert_plan() != group[0].expert_plan()


def test_bad_specs_raise():
    with pytest.raises(TenfoldError, match="unknown env family 'zork'"):
        TaskSpec.of("zork")
    with pytest.raises(TenfoldError, match="door or fork"):
        TaskSpec.of("vault", doors=0, forks=0).make()
    with pytest.raises(TenfoldError, match="max_steps"):
        TaskSpec.of("vault", max_steps=0)
    with pytest.raises(TenfoldError, match="below"):
        make(steps=20, max_steps=10)

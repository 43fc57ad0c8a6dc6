import random

import pytest

pytest.importorskip("textworld")

from tenfold.core.errors import TenfoldError  # noqa: E402
from tenfold.envs import textworld_games as twg  # noqa: E402
from tenfold.envs.text_env import NOTHING_HAPPENED, TaskSpec, TextEnv  # noqa: E402
from tenfold.envs.textworld_games import GameSpec, TextWorldEnv, build_game, game_pool  # noqa: E402

COIN_SHORT = GameSpec("coin_collector", level=3, seed=1)
COIN_DISTRACT = GameSpec("coin_collector", level=104, seed=2)  # 4-room chain + 4 dead ends
SIMPLE = GameSpec("simple", rewards="dense", goal="brief", seed=0)
SPECS = [COIN_SHORT, COIN_DISTRACT, SIMPLE]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tw-games")
    for spec in SPECS:
        build_game(spec, folder)
    return folder


def room(observation: str) -> str:
    return observation.removeprefix(f"{NOTHING_HAPPENED} ").split(".")[0]


def play_expert(env):
    obs = [env.reset()]
    results = []
    for action in env.expert_plan():
        results.append(env.step(action))
        obs.append(results[-1].observation)
    return obs, results


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.family}-{s.level}")
def test_expert_plan_from_reset_wins(folder, spec):
    env = spec.make(folder)
    assert isinstance(env, TextEnv)
    _, results = play_expert(env)
    assert results and all(r.valid for r in results)
    assert results[-1].done and results[-1].won and env.won
    assert len(results) <= env.max_steps and env.steps_taken == len(results)
    assert sum(r.reward for r in results) == env.max_score > 0
    assert env.expert_plan() == [] and env.admissible_actions() == []


def test_expert_plan_is_replanned_from_the_current_state(folder):
    env = COIN_DISTRACT.make(folder)
    env.reset()
    detour = next(a for a in env.useful_actions() if a != env.expert_plan()[0])  # off the chain
    env.step(detour)
    plan = env.expert_plan()
    assert plan[0] != detour and [env.step(a) for a in plan][-1].won


def test_invalid_action_leaves_the_state_unchanged(folder):
    env = SIMPLE.make(folder)
    obs = env.reset()
    admissible = env.admissible_actions()
    for action in ("go west", "take moon", "dance", "quit"):
        r = env.step(action)
        assert not r.valid and not r.done and r.reward == 0.0
        assert r.observation == f"{NOTHING_HAPPENED} {obs}" and room(r.observation) == room(obs)
        assert env.admissible_actions() == admissible
    assert env.steps_taken == 4
    assert env.last_feedback == twg.NOT_A_VERB  # `quit` never reaches the game
    env.step("take moon")
    assert "can't" in env.last_feedback.lower()  # TextWorld's own answer is kept
    assert [env.step(a) for a in env.expert_plan()][-1].won  # the game still plays normally


def test_a_parser_shortcut_is_undone(folder):
    env = COIN_SHORT.make(folder)
    env.reset()
    for action in env.expert_plan()[:-1]:  # walk to the coin
        env.step(action)
    r = env.step("take the coin")  # Inform accepts it, but it is not an admissible command
    assert (
        not r.valid and not r.won and "here: coin" in r.observation and "carrying: nothing" in r.observation
    )
    assert env.last_feedback == twg.UNDONE
    assert env.step("take coin").won


def test_same_spec_same_game_and_seeds_differ(folder, tmp_path):
    again = build_game(COIN_SHORT, tmp_path)  # a fresh build in another folder
    first, _ = play_expert(COIN_SHORT.make(folder))
    second, _ = play_expert(TextWorldEnv(again))
    assert first == second
    assert play_expert(COIN_SHORT.make(folder))[0] == first  # and the same env replays identically
    other = GameSpec("coin_collector", level=3, seed=5)
    assert play_expert(other.make(tmp_path))[0] != first


def test_task_spec_group_of_identical_copies(folder):
    spec = TaskSpec.of("coin_collector", level=3, seed=1)
    group = [spec.make(folder) for _ in range(3)]
    assert len({env.reset() for env in group}) == 1 and group[0].game_file == build_game(COIN_SHORT, folder)


def test_building_twice_uses_the_cache(folder, monkeypatch):
    path = build_game(COIN_SHORT, folder)
    mtime = path.stat().st_mtime_ns

    def fail(*_):
        raise AssertionError("regenerated a cached game")

    monkeypatch.setattr(twg, "_generate", fail)
    assert build_game(COIN_SHORT, folder) == path and path.stat().st_mtime_ns == mtime
    assert path.name == "game.z8" and path.with_suffix(".json").is_file()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_step_cap_ends_the_episode(folder):
    env = COIN_DISTRACT.make(folder)
    assert env.max_steps == 3 * len(env.walkthrough) + 5
    env.reset()
    results = []
    while not env.done:
        results.append(env.step("inventory"))  # admissible, but it gets nowhere
    assert all(r.valid for r in results) and len(results) == env.max_steps
    assert results[-1].done and not results[-1].won
    with pytest.raises(TenfoldError, match="over"):
        env.step("look")
    short = TextWorldEnv(build_game(COIN_DISTRACT, folder), max_steps=2)
    assert [short.step("dance").done for _ in range(2)] == [False, True]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.family}-{s.level}")
def test_observations_are_short(folder, spec):
    env = spec.make(folder)
    seen, _ = play_expert(env)
    rng = random.Random(0)
    for _ in range(3):
        seen.append(env.reset())
        while not env.done:
            seen.append(env.step(rng.choice(env.useful_actions() + ["dance"])).observation)
    assert all(o.startswith(("room: ", NOTHING_HAPPENED)) and "carrying: " in o for o in seen)
    assert max(len(o) for o in seen) <= 220


def test_without_the_expert_planner_the_game_plays_the_same(folder):
    with_plan, without = COIN_DISTRACT.make(folder), COIN_DISTRACT.make(folder, expert=False)
    assert with_plan.max_steps == without.max_steps and with_plan.reset() == without.reset()
    results = [without.step(a) for a in with_plan.expert_plan()]
    assert results[-1].won
    with pytest.raises(TenfoldError, match="expert=False"):
        without.expert_plan()


def test_useful_actions_drop_information_actions(folder):
    env = SIMPLE.make(folder)
    env.reset()
    useful, admissible = env.useful_actions(), env.admissible_actions()
    assert {"look", "inventory"} <= set(admissible) and set(useful) < set(admissible)
    assert not [a for a in useful if a.split()[0] in ("look", "inventory", "examine")]
    assert env.expert_plan()[0] in useful


def test_game_pool_is_distinct_deterministic_and_heldout_disjoint():
    train = game_pool("coin_collector", 20, seed=0, level=5)
    assert len(set(train)) == 20 and train == game_pool("coin_collector", 20, seed=0, level=5)
    heldout = game_pool("coin_collector", 20, seed=0, split="heldout", level=5)
    assert not {s.seed for s in train} & {s.seed for s in heldout}
    assert all(s.seed < twg.HELDOUT_SEED <= h.seed for s, h in zip(train, heldout, strict=True))
    with pytest.raises(TenfoldError, match="split"):
        game_pool("coin_collector", 2, split="test", level=5)


@pytest.mark.parametrize(
    "spec,match",
    [
        (GameSpec("coin_collector", level=0), "level must be in 1-150 or 201-233.*got 0"),
        (GameSpec("coin_collector", level=180), "got 180"),
        (GameSpec("zork"), "unknown TextWorld family 'zork'"),
        (GameSpec("simple", rewards="lots"), "dense, balanced or sparse"),
        (GameSpec("simple", level=4), "level=4 has no meaning for simple"),
        (GameSpec("cooking", recipe=2, take=3), "take must be in 0..recipe=2"),
        (GameSpec("cooking", go=4), "1, 6, 9 or 12"),
    ],
)
def test_bad_specs_raise(spec, match, tmp_path):
    with pytest.raises(TenfoldError, match=match):
        build_game(spec, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written


def test_garbage_from_a_collapsed_policy_never_reaches_the_interpreter(folder):
    """Non-ASCII text raised inside jericho and long garbage crashed frotz: both are answered here."""
    env = COIN_SHORT.make(folder)
    before = env.reset()
    for action in ("go " + "é" * 100, "take " + "x" * 300, "go \x00\x01 east"):
        res = env.step(action)
        assert not res.valid and res.observation == f"{NOTHING_HAPPENED} {before}"
    assert env.step(env.expert_plan()[0]).valid  # the game still plays

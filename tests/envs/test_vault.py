import pytest

from tenfold.core.errors import TenfoldError
from tenfold.envs.vault import VaultConfig, VaultGame, parse_action


@pytest.mark.parametrize(
    "steps,doors,forks,seed", [(20, 1, 1, 0), (40, 2, 1, 1), (80, 3, 2, 2), (12, 2, 1, 5)]
)
def test_layout_properties(steps, doors, forks, seed):
    g = VaultGame(VaultConfig(steps, doors, forks, seed))
    assert len(g.facts) == doors + forks
    third = steps // 3
    for f in g.facts:
        assert 1 <= f.reveal <= third < steps - 1 - third <= f.use < steps - 1
        assert f.text in g.observation(f.reveal)  # revealed verbatim
        if f.kind == "door":  # the code is not repeated where it is needed
            assert f.value not in g.observation(f.use).replace(f"{f.use}:", "")
    assert len({f.reveal for f in g.facts}) == len(g.facts) == len({f.use for f in g.facts})
    assert g.observation(steps - 1).endswith("exit.")


def test_same_seed_same_game_and_seeds_differ():
    a, b = VaultGame(VaultConfig(40, 2, 1, 7)), VaultGame(VaultConfig(40, 2, 1, 7))
    assert [a.observation(t) for t in range(40)] == [b.observation(t) for t in range(40)]
    c = VaultGame(VaultConfig(40, 2, 1, 8))
    assert [a.observation(t) for t in range(40)] != [c.observation(t) for t in range(40)]


def test_expert_succeeds_and_a_forgetful_agent_fails():
    g = VaultGame(VaultConfig(40, 2, 1, 3))
    obs, n = g.observation(), 0
    while obs is not None:
        obs = g.step(g.expert_reply())
        n += 1
    assert n == 40 and g.success and g.score == 1.0 and g.done
    with pytest.raises(TenfoldError, match="over"):
        g.step("go")
    h = VaultGame(VaultConfig(40, 2, 1, 3))
    while not h.done:
        h.step("think: no idea. act: go")  # never remembers anything: every critical step wrong
    assert not h.success and h.score == 0.0 and h.t == 40  # the episode still runs to its end


def test_expert_summary_keeps_exactly_the_facts_still_needed():
    g = VaultGame(VaultConfig(60, 3, 2, 4))
    for cut in range(61):
        kept = [f for f in g.facts if f.text in g.expert_summary(cut)]
        assert {f.text for f in kept} == {f.text for f in g.facts if f.reveal < cut <= f.use}
    assert g.expert_summary(0) == "nothing to keep."
    assert all("act:" not in g.expert_summary(c) for c in range(61))  # facts, never actions


def test_parse_action():
    assert parse_action("think: door blue 123. act: code 123") == "code 123"
    assert parse_action("think: x. ACT:  Left.") == "left"
    assert parse_action("go") == "go"
    assert parse_action("") == ""


@pytest.mark.parametrize("cfg", [VaultConfig(5, 2, 1), VaultConfig(40, 0, 0), VaultConfig(40, 9, 0)])
def test_bad_configs(cfg):
    with pytest.raises(TenfoldError):
        VaultGame(cfg)

"""Logged full-context trajectories, on a scripted agent that reads the facts in its prompt."""

from tenfold.comem.trajectories import log_trajectories
from tenfold.envs.vault import VaultConfig, VaultGame
from tests.comem.fakes import ReadingAgent


def test_every_step_is_logged_with_what_the_agent_saw():
    configs = [VaultConfig(16, 2, 1, seed=s) for s in (1, 2)]
    steps = log_trajectories(configs, ReadingAgent())
    assert len(steps) == 32
    for s in steps:
        game = VaultGame(s.config)
        # the agent saw the system prompt, the task and every earlier room with its reply
        assert len(s.messages) == 2 + 2 * s.t + 1
        assert s.messages[-1]["content"] == game.observation(s.t)
        # with full context the reading agent takes the expert's action everywhere
        assert s.action == game.expert_action(s.t)
    assert sum(s.critical for s in steps) == 2 * 3

"""Logged full-context trajectories: the data CoMem's memory model is trained on by reward.

The paper trains its memory model offline on trajectories of the full-context agent: for a history cut,
the memory model writes a summary, the frozen agent acts from it, and the reward compares that action
with the one the full-context agent took (`comem.reward`). Here the full-context agent plays Vault
games on training seeds, and every step is kept as the chat the agent saw and the action it took.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tenfold.envs.vault import AGENT_SYSTEM, TASK, VaultConfig, VaultGame, parse_action


@dataclass(frozen=True)
class LoggedStep:
    config: VaultConfig
    t: int
    messages: tuple[dict, ...]  # what the full-context agent saw before acting at step t
    action: str  # the action it took (parsed from its reply)
    critical: bool  # a door or a fork: the step where a remembered fact decides the action


def episode_steps(game: VaultGame) -> list[LoggedStep]:
    """The logged steps of a played game (its `log` of (observation, reply))."""
    history: list[dict] = [{"role": "system", "content": AGENT_SYSTEM}, {"role": "user", "content": TASK}]
    out = []
    critical = {fa.use for fa in game.facts}
    for t, (obs, reply) in enumerate(game.log):
        history.append({"role": "user", "content": obs})
        out.append(LoggedStep(game.cfg, t, tuple(history), parse_action(reply), t in critical))
        history.append({"role": "assistant", "content": reply})
    return out


def episode_messages(game: VaultGame) -> list[dict]:
    """The whole played game as the full-context agent's chat (its own replies included)."""
    msgs: list[dict] = [{"role": "system", "content": AGENT_SYSTEM}, {"role": "user", "content": TASK}]
    for obs, reply in game.log:
        msgs += [{"role": "user", "content": obs}, {"role": "assistant", "content": reply}]
    return msgs


async def _play(configs: list[VaultConfig], agent) -> list[VaultGame]:
    from tenfold.comem.runtime import PolicyConfig, run_episode

    games = [VaultGame(c) for c in configs]
    await asyncio.gather(
        *(run_episode(g, agent, None, PolicyConfig("full"), AGENT_SYSTEM, TASK) for g in games)
    )
    return games


def play_full(configs: list[VaultConfig], agent) -> list[VaultGame]:
    """Each game played to its end with full context on `agent` (a Backend); `game.log` holds it."""
    return asyncio.run(_play(configs, agent))


def log_trajectories(configs: list[VaultConfig], agent) -> list[LoggedStep]:
    """Play each game with full context on `agent` (a Backend) and log every step."""
    return [s for g in play_full(configs, agent) for s in episode_steps(g)]

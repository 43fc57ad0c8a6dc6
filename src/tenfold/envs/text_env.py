"""A common protocol for multi-turn text environments, and the Vault game behind it.

Multi-turn agent RL (T2PO, arXiv 2605.02178) plays groups of rollouts of one task: the trainer builds G
identical copies of a game, lets the policy play each, and compares their returns. This module gives the
pieces every environment shares:

- `TextEnv`, the protocol: `reset() -> str`, `step(action) -> StepResult`, `admissible_actions()`,
  `expert_plan()` (the actions that win from the *current* state), `won`, `steps_taken`, `max_steps`.
- `TaskSpec`, a small frozen description of one task (family, difficulty params, seed) whose `make()`
  builds a fresh env, so `[spec.make() for _ in range(G)]` is a group of identical games.
- `VaultEnv`, the Vault memory game (`tenfold.envs.vault`) behind the protocol.

Invalid actions. Playing an action that is not admissible is not an error: `step` answers
`valid=False`, the game state does not change (the step counter does), and the observation starts with
`nothing happened.`. Every episode ends at `max_steps` at the latest, so a policy that only babbles
still finishes. Stepping an episode that is over raises `TenfoldError`.

Vault specifics. Each room has a small action grammar: `go` everywhere; at a keypad door also
`code <digits>`; at a fork also `left` / `right`; in the last room also `exit`. Actions inside the
grammar are valid, even when wrong: a wrong code is valid, scored as a mistake, and the walk moves on
(the game's design: wrong answers never end the episode). Anything else (`dance`, `left` in a corridor)
is invalid and the agent stays in the room. `admissible_actions()` cannot list all thousand codes, so it
lists the expert action plus `go`. The reward is 1.0 on the step that ends a won episode, else 0: Vault
has no score changes along the way, only success at the end. `max_steps` defaults to twice the number
of rooms, so an agent has as many invalid moves to spare as there are rooms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tenfold.core.errors import TenfoldError
from tenfold.envs.vault import VaultConfig, VaultGame, parse_action

NOTHING_HAPPENED = "nothing happened."  # the observation prefix after an invalid action
TEXTWORLD_FAMILIES = ("coin_collector", "simple", "cooking")  # built by tenfold.envs.textworld_games
FAMILIES = ("vault", *TEXTWORLD_FAMILIES)


@dataclass
class StepResult:
    observation: str  # what the agent sees next (compact text)
    reward: float  # this step's environment reward (game score change; Vault: 1.0 on a won ending)
    done: bool  # episode over: won, lost, or the step cap reached
    won: bool
    valid: bool  # was the action admissible in the state it was played in


@runtime_checkable
class TextEnv(Protocol):
    name: str
    max_steps: int  # the step cap per episode

    def reset(self) -> str: ...

    def step(self, action: str) -> StepResult: ...

    def admissible_actions(self) -> list[str]: ...

    def expert_plan(self) -> list[str]: ...

    @property
    def won(self) -> bool: ...

    @property
    def steps_taken(self) -> int: ...


@dataclass(frozen=True)
class TaskSpec:
    """One task: an env family, its difficulty params (sorted (name, value) pairs) and a seed.

    Frozen and hashable, so a trainer can key groups and results by it. `make()` builds a fresh env of
    the task; TextWorld families build (or reuse from the cache) their game file in `folder`.
    """

    family: str
    params: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    max_steps: int | None = None  # None: the family's default

    @classmethod
    def of(cls, family: str, seed: int = 0, max_steps: int | None = None, **params: Any) -> TaskSpec:
        return cls(family, tuple(sorted(params.items())), seed, max_steps).validate()

    def validate(self) -> TaskSpec:
        if self.family not in FAMILIES:
            raise TenfoldError(f"unknown env family {self.family!r}; accepted: {', '.join(FAMILIES)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise TenfoldError(f"max_steps must be >= 1, got {self.max_steps}")
        return self

    def make(self, folder: Any = None, expert: bool = True) -> TextEnv:
        """A fresh env of the task. `expert=False`: a TextWorld game does not recompute its expert plan
        after every step (1.2-4x faster steps; `expert_plan()` is then unavailable)."""
        self.validate()
        params = dict(self.params)
        if self.family == "vault":
            return VaultEnv(VaultConfig(seed=self.seed, **params), max_steps=self.max_steps)
        from tenfold.envs.textworld_games import GameSpec  # lazy: textworld is an optional extra

        spec = GameSpec(self.family, seed=self.seed, **params)
        return spec.make(folder, max_steps=self.max_steps, expert=expert)


def check_not_done(env: TextEnv, done: bool) -> None:
    if done:
        raise TenfoldError(
            f"{env.name}: the episode is over after {env.steps_taken} steps; call reset() to play again"
        )


_CODE = re.compile(r"code \d+")


class VaultEnv:
    """The Vault game (`tenfold.envs.vault.VaultGame`) as a `TextEnv`; see the module docstring."""

    def __init__(self, cfg: VaultConfig, max_steps: int | None = None):
        self.cfg = cfg.validate()
        self.name = f"vault-{cfg.steps}-{cfg.doors}-{cfg.forks}-s{cfg.seed}"
        self.max_steps = 2 * cfg.steps if max_steps is None else max_steps
        if self.max_steps < cfg.steps:
            raise TenfoldError(f"max_steps={self.max_steps} is below the {cfg.steps} rooms of the walk")
        self.reset()

    def reset(self) -> str:
        self.game = VaultGame(self.cfg)
        self._steps = 0
        return self.game.observation()

    @property
    def won(self) -> bool:
        return self.game.done and self.game.success

    @property
    def steps_taken(self) -> int:
        return self._steps

    @property
    def done(self) -> bool:
        return self.game.done or self._steps >= self.max_steps

    def allowed(self, action: str) -> bool:
        """Is `action` (already parsed) inside the current room's grammar?"""
        t, g = self.game.t, self.game
        if action == "go":
            return True
        if t == self.cfg.steps - 1:
            return action == "exit"
        fact = g._use.get(t)  # the door or fork in this room, if any
        if fact is None:
            return False
        if fact.kind == "door":
            return _CODE.fullmatch(action) is not None
        return action in ("left", "right")

    def admissible_actions(self) -> list[str]:
        if self.done:
            return []
        return list(dict.fromkeys([self.game.expert_action(), "go"]))

    def expert_plan(self) -> list[str]:
        return [self.game.expert_action(t) for t in range(self.game.t, self.cfg.steps)]

    def step(self, action: str) -> StepResult:
        check_not_done(self, self.done)
        self._steps += 1
        valid = self.allowed(parse_action(action))
        if valid:
            self.game.step(action)
        if self.game.done:
            obs = "the walk is over."
        else:
            obs = self.game.observation() if valid else f"{NOTHING_HAPPENED} {self.game.observation()}"
        reward = 1.0 if self.won else 0.0
        return StepResult(obs, reward, self.done, self.won, valid)

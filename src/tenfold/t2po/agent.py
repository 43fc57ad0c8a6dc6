"""The agent's turn format, `<think>...</think> action`, and the synthetic thinking of the cold start.

Prompt (one chat user message, kept short for a tiny byte-level model; the environment's compact
observation, `tenfold.envs`):

    goal: take the coin.
    did: go north, go east          <- the last `history` actions (the paper's agents see a window too)
    room: attic. exits: east, west. here: nothing. carrying: nothing.
    actions: go east | go west      <- the admissible actions, information-only verbs dropped

Reply: `<think>came from west. so: go east.</think> go east`. The action is the text after
`</think>`; a reply that opens thinking and never closes it is malformed (no action: invalid).

Cold start (the paper starts RL from RFT checkpoints): SFT on expert turns whose thinking is written
here, of varied length. Half of the turns think with filler first ("hmm, hmm, let me think. ..."),
repetitive text that says nothing: the over-thinking the token-level cut-off is meant to end. A share
of the turns think nothing useful at all (filler only, or nothing), as a cut thought ends: without
them an agent cut mid-thought meets a state it never saw (measured: every cut setting then lost 0.16+
success, docs/t2po.md).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tenfold.core.errors import TenfoldError

SYSTEM = "Text game agent. Think in <think></think>, then reply with one action from the list."
OPEN, CLOSE = "<think>", "</think>"
GOALS = {
    "coin_collector": "take the coin.",
    "vault": "reach the exit. doors need codes; forks need directions.",
}
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
FILLERS = ("hmm, ", "let me think. ", "wait, ", "ok so ", "um. ")


def goal_of(env) -> str:
    """A one-line goal: a fixed line per family (coin collector's own objective names the route),
    else the game's objective cut to its first sentence."""
    family = getattr(env, "name", "").split("-")[0]
    if family in GOALS:
        return GOALS[family]
    objective = getattr(env, "objective", "") or ""
    return (objective.split(".")[0][:120] + ".") if objective else "win the game."


def actions_of(env) -> list[str]:
    useful = getattr(env, "useful_actions", None)
    return list(useful() if useful else env.admissible_actions())


@dataclass
class ThinkFormat:
    """The T2PO agent's `AgentFormat` (`tenfold.rl.multiturn`). `history` = how many past actions the
    prompt shows (-1: all of them, which the Vault memory game needs)."""

    history: int = 3

    def prompt(self, env, history: Sequence[tuple[str, str]], observation: str) -> list[dict]:
        past = [a for _, a in history] if self.history < 0 else [a for _, a in history][-self.history :]
        if self.history < 0:  # every observation too: Vault's facts are only in past rooms
            lines = [f"{o} > {a}" for o, a in history]
            body = "\n".join(lines)
            did = f"seen:\n{body}\n" if lines else ""
        else:
            did = f"did: {', '.join(past)}\n" if past else ""
        text = f"goal: {goal_of(env)}\n{did}{observation}\nactions: {' | '.join(actions_of(env))}"
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]

    def parse(self, reply: str) -> str | None:
        return parse_reply(reply)


_SPACES = re.compile(r"\s+")


def parse_reply(reply: str) -> str | None:
    """The action after `</think>` (or the whole reply when it does not think); None when thinking
    was opened and never closed, or nothing follows it."""
    text = reply or ""
    if CLOSE in text:
        text = text.split(CLOSE, 1)[1]
    elif OPEN in text:
        return None
    action = _SPACES.sub(" ", text.strip().lower().rstrip("."))
    return action or None


def reasoning(env, history: Sequence[tuple[str, str]], action: str) -> str:
    """The informative part of an expert thought: where the agent came from (the way not to go back)
    and the action chosen."""
    parts = []
    last = history[-1][1] if history else ""
    if last.startswith("go ") and last[3:] in OPPOSITE:
        parts.append(f"came from {OPPOSITE[last[3:]]}.")
    parts.append(f"so: {action}.")
    return " ".join(parts)


def filler(rng: random.Random, max_repeats: int) -> str:
    """Repetitive thinking that carries no information: one phrase said 2..max_repeats times."""
    if max_repeats < 2:
        raise TenfoldError(f"max_repeats must be >= 2, got {max_repeats}")
    return rng.choice(FILLERS) * rng.randint(2, max_repeats)


def expert_reply(
    env,
    history: Sequence[tuple[str, str]],
    action: str,
    rng: random.Random,
    filler_share: float,
    max_repeats: int,
    bare_share: float = 0.0,
) -> str:
    """`<think>[filler]reasoning</think> action`, filler on `filler_share` of the turns; on `bare_share`
    of the turns the thinking carries no reasoning at all (filler only, possibly empty), as a thought
    cut short would: the agent also learns to act when its thinking ended early."""
    if rng.random() < bare_share:
        pad = filler(rng, max_repeats) if rng.random() < 0.5 else ""
        return f"{OPEN}{pad}{CLOSE} {action}"
    pad = filler(rng, max_repeats) if rng.random() < filler_share else ""
    return f"{OPEN}{pad}{reasoning(env, history, action)}{CLOSE} {action}"

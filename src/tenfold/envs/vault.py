"""Vault: a procedurally generated text game that punishes forgetting.

The agent walks through `steps` rooms, one per step. Early rooms reveal facts — a note with a door's
keypad code, a sign with the direction to take at a fork — and rooms much later (tens of steps for long
episodes) need them: the right action at a keypad door is `code <the code>`, at a fork `left` or
`right`. Every other room needs only `go`, and the last room `exit`. Difficulty is the horizon: facts
are revealed in the first third of the episode and needed in the last third, so the gap grows with
`steps`.

A wrong action at a door or fork does not end the episode (an alarm rings and the agent moves on), so
every policy plays the same number of steps and episode latencies compare like for like. An episode
succeeds when every critical action is right; `score` is the fraction right.

Agents answer with the action, optionally in the ReAct form `think: ... act: <action>` (the expert
thinks only where a fact is needed); only the action is scored.
The expert policy knows the layout; `expert_summary(t)` is the memory a perfect summariser would keep
after t steps: the facts revealed so far that are still needed, stated as facts (never as actions).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from tenfold.core.errors import TenfoldError

# Each colour ends in a different letter: a fact's value follows its name directly ("door blue 482"),
# so the byte just before the value tells the doors apart (what a tiny model's copying heads key on).
COLORS = ("red", "blue", "green", "pink", "grey", "teal", "violet", "amber")
FILLER = (
    "dust",
    "crates",
    "pipes",
    "a lamp",
    "shelves",
    "a map",
    "chairs",
    "a hum",
    "footprints",
    "a cabinet",
)

AGENT_SYSTEM = "Vault walk, one room per step. Reply with one action: go, code <digits>, left, right, exit."
TASK = "Reach the exit. Doors need codes; forks need directions."


@dataclass(frozen=True)
class Fact:
    kind: str  # "door" or "fork"
    name: str  # door colour or fork number
    value: str  # code digits or direction
    reveal: int  # room where it is revealed
    use: int  # room where it is needed

    @property
    def text(self) -> str:
        if self.kind == "door":
            return f"door {self.name} {self.value}"
        return f"fork {self.name} {self.value}"


@dataclass
class VaultConfig:
    steps: int = 40  # horizon (difficulty): rooms in the episode, the last is the exit
    doors: int = 2  # keypad doors, each with a code revealed earlier
    forks: int = 1  # forks, each with a direction revealed earlier
    seed: int = 0

    def validate(self) -> VaultConfig:
        n = self.doors + self.forks
        if self.doors < 0 or self.forks < 0 or n < 1:
            raise TenfoldError(f"need at least one door or fork, got doors={self.doors} forks={self.forks}")
        if self.doors > len(COLORS):
            raise TenfoldError(f"at most {len(COLORS)} doors (one per colour), got {self.doors}")
        if self.steps < 3 * n + 3:
            raise TenfoldError(
                f"steps={self.steps} is too short for {n} facts: need at least {3 * n + 3} "
                "(facts are revealed in the first third and used in the last third)"
            )
        return self


@dataclass
class VaultGame:
    """One episode. `observation(t)` is what room t shows; `step(action)` scores it and moves on."""

    cfg: VaultConfig
    facts: list[Fact] = field(init=False)
    t: int = field(init=False, default=0)
    correct: int = field(init=False, default=0)
    critical: int = field(init=False, default=0)
    log: list[tuple[str, str]] = field(init=False, default_factory=list)  # (observation, action)

    def __post_init__(self):
        cfg = self.cfg.validate()
        rng = random.Random(f"vault:{cfg.seed}:{cfg.steps}:{cfg.doors}:{cfg.forks}")
        n = cfg.doors + cfg.forks
        third = cfg.steps // 3
        reveals = sorted(rng.sample(range(1, third + 1), n))
        uses = sorted(rng.sample(range(cfg.steps - 1 - third, cfg.steps - 1), n))
        kinds = ["door"] * cfg.doors + ["fork"] * cfg.forks
        rng.shuffle(kinds)
        colors = rng.sample(COLORS, cfg.doors)
        order = list(range(n))
        rng.shuffle(order)  # the i-th revealed fact is used as the order[i]-th use
        self.facts, d, f = [], 0, 0
        for i, kind in enumerate(kinds):
            if kind == "door":
                name, value, d = colors[d], f"{rng.randrange(100, 1000)}", d + 1
            else:
                f += 1
                name, value = str(f), rng.choice(("left", "right"))
            self.facts.append(Fact(kind, name, value, reveals[i], uses[order[i]]))
        self._filler = [rng.choice(FILLER) for _ in range(cfg.steps)]
        self._reveal = {fa.reveal: fa for fa in self.facts}
        self._use = {fa.use: fa for fa in self.facts}

    @property
    def done(self) -> bool:
        return self.t >= self.cfg.steps

    @property
    def success(self) -> bool:
        return self.correct == len(self.facts)

    @property
    def score(self) -> float:
        return self.correct / len(self.facts)

    def observation(self, t: int | None = None) -> str:
        """Room t's text; short on purpose (tiny models train on whole 80-room episodes here)."""
        t = self.t if t is None else t
        if t == self.cfg.steps - 1:
            return f"{t}: exit."
        if t in self._reveal:
            fa = self._reveal[t]
            return f"{t}: {'note' if fa.kind == 'door' else 'sign'}: {fa.text}."
        if t in self._use:
            fa = self._use[t]
            if fa.kind == "door":
                return f"{t}: door {fa.name}, keypad."
            return f"{t}: fork {fa.name}, left or right?"
        return f"{t}: {self._filler[t]}."

    def expert_action(self, t: int | None = None) -> str:
        t = self.t if t is None else t
        if t == self.cfg.steps - 1:
            return "exit"
        if t in self._use:
            fa = self._use[t]
            return f"code {fa.value}" if fa.kind == "door" else fa.value
        return "go"

    def expert_reply(self, t: int | None = None) -> str:
        """The expert's whole reply, what the agent model is trained to write: the action, preceded at
        a door or fork by a thought that recalls the fact it needs ('think: door blue 482. act:
        code 482'), the chain of thought that lets a tiny model look the fact up by copying."""
        t = self.t if t is None else t
        if t in self._use and t != self.cfg.steps - 1:
            return f"think: {self._use[t].text}. act: {self.expert_action(t)}"
        return self.expert_action(t)

    def expert_summary(self, cut: int) -> str:
        """What a perfect memory keeps after rooms [0, cut): revealed facts whose room is still ahead."""
        keep = [fa.text for fa in sorted(self.facts, key=lambda f: f.reveal) if fa.reveal < cut <= fa.use]
        return "; ".join(keep) + "." if keep else "nothing to keep."

    def step(self, reply: str) -> str | None:
        """Play `reply` in the current room; returns the next observation (None when the episode ends)."""
        if self.done:
            raise TenfoldError("the episode is over; start a new VaultGame")
        action = parse_action(reply)
        self.log.append((self.observation(), reply))
        if self.t in self._use:
            self.critical += 1
            self.correct += action == self.expert_action()
        self.t += 1
        return None if self.done else self.observation()


_ACT = re.compile(r"act:\s*(.*)", re.IGNORECASE | re.DOTALL)


def parse_action(reply: str) -> str:
    """The action in a 'think: ... act: <action>' reply (the whole reply if there is no 'act:')."""
    m = _ACT.search(reply or "")
    text = m.group(1) if m else (reply or "")
    return " ".join(text.strip().lower().rstrip(".").split())

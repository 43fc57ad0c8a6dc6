"""TextWorld games (T2PO's main benchmark) as `TextEnv`s, generated offline and cached.

Games come from TextWorld's own challenge generators (`textworld.challenges`), run offline:

- `coin_collector` (`level` 1..300, TextWorld's definition): a chain of q = (level - 1) % 100 + 1 rooms
  with the coin in the last one; levels 1-100 have no other rooms, levels 101-200 add one dead-end
  distractor room per chain room (2q rooms), levels 201-300 add distractors placed randomly along the
  chain (3q rooms, so wrong turns can wander). TextWorld 1.7 caps games at 100 rooms, so the accepted
  levels are 1-100, 101-150 and 201-233. The walkthrough is q - 1 moves plus `take coin`.
- `simple` (`rewards` dense/balanced/sparse, `goal` detailed/brief/none): the fixed six-room house of
  TextWorld's "simple" challenge with a seeded quest (find a key, unlock a door, put food somewhere).
  `rewards` sets how many intermediate steps score a point; `goal` how much of the quest the intro
  text states (only `objective` and `last_feedback` show it: the compact observation never does).
- `cooking` (`recipe` 1-5 ingredients, `take` 0..recipe of them to fetch, `go` 1/6/9/12 rooms, and the
  `open` / `cook` / `cut` / `drop` skills): TextWorld's cooking challenge, the recipe seeded by `seed`.

`GameSpec` (frozen) names one game; `build_game(spec, folder)` writes `game.z8` + `game.json` into
`folder/<family>-<hash of the spec>/`, building in a hidden temporary folder renamed into place, so an
interrupted build never leaves half a game and a second build of the same spec is a cache hit. The
default folder is `$TENFOLD_CACHE/textworld-games`. `game_pool` draws n distinct specs of one
difficulty: training pools use seeds in [0, 1_000_000), held-out pools seeds in
[1_000_000, 2_000_000), so no held-out game is ever a training game.

Observations are compact, because the agents are tiny byte-level models with short contexts. They are
built from the game state (TextWorld's facts), not its prose, in a fixed order:

    room: kitchen. exits: north, east (closed screen door). here: fridge (closed), table [knife].
    carrying: apple.

Exits are listed north, south, east, west, with the door in parentheses when it is closed or locked;
`here` lists the objects in the room by name, sorted, a closed/locked container marked as such and the
visible contents of an open container or of a supporter in brackets; `carrying` lists the inventory
(`nothing` when empty). After an invalid action the observation starts with `nothing happened.`.
Coin collector and simple games stay under about 200 characters. TextWorld's own text for the last
step is kept in `TextWorldEnv.last_feedback` (without its prompt and status line).

Invalid actions (not among TextWorld's admissible commands) never change the game state. They are
still shown to the game when their verb is a game verb, so `last_feedback` holds TextWorld's answer
("You can't see any such thing."); should the game state change anyway (Inform's parser accepts
more than the admissible list, e.g. `take the coin`), the env replays the episode's valid actions to
undo it and `last_feedback` says so. Other words (`quit`, `restart`, `save`: they would leave the game
waiting for a yes/no answer) are not sent, and `last_feedback` is Inform's "That's not a verb I
recognise.".

Rewards are TextWorld score changes; `won` / `lost` come from TextWorld; episodes also end at
`max_steps`, by default 3 x the length of the generator's walkthrough + 5, enough slack for an expert
plus exploration (the walkthrough can be longer than the planner's `expert_plan()`: cooking's reads
the cookbook and checks the inventory).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tenfold.core.cache import cache_root
from tenfold.core.errors import TenfoldError
from tenfold.envs.text_env import NOTHING_HAPPENED, TEXTWORLD_FAMILIES, StepResult, check_not_done
from tenfold.envs.vault import parse_action

CHALLENGE = {"coin_collector": "tw-coin_collector", "simple": "tw-simple", "cooking": "tw-cooking"}
FAMILY_FIELDS = {  # the GameSpec fields that matter to each family (the others must keep their defaults)
    "coin_collector": ("level",),
    "simple": ("rewards", "goal"),
    "cooking": ("recipe", "take", "go", "open", "cook", "cut", "drop"),
}
HELDOUT_SEED = 1_000_000  # held-out pools draw seeds in [HELDOUT_SEED, 2 * HELDOUT_SEED)
GAME_FILE = "game.z8"
INFO_ACTIONS = ("look", "inventory", "examine")  # verbs that only describe; useful_actions drops them
MAX_STEPS_FACTOR, MAX_STEPS_EXTRA = 3, 5  # default max_steps = 3 x walkthrough + 5
DIRECTIONS = ("north", "south", "east", "west")
MAX_INVALID_COMMAND = 64  # longer non-admissible commands are never sent to the interpreter


def _safe_command(command: str) -> bool:
    return len(command) <= MAX_INVALID_COMMAND and all(" " <= ch <= "~" for ch in command)


GAME_VERBS = frozenset(
    "go take get drop put insert open close lock unlock examine look inventory eat cook slice chop dice "
    "prepare read".split()
)  # verbs safe to show the game even when the action is not admissible
NOT_A_VERB = "That's not a verb I recognise."
UNDONE = "That action is not admissible here; the game state is unchanged."


@dataclass(frozen=True)
class GameSpec:
    """One TextWorld game: the family, its difficulty fields (see the module docstring) and a seed."""

    family: str
    level: int = 1  # coin_collector
    rewards: str = "balanced"  # simple
    goal: str = "brief"  # simple
    recipe: int = 1  # cooking
    take: int = 0
    go: int = 1
    open: bool = False
    cook: bool = False
    cut: bool = False
    drop: bool = False
    seed: int = 0

    def validate(self) -> GameSpec:
        if self.family not in TEXTWORLD_FAMILIES:
            raise TenfoldError(
                f"unknown TextWorld family {self.family!r}; accepted: {', '.join(TEXTWORLD_FAMILIES)}"
            )
        if not 0 <= self.seed < 2**31:
            raise TenfoldError(f"seed must be in [0, 2**31), got {self.seed}")
        defaults = GameSpec("coin_collector")
        for name in FAMILY_FIELDS_ALL - set(FAMILY_FIELDS[self.family]):
            if getattr(self, name) != getattr(defaults, name):
                raise TenfoldError(
                    f"{name}={getattr(self, name)!r} has no meaning for {self.family} games; "
                    f"their fields are {', '.join(FAMILY_FIELDS[self.family])}"
                )
        {"coin_collector": _check_coin, "simple": _check_simple, "cooking": _check_cooking}[self.family](self)
        return self

    def settings(self) -> dict[str, Any]:
        """The settings TextWorld's challenge `make` expects."""
        if self.family == "coin_collector":
            return {"level": self.level}
        if self.family == "simple":
            return {"rewards": self.rewards, "goal": self.goal, "test": False}
        flags = {k: getattr(self, k) for k in ("open", "cook", "cut", "drop")}
        return {"recipe": self.recipe, "take": self.take, "go": self.go, **flags}

    def key(self) -> str:
        """The cache key: family, relevant fields, seed and TextWorld's version."""
        import textworld

        blob = json.dumps([self.family, self.settings(), self.seed, textworld.__version__], sort_keys=True)
        return f"{self.family}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def make(
        self, folder: str | Path | None = None, max_steps: int | None = None, expert: bool = True
    ) -> TextWorldEnv:
        return TextWorldEnv(build_game(self, folder), max_steps=max_steps, name=self.key(), expert=expert)


FAMILY_FIELDS_ALL = {name for names in FAMILY_FIELDS.values() for name in names}


def _check_coin(spec: GameSpec) -> None:
    level = spec.level
    ok = 1 <= level <= 150 or 201 <= level <= 233
    if not ok:
        raise TenfoldError(
            f"coin_collector level must be in 1-150 or 201-233 (TextWorld's 1-300, capped at 100 rooms), "
            f"got {level}"
        )


def _check_simple(spec: GameSpec) -> None:
    if spec.rewards not in ("dense", "balanced", "sparse"):
        raise TenfoldError(f"simple rewards must be dense, balanced or sparse, got {spec.rewards!r}")
    if spec.goal not in ("detailed", "brief", "none"):
        raise TenfoldError(f"simple goal must be detailed, brief or none, got {spec.goal!r}")


def _check_cooking(spec: GameSpec) -> None:
    if not 1 <= spec.recipe <= 5:
        raise TenfoldError(f"cooking recipe must be 1-5 ingredients, got {spec.recipe}")
    if not 0 <= spec.take <= spec.recipe:
        raise TenfoldError(f"cooking take must be in 0..recipe={spec.recipe}, got {spec.take}")
    if spec.go not in (1, 6, 9, 12):
        raise TenfoldError(f"cooking go (rooms) must be 1, 6, 9 or 12, got {spec.go}")


# ---- building and caching -----------------------------------------------------------------------


def default_folder() -> Path:
    return cache_root() / "textworld-games"


def build_game(spec: GameSpec, folder: str | Path | None = None) -> Path:
    """The path of `spec`'s compiled game in `folder`, generating it on a cache miss."""
    spec.validate()
    folder = Path(folder).expanduser() if folder is not None else default_folder()
    final = folder / spec.key()
    if (final / GAME_FILE).is_file() and (final / "game.json").is_file():
        return final / GAME_FILE
    tmp = folder / f".{spec.key()}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _generate(spec, tmp / GAME_FILE)
        (tmp / "spec.json").write_text(json.dumps(asdict(spec), sort_keys=True))
        try:
            tmp.rename(final)
        except OSError:  # another process built it first: keep theirs
            if not (final / GAME_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / GAME_FILE


def _generate(spec: GameSpec, path: Path) -> None:
    """Run TextWorld's challenge generator and Inform compiler, quietly, writing `path` (+ .json)."""
    import textworld
    from textworld.challenges import CHALLENGES
    from textworld.generator import compile_game

    options = textworld.GameOptions()
    options.seeds = spec.seed
    options.path = str(path)
    settings = spec.settings()
    if spec.family == "cooking":
        settings.update(recipe_seed=spec.seed, split=None)
    make = CHALLENGES[CHALLENGE[spec.family]][1]
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            game = make(settings, options)
            compile_game(game, options)
        except (ValueError, AssertionError) as exc:
            raise TenfoldError(f"TextWorld could not build {spec}: {exc}") from exc


def game_pool(family: str, n: int, seed: int = 0, split: str = "train", **difficulty: Any) -> list[GameSpec]:
    """n distinct specs of one difficulty; `split` "train" or "heldout" picks a disjoint seed range."""
    if split not in ("train", "heldout"):
        raise TenfoldError(f"split must be 'train' or 'heldout', got {split!r}")
    if not 1 <= n <= HELDOUT_SEED:
        raise TenfoldError(f"n must be in 1..{HELDOUT_SEED}, got {n}")
    low = 0 if split == "train" else HELDOUT_SEED
    rng = random.Random(f"textworld-pool:{family}:{seed}:{split}")
    specs = [GameSpec(family, seed=s, **difficulty) for s in rng.sample(range(low, low + HELDOUT_SEED), n)]
    return [s.validate() for s in specs]


# ---- compact observations -------------------------------------------------------------------------


def _args(prop) -> list[str]:
    return [a.name for a in prop.arguments]


def describe(facts) -> str:
    """The compact observation of a TextWorld state (its list of facts); see the module docstring."""
    by_pred: dict[str, list[list[str]]] = {}
    for prop in facts:
        by_pred.setdefault(prop.name, []).append(_args(prop))
    room = next(a[1] for a in by_pred.get("at", []) if a[0] == "P")
    state = {a[0]: p for p in ("open", "closed", "locked") for a in by_pred.get(p, [])}
    inside: dict[str, list[str]] = {}
    for pred in ("in", "on"):
        for obj, holder in by_pred.get(pred, []):
            inside.setdefault(holder, []).append(obj)
    carrying = ", ".join(sorted(inside.get("I", []))) or "nothing"
    exits, things = _exits(room, by_pred, state), _things(room, by_pred, state, inside)
    return f"room: {room}. exits: {exits}. here: {things}. carrying: {carrying}."


def _exits(room: str, by_pred, state) -> str:
    doors = {(a[0], a[2]): a[1] for a in by_pred.get("link", [])}
    out = []
    for d in DIRECTIONS:
        for dest, src in by_pred.get(f"{d}_of", []):
            if src != room:
                continue
            door = doors.get((room, dest))
            closed = door is not None and state.get(door) in ("closed", "locked")
            out.append(f"{d} ({state[door]} {door})" if closed else d)
    return ", ".join(out) or "none"


def _things(room: str, by_pred, state, inside) -> str:
    items = sorted(a[0] for a in by_pred.get("at", []) if a[1] == room and a[0] != "P")
    out = []
    for item in items:
        if state.get(item) in ("closed", "locked"):
            out.append(f"{item} ({state[item]})")
        elif inside.get(item):
            out.append(f"{item} [{', '.join(sorted(inside[item]))}]")
        else:
            out.append(item)
    return ", ".join(out) or "nothing"


def clean_feedback(text: str) -> str:
    """TextWorld's text without the prompt and status line it ends with, blank lines squeezed."""
    text = re.sub(r"\s*>\s*[^\n]*$", "", text or "")
    return re.sub(r"\n\s*\n+", "\n", text).strip()


# ---- the environment ---------------------------------------------------------------------------


class TextWorldEnv:
    """One compiled TextWorld game as a `TextEnv` (compact observations; see the module docstring)."""

    def __init__(
        self,
        game_file: str | Path,
        max_steps: int | None = None,
        name: str | None = None,
        expert: bool = True,
    ):
        """`expert=False` skips TextWorld's planner, which runs after every step to keep `expert_plan()`
        current (measured: 1.2-4x fewer steps/s with it); `expert_plan()` then raises."""
        import textworld

        self.game_file = Path(game_file)
        if not self.game_file.is_file():
            raise TenfoldError(f"no TextWorld game at {self.game_file}; build one with build_game(spec)")
        self.name = name or self.game_file.parent.name
        infos = textworld.EnvInfos(
            admissible_commands=True, policy_commands=expert, facts=True, won=True, lost=True, score=True,
            max_score=True, feedback=True, objective=True,
        )  # fmt: skip
        with warnings.catch_warnings():  # jericho warns that it cannot track TextWorld games' score;
            warnings.simplefilter("ignore")  # TextWorld's own wrapper tracks it
            self._env = textworld.start(str(self.game_file), infos)
        self.expert = expert
        self.reset()
        self.walkthrough = self._walkthrough()
        self.objective: str = self._state["objective"] or ""
        self.max_score: int = self._state["max_score"]
        if max_steps is None and not self.walkthrough:
            raise TenfoldError(f"{self.game_file} has no walkthrough to size max_steps by: pass max_steps")
        default = MAX_STEPS_FACTOR * len(self.walkthrough) + MAX_STEPS_EXTRA
        self.max_steps = default if max_steps is None else max_steps
        if self.max_steps < 1:
            raise TenfoldError(f"max_steps must be >= 1, got {self.max_steps}")

    def _walkthrough(self) -> list[str]:
        """The generator's walkthrough (stored in the game's .json), else the planner's plan from reset."""
        meta = json.loads(self.game_file.with_suffix(".json").read_text()).get("metadata", {})
        if meta.get("walkthrough"):
            return list(meta["walkthrough"])
        return list(self._state["policy_commands"]) if self.expert else []

    def reset(self) -> str:
        self._state = self._env.reset()
        self._history: list[str] = []  # the valid actions played, to replay after an unwanted change
        self._steps = 0
        self.last_feedback: str = clean_feedback(self._state["feedback"])
        return describe(self._state["facts"])

    @property
    def won(self) -> bool:
        return bool(self._state["won"])

    @property
    def lost(self) -> bool:
        return bool(self._state["lost"])

    @property
    def steps_taken(self) -> int:
        return self._steps

    @property
    def done(self) -> bool:
        return self.won or self.lost or self._steps >= self.max_steps

    @property
    def score(self) -> int:
        return self._state["score"]

    def observation(self) -> str:
        return describe(self._state["facts"])

    def admissible_actions(self) -> list[str]:
        return [] if self.done else list(self._state["admissible_commands"])

    def useful_actions(self) -> list[str]:
        """Admissible actions minus look / inventory / examine, which only describe (the compact
        observation already shows what they would tell)."""
        return [a for a in self.admissible_actions() if a.split()[0] not in INFO_ACTIONS]

    def expert_plan(self) -> list[str]:
        if not self.expert:
            raise TenfoldError(f"{self.name} was started with expert=False; start it with expert=True")
        return [] if self.won else list(self._state["policy_commands"])

    def step(self, action: str) -> StepResult:
        check_not_done(self, self.done)
        command = parse_action(action)
        self._steps += 1
        valid = command in self._state["admissible_commands"]
        before = self._state["score"]
        if valid:
            self._state, _, _ = self._env.step(command)
            self._history.append(command)
            self.last_feedback = clean_feedback(self._state["feedback"])
            obs = self.observation()
        else:
            self.last_feedback = self._try_invalid(command)
            obs = f"{NOTHING_HAPPENED} {self.observation()}"
        reward = float(self._state["score"] - before)
        return StepResult(obs, reward, self.done, self.won, valid)

    def _try_invalid(self, command: str) -> str:
        """TextWorld's answer to a non-admissible command, leaving the game state as it was. Only short,
        printable-ASCII commands reach the interpreter: a policy in collapse writes anything, and
        non-ASCII input raises inside jericho (UnicodeDecodeError) while long garbage crashed its frotz
        interpreter once (a segfault that no try/except can catch)."""
        if not command or command.split()[0] not in GAME_VERBS or not _safe_command(command):
            return NOT_A_VERB
        facts = {str(f) for f in self._state["facts"]}
        try:
            answer, _, _ = self._env.step(command)
        except Exception:  # noqa: BLE001 - the game must survive any text; restore its state
            self._replay()
            return NOT_A_VERB
        if {str(f) for f in answer["facts"]} != facts or answer["score"] != self._state["score"]:
            self._replay()  # the parser did more than we allow ("take the coin"): restore the state
            return UNDONE  # the game's own answer would describe a change that no longer holds
        return clean_feedback(answer["feedback"])

    def _replay(self) -> None:
        self._state = self._env.reset()
        for command in self._history:
            self._state, _, _ = self._env.step(command)

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> TextWorldEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

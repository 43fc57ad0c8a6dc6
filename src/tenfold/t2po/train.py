"""The cold-start agent (the paper's RFT checkpoints): SFT from tenfold-base on expert turns with
synthetic thinking, cached and shipped; and the task pools it and the RL arms use.

Expert turns come from playing TextWorld coin-collector games: the expert plan from the start, and on
a share of the episodes a few random admissible moves first (a detour), after which TextWorld's plan
from the new state leads back; so the agent also sees wrong turns undone. Every reply is
`<think>[filler]came from X. so: A.</think> A` (`agent.expert_reply`), filler on half of the turns,
and on a quarter a thought with no reasoning (filler only, or empty).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from tenfold.core import sft
from tenfold.core.artefacts import register_artefact
from tenfold.core.errors import TenfoldError
from tenfold.core.train import Tokens, chat_example
from tenfold.envs.text_env import TaskSpec
from tenfold.t2po.agent import ThinkFormat, expert_reply

DATA_VERSION = "t2po-cold-v2"  # v2: bare (reasoning-free) thoughts on a share of turns
BASE_MODEL = "tenfold-base"
INITS = ("base", "scratch")
DEFAULT_INIT = "base"
FAMILY = "coin_collector"
# chains of 3 and 5 rooms (levels 3, 5) and the same with a dead-end beside every room (103, 105)
LEVELS = (3, 5, 103, 105)
HELDOUT_SEED = 1_000_000  # held-out tasks draw seeds from here on (training tasks below it)


def task_pool(
    n: int, split: str = "train", levels: tuple[int, ...] = LEVELS, seed: int = 0
) -> list[TaskSpec]:
    """n coin-collector tasks, levels in turn; held-out tasks never share a seed with training ones."""
    if split not in ("train", "heldout"):
        raise TenfoldError(f"split must be 'train' or 'heldout', got {split!r}")
    if n < 1 or not levels:
        raise TenfoldError(f"need n >= 1 and at least one level, got n={n} levels={levels}")
    start = (HELDOUT_SEED if split == "heldout" else 0) + seed * 10_000
    return [TaskSpec.of(FAMILY, seed=start + i, level=levels[i % len(levels)]) for i in range(n)]


def build_games(tasks: list[TaskSpec], workers: int | None = None) -> None:
    """Build (or find cached) every task's game, side by side (TextWorld takes about 1 s per game)."""
    from tenfold.core.benchkit import map_jobs

    list(map_jobs(_build_one, [(t,) for t in tasks], workers))


def _build_one(task: TaskSpec) -> None:
    from tenfold.envs.textworld_games import GameSpec, build_game

    build_game(GameSpec(task.family, seed=task.seed, **dict(task.params)))


@dataclass
class ColdStartRecipe(sft.SFTRecipe):
    """SFT of the cold-start agent: `games` training games, `episodes` expert episodes each (a share
    with a detour of 1-3 random moves first), filler thinking on `filler_share` of the turns."""

    role: str = "agent"
    steps: int = 400
    batch_size: int = 16
    lr: float = 1e-3
    max_len: int = 768
    ckpt_every: int = 100
    games: int = 48
    episodes: int = 4
    detour_share: float = 0.5
    filler_share: float = 0.5
    bare_share: float = 0.25
    max_repeats: int = 12
    history: int = 3
    levels: tuple[int, ...] = field(default=LEVELS)


def recipe(init: str = DEFAULT_INIT) -> ColdStartRecipe:
    if init not in INITS:
        raise TenfoldError(f"init must be one of {INITS}, got {init!r}")
    return ColdStartRecipe(base=BASE_MODEL) if init == "base" else ColdStartRecipe(steps=1200, lr=3e-3)


def expert_turns(task: TaskSpec, rng: random.Random, r: ColdStartRecipe) -> list[tuple[list[dict], str]]:
    """(prompt messages, expert reply) for every turn of one expert episode of `task`."""
    fmt = ThinkFormat(r.history)
    env = task.make()
    obs, history, out = env.reset(), [], []
    detour = rng.randint(1, 3) if rng.random() < r.detour_share else 0
    while not env.done:
        actions = env.useful_actions() if hasattr(env, "useful_actions") else env.admissible_actions()
        plan = env.expert_plan()
        if not plan:
            break
        action = rng.choice(actions) if detour > 0 and actions else plan[0]
        if detour > 0:
            detour -= 1  # a detour turn is played, not trained: the expert never chose it
        else:
            out.append(
                (
                    fmt.prompt(env, history, obs),
                    expert_reply(env, history, action, rng, r.filler_share, r.max_repeats, r.bare_share),
                )
            )
        res = env.step(action)
        history.append((obs, action))
        obs = res.observation
    if hasattr(env, "close"):
        env.close()
    return out


def cold_corpus(tok, r: ColdStartRecipe) -> list[Tokens]:
    rng = random.Random(r.seed)
    out = []
    tasks = task_pool(r.games, "train", r.levels)
    build_games(tasks)
    for task in tasks:
        for _ in range(r.episodes):
            for msgs, reply in expert_turns(task, rng, r):
                out.append(chat_example(tok, msgs + [{"role": "assistant", "content": reply}]))
    return out


def cached_agent(r: ColdStartRecipe | None = None, quiet: bool = False) -> sft.CachedModel:
    r = r or recipe()
    return sft.sft_model("t2po-agent", r, DATA_VERSION, lambda tok: cold_corpus(tok, r), quiet=quiet)


def agent_dir(init: str = DEFAULT_INIT, retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the cold-start agent (shipped, cached, or trained now)."""
    return cached_agent(recipe(init), quiet).path(retrain)


register_artefact(
    "t2po-agent",
    "t2po",
    lambda: cached_agent().artefact,
    ship=("train/last",),
    minutes=3,  # measured: 136 s for the SFT, plus about a minute building its 48 games
    doc="the cold-start T2PO agent for TextWorld coin-collector games (SFT from tenfold-base)",
    needs=(BASE_MODEL,),
)

"""Tiny agent and memory models for the Vault game, trained here by SFT and cached.

- Agent: whole expert episodes in chat form, the loss on every assistant reply (teacher forcing of the
  full-context conversation). By default a share of the episodes is also shown in the CoMem view
  (summary + raw turns after its cut-off), with the expert summary: a general LLM reads a summary
  without practice, a 1M-parameter model trained on one format does not. `compressed_share=0` trains on
  full context only, as the issue's baseline recipe.
- Memory: the memory view of an episode cut at a multiple of R, the target the expert summary (the
  facts revealed so far whose room is still ahead). The prompt forbids suggesting actions and the
  targets contain none. Reward-driven training (the paper's GRPO on action agreement) comes later;
  anything that serves the memory view through a `Backend` drops in (`BackendMemory`).
- Recall warm-up (both models start from it): a short drill with the loss on the answer only, a third
  each of (a) repeating a random string, (b) answering a door or fork from the rooms seen so far,
  (c) listing the facts still needed. SFT on whole episodes alone did not teach a 1M-parameter model
  to look a code up in 1,200 steps (the answer is 3 digits in ~1K tokens of mostly predictable text);
  repeating random strings forms copying (induction) heads within a few hundred steps, and the
  look-ups follow. It plays the part a pretrained LLM's in-context copying plays in the paper.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path

from tenfold.comem.context import agent_view, memory_view
from tenfold.core import sft
from tenfold.core.artefacts import default_quality, register_artefact
from tenfold.core.errors import TenfoldError
from tenfold.core.train import Tokens, chat_example
from tenfold.envs.vault import AGENT_SYSTEM, TASK, VaultConfig, VaultGame, parse_action

DATA_VERSION = "vault-v5"


def expert_messages(game: VaultGame) -> list[dict]:
    """The whole expert episode as a chat (system, task, then observation/reply turns)."""
    msgs = [{"role": "system", "content": AGENT_SYSTEM}, {"role": "user", "content": TASK}]
    for t in range(game.cfg.steps):
        msgs += [
            {"role": "user", "content": game.observation(t)},
            {"role": "assistant", "content": game.expert_reply(t)},
        ]
    return msgs


def sample_game(rng: random.Random, min_steps: int, max_steps: int, dense_share: float = 0.5) -> VaultGame:
    """A random training episode. Half are *dense*: as many doors and forks as the length allows
    (up to 8 facts), so a sequence holds many look-ups rather than two or three (more training signal
    per sequence for the copying the task needs; not yet enough: see docs/comem.md)."""
    steps = rng.randint(min_steps, max_steps)
    most = (steps - 3) // 3
    if rng.random() < dense_share:
        n = min(8, most)
        forks = rng.randint(0, min(2, n - 1))
        doors = n - forks
    else:
        doors, forks = rng.randint(1, 3), rng.randint(0, 2)
        while doors + forks > most:
            doors, forks = (doors, forks - 1) if forks else (doors - 1, forks)
    return VaultGame(VaultConfig(steps, doors, forks, seed=rng.randrange(1 << 30)))


def agent_corpus(
    tok, n: int, min_steps: int, max_steps: int, interval: int, compressed_share: float, seed: int
):
    rng = random.Random(seed)
    out: list[Tokens] = []
    for _ in range(n):
        game = sample_game(rng, min_steps, max_steps)
        msgs = expert_messages(game)
        if rng.random() < compressed_share:
            steps = game.cfg.steps
            cut = rng.randrange(interval, steps, interval) if steps > interval else 0
            if cut:
                msgs = agent_view(msgs, game.expert_summary(cut), cut)
        out.append(chat_example(tok, msgs))
    return out


def memory_corpus(
    tok, n: int, min_steps: int, max_steps: int, interval: int, seed: int, incremental: bool = True
):
    """Memory-view examples with the expert summary as target. Incremental (the default input): the
    previous summary is the expert's at an earlier multiple of R (1-2 intervals back, or none)."""
    rng = random.Random(seed + 1)
    out: list[Tokens] = []
    for _ in range(n):
        game = sample_game(rng, min_steps, max_steps)
        msgs = expert_messages(game)
        cut = rng.randrange(interval, game.cfg.steps, interval)
        if incremental:
            since = max(0, cut - interval * rng.choice((1, 1, 1, 2)))
            view = memory_view(msgs, cut, game.expert_summary(since), since)
        else:
            view = memory_view(msgs, cut)
        out.append(chat_example(tok, view + [{"role": "assistant", "content": game.expert_summary(cut)}]))
    return out


def _copy_pair(rng: random.Random) -> tuple[str, str]:
    word = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(6, 16)))
    return word + "|", word


def _lookup_pair(rng: random.Random) -> tuple[str, str]:
    """The rooms up to a door or fork (as plain lines), then the expert's reply there."""
    game = sample_game(rng, 9, 20, dense_share=1.0)
    fact = rng.choice(game.facts)
    start = rng.randint(0, fact.reveal)
    return "\n".join(game.observation(t) for t in range(start, fact.use + 1)) + "\n", game.expert_reply(
        fact.use
    )


def _listing_pair(rng: random.Random) -> tuple[str, str]:
    """A previous list of facts and some rooms (with the agent's replies), then the facts still needed."""
    game = sample_game(rng, 9, 20, dense_share=1.0)
    cut = rng.randint(1, game.cfg.steps - 1)
    since = rng.randint(max(0, cut - 8), cut - 1)
    lines = [f"Memory so far: {game.expert_summary(since)}"]
    for t in range(since, cut):
        lines += [game.observation(t), f"> {game.expert_reply(t)}"]
    return "\n".join(lines) + "\n", game.expert_summary(cut)


def recall_drill(n: int, seed: int) -> list[tuple[str, str]]:
    """The recall warm-up: (prompt, answer) pairs, a third of each kind (see the module docstring)."""
    rng = random.Random(seed + 2)
    kinds = (_copy_pair, _lookup_pair, _listing_pair)
    return [kinds[i % 3](rng) for i in range(n)]


@dataclass
class DrillRecipe(sft.DrillRecipe):
    """The recall warm-up both Vault models start from (`recall_drill`)."""

    steps: int = 900
    lr: float = 1e-3


def cached_drill(r: DrillRecipe | None = None, quiet: bool = False) -> sft.CachedModel:
    """The recall warm-up of `r` (default: today's) as a cached model; its examples are plain strings."""
    r = r or DrillRecipe()
    return sft.drill_model(
        "comem-drill", r, DATA_VERSION, lambda _tok: recall_drill(r.steps * r.batch_size, r.seed), quiet=quiet
    )


def drilled_model(r: DrillRecipe | None = None, retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the recall warm-up (trained once, then cached)."""
    return cached_drill(r, quiet).path(retrain)


@dataclass
class ModelRecipe(sft.SFTRecipe):
    """The agent or the memory model (`role`), by SFT on the expert's episodes (`agent_corpus`,
    `memory_corpus`)."""

    steps: int = 400
    batch_size: int = 8
    lr: float = 3e-3
    max_len: int = 2048
    ckpt_every: int = 150  # a killed build resumes from here (not part of the key)
    examples: int = 2000
    min_steps: int = 20
    max_steps: int = 80
    interval: int = 4
    compressed_share: float = 0.3  # agent only
    incremental: bool = True  # memory only: previous summary + new turns (False: the whole history)


# where SFT starts: the pretrained tenfold-base, the recall warm-up (the from-scratch recipe), or a
# freshly initialised preset. The default is the base: from it the agent wins every held-out episode
# with full context and CoMem keeps more of that (docs/comem.md, "From tenfold-base")
INITS = ("base", "drill", "scratch")
DEFAULT_INIT = "base"
BASE_MODEL = "tenfold-base"


def recipe(role: str, init: str = DEFAULT_INIT) -> ModelRecipe:
    """The recipe per role and start (what `tenfold comem train` and the benchmark use). From the base
    model the agent trains half the steps of the warm-up recipe and the memory model as many, each with
    a checkpoint every quarter."""
    if init not in INITS:
        raise TenfoldError(f"init must be one of {INITS}, got {init!r}")
    start: dict = (
        {"warm_start": DrillRecipe()} if init == "drill" else {"base": BASE_MODEL} if init == "base" else {}
    )
    if role == "agent":
        # 600 steps: the door look-up forms late (teacher-forced actions right 0.25 / 0.52 / 0.71 / 0.98 at
        # steps 150 / 300 / 450 / 600 of one run); a 450-step run of the same recipe stopped at 0.63
        steps = 300 if init == "base" else 600
        return ModelRecipe(
            "agent",
            steps=steps,
            lr=1e-3,
            compressed_share=0.5,
            ckpt_every=steps // 4 if init == "base" else 150,
            **start,
        )
    if role == "memory":  # incremental views are short: more, larger batches for the same time
        # from the base too 800 steps: at 400 its summaries dropped facts that arrived after the first
        # (CoMem success 1/16 beside the base agent, against 5/16 with the 800-step warm-up model)
        steps = 800
        return ModelRecipe(
            "memory", examples=4000, steps=steps, batch_size=16, lr=1e-3, max_len=1024,
            ckpt_every=steps // 4 if init == "base" else 150, **start,
        )  # fmt: skip
    raise ValueError(f"role must be 'agent' or 'memory', got {role!r}")


def sft_corpus(tok, r: ModelRecipe) -> list[Tokens]:
    """The SFT examples of the recipe's role."""
    if r.role == "agent":
        return agent_corpus(tok, r.examples, r.min_steps, r.max_steps, r.interval, r.compressed_share, r.seed)
    return memory_corpus(tok, r.examples, r.min_steps, r.max_steps, r.interval, r.seed, r.incremental)


def cached_model(r: ModelRecipe, quiet: bool = False) -> sft.CachedModel:
    """The agent or memory model of `r` as a cached model (from its warm-up, `cached_drill`)."""
    return sft.sft_model(
        f"comem-{r.role}", r, DATA_VERSION, lambda tok: sft_corpus(tok, r), cached_drill, quiet
    )


def trained_model(recipe: ModelRecipe, retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the model for `recipe` (shipped, cached, or trained once)."""
    return cached_model(recipe, quiet).path(retrain)


register_artefact(  # the from-scratch recipes' first stage (`--init drill`), shipped so they skip it
    "comem-drill",
    "comem",
    lambda: cached_drill().artefact,
    ship=("train/last",),
    minutes=28,  # each estimate: measured on one torch thread, beside another one-thread training
    doc="the recall warm-up both Vault models start from",
)


def _train_in_child(role: str, quiet: bool, init: str = DEFAULT_INIT) -> str:
    import torch

    torch.set_num_threads(1)
    return str(trained_model(recipe(role, init), quiet=quiet))


def prepare_models(quiet: bool = False, init: str = DEFAULT_INIT) -> tuple[str, str]:
    """(agent, memory) checkpoint dirs of the recipes for `init`: their shared start first (the warm-up,
    or tenfold-base), then the two models side by side, one process and one core each (about an hour
    on two cores, once)."""
    from tenfold.core.benchkit import in_processes
    from tenfold.core.models import trained_model_dir

    if all(cached_model(recipe(role, init)).available() for role in ("agent", "memory")):
        return tuple(str(trained_model(recipe(role, init), quiet=quiet)) for role in ("agent", "memory"))
    if init == "drill":
        if any(recipe(role, init).warm_start != DrillRecipe() for role in ("agent", "memory")):
            raise RuntimeError("prepare_models trains the default warm-up first; the recipes use another")
        drilled_model(quiet=quiet)
    elif init == "base":
        trained_model_dir(BASE_MODEL, train=True)
    jobs = [("agent", quiet, init), ("memory", True, init)]  # one progress bar is enough
    return tuple(in_processes(_train_in_child, jobs, workers=2))


def fact_recall(summary: str, game: VaultGame, cut: int) -> tuple[int, int]:
    """(needed facts stated in `summary`, needed facts) for a summary covering rooms [0, cut)."""
    needed = [f.text for f in game.facts if f.reveal < cut <= f.use]
    return sum(f in summary for f in needed), len(needed)


SKILL_SEED = 20_000  # held-out probe games (the benchmark and `evaluate` play seeds from 10_000)


async def agent_skill(agent, games: int = 8, steps: int = 40, seed: int = SKILL_SEED) -> dict:
    """The agent's one skill that success hinges on, measured alone: at every door and fork of `games`
    held-out episodes, given the expert's history so far in full (teacher-forced), is the action right?
    `agent` is any `Backend`. Also the share of those replies in the trained 'think: ... act: ...' form."""
    right = formatted = total = 0
    for i in range(games):
        game = VaultGame(VaultConfig(steps, 2, 1, seed + i))
        history = expert_messages(game)
        for t in sorted(f.use for f in game.facts):
            view = history[: 2 + 2 * t + 1]  # system, task, rooms 0..t with the expert's replies before t
            reply = (await agent.chat(view, max_tokens=48, temperature=0.0)).text
            right += parse_action(reply) == game.expert_action(t)
            formatted += reply.startswith("think: ")
            total += 1
    return {"critical_right": right / total, "think_format": formatted / total, "probes": total}


async def memory_skill(memory, episodes: int = 8, steps: int = 40, seed: int = SKILL_SEED) -> dict:
    """The memory model's skill, measured alone: from a perfect previous summary and the turns since,
    does its summary state every fact still needed? `memory` is a `MemoryModel` (e.g. `BackendMemory`)."""
    hit = total = 0
    for i in range(episodes):
        game = VaultGame(VaultConfig(steps, 2, 1, seed + i))
        cut = 4 * (1 + i % max(1, steps // 4 - 1))
        since = cut - 4
        view = memory_view(expert_messages(game), cut, game.expert_summary(since), since)
        h, n = fact_recall(await memory.summarize(view), game, cut)
        hit, total = hit + h, total + n
    return {"fact_recall": hit / max(1, total), "facts": total}


def _skill_quality(role: str):
    """Manifest quality of a shipped Vault model: its final loss and its skill probe (above)."""

    def quality(entry: Path) -> dict:
        import asyncio

        from tenfold.comem.runtime import BackendMemory
        from tenfold.core.backends import LocalBackend

        async def probe():
            backend = LocalBackend(str(entry / "train" / "last"), prefix_cache_bytes=1 << 28)
            try:
                if role == "agent":
                    return await agent_skill(backend)
                return await memory_skill(BackendMemory(backend))
            finally:
                await backend.aclose()

        skill = asyncio.run(probe())
        probe_name = f"{role} skill probe (held-out seeds {SKILL_SEED}+)"
        return default_quality(entry) | {f"{probe_name}: {k}": round(v, 3) for k, v in skill.items()}

    return quality


def evaluate(agent_dir: str, memory_dir: str, episodes: int = 8, steps: int = 40, seed: int = 10_000) -> dict:
    """In-process check of trained models: agent success with full context and with CoMem, and the
    memory model's recall of the facts still needed."""
    import asyncio

    from tenfold.comem.runtime import BackendMemory, PolicyConfig, run_episode
    from tenfold.core.backends import LocalBackend

    async def main():
        agent = LocalBackend(agent_dir, prefix_cache_bytes=1 << 28)
        mem = LocalBackend(memory_dir, prefix_cache_bytes=1 << 28)
        out = {}
        try:
            for policy in ("full", "comem"):
                games = [VaultGame(VaultConfig(steps, 2, 1, seed + i)) for i in range(episodes)]
                res = await asyncio.gather(
                    *(
                        run_episode(g, agent, BackendMemory(mem), PolicyConfig(policy), AGENT_SYSTEM, TASK)
                        for g in games
                    )
                )
                out[f"success_{policy}"] = sum(r.success for r in res) / episodes
                out[f"score_{policy}"] = sum(r.score for r in res) / episodes
            recall = await memory_skill(BackendMemory(mem), episodes, steps, seed)
            out["memory_fact_recall"] = recall["fact_recall"]
        finally:
            await agent.aclose()
            await mem.aclose()
        return out

    return asyncio.run(main())


# measured from tenfold-base on one torch thread beside another one-thread training (the memory model's
# 800 steps partly beside a two-thread training)
for _role, _minutes in (("agent", 21), ("memory", 26)):
    register_artefact(
        f"comem-{_role}",
        "comem",
        lambda role=_role: cached_model(recipe(role)).artefact,
        ship=("train/last",),
        minutes=_minutes,
        doc=f"the Vault game's {_role} model (SFT from tenfold-base)",
        needs=(BASE_MODEL if recipe(_role).base else "comem-drill",),
        quality=_skill_quality(_role),
    )


def _rl_memory_artefact():
    from tenfold.comem.memory_rl import cached_rl_memory

    return cached_rl_memory().artefact


register_artefact(
    "comem-memory-rl",
    "comem",
    _rl_memory_artefact,
    ship=("train/last", "train/metrics.jsonl"),  # metrics.jsonl: the reward curve
    minutes=21,  # measured: 8 min of logged episodes and chains, then 120 steps of ~6 s (two threads)
    dtype="float16",
    doc="the Vault memory model trained by reward (GRPO on action agreement) from comem-memory",
    needs=("comem-agent", "comem-memory"),
    quality=_skill_quality("memory"),
)

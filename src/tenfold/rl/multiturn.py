"""Multi-turn agent RL: episodes in text environments, one training sample per turn, GiGPO advantages.

As verl-agent's rollout loop (which GiGPO and T2PO build on), each turn is its own sample: the prompt
is the agent's view at that turn (the task, a window of recent turns, the observation), the completion
is the agent's reply, and every token of it gets the turn's advantage. `run_episodes` plays the G
copies of each task in lockstep, one batched generation per turn; `EpisodeRollouts` is the trainer's
rollout worker (`tenfold.rl.trainer.train_rl(worker=...)`).

    for step:
        tasks  = k tasks; G environments of each
        while any episode runs:
            prompts = format.prompt(env, history) for the running episodes
            replies = turn_generator(prompts, previous turn scores)    # sampling hooks live here
            env.step(format.parse(reply)); reward = win - invalid_penalty * invalid
        A = GiGPO(episodes) (or GRPO over episodes); train on every turn

Two plug points keep systems out of this file: an `AgentFormat` (prompt and action parsing) and a
`TurnGenerator` (how a turn is generated: plain sampling here; T2PO's thinking cut-off and turn
resampling in `tenfold.t2po`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from tenfold.core.errors import TenfoldError
from tenfold.core.sampler import SamplingParams, generate
from tenfold.rl.gigpo import StepRecord, gigpo_advantages
from tenfold.rl.grpo import Config
from tenfold.rl.rollout import Rollout
from tenfold.rl.trainer import Batch

LOSS_TYPES = {"grpo": "seq-mean-token-mean", "bnpo": "token-mean", "dapo": "token-mean"}
ADVANTAGES = ("gigpo", "grpo")


@dataclass
class MultiTurnConfig:
    """Multi-turn RL hyper-parameters. Names follow TRL's GRPOConfig where it has one (num_generations,
    learning_rate, beta, epsilon, epsilon_high, loss_type, max_completion_length, max_grad_norm);
    defaults are GiGPO's (group 8, gamma 0.95, step weight 1, clip 0.2 / dual clip 3, invalid-action
    penalty 0.1, per-token mean) at tiny-model scale (learning rate, tasks per step)."""

    num_generations: int = 8  # G episodes of each task (GiGPO's group)
    tasks_per_step: int = 8
    steps: int = 50
    learning_rate: float = 1e-4
    beta: float = 0.0  # KL to the starting policy (low-variance k3; GiGPO uses 0.01 on ALFWorld)
    track_kl: bool = False  # report that KL at beta = 0 too (keeps a frozen copy of the start)
    epsilon: float = 0.2
    epsilon_high: float = 0.2
    dual_clip: float = 3.0
    loss_type: str = "bnpo"  # token mean over the batch (GiGPO's per-token mean); "grpo": sequence mean
    advantage: str = "gigpo"  # or "grpo": the episode-level term only
    gamma: float = 0.95
    step_weight: float = 1.0
    win_reward: float = 1.0
    invalid_penalty: float = 0.1
    temperature: float = 1.0
    max_completion_length: int = 64
    max_grad_norm: float = 1.0
    updates_per_batch: int = 1
    micro_batch: int = 64
    seed: int = 0
    eval_every: int = 5

    def validate(self) -> MultiTurnConfig:
        if self.num_generations < 2:
            raise TenfoldError(
                f"num_generations must be >= 2 (advantages are relative), got {self.num_generations}"
            )
        if self.loss_type not in LOSS_TYPES:
            raise TenfoldError(f"loss_type must be one of {sorted(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.advantage not in ADVANTAGES:
            raise TenfoldError(f"advantage must be one of {ADVANTAGES}, got {self.advantage!r}")
        if self.tasks_per_step < 1 or self.steps < 1 or self.max_completion_length < 1:
            raise TenfoldError(f"tasks_per_step, steps and max_completion_length must be >= 1: {self}")
        if not 0 <= self.gamma <= 1 or self.invalid_penalty < 0 or self.step_weight < 0:
            raise TenfoldError(f"need gamma in [0, 1], invalid_penalty >= 0, step_weight >= 0: {self}")
        self.rl_config()  # the loss settings are checked there
        return self

    def rl_config(self) -> Config:
        """The trainer's loss/optimiser settings for these hyper-parameters."""
        return Config(
            group_size=self.num_generations,
            prompts_per_step=self.tasks_per_step,
            steps=self.steps,
            lr=self.learning_rate,
            grad_clip=self.max_grad_norm,
            clip_low=self.epsilon,
            clip_high=self.epsilon_high,
            dual_clip=self.dual_clip,
            aggregation=LOSS_TYPES[self.loss_type],
            kl_coef=self.beta,
            track_kl=self.track_kl,
            updates_per_batch=self.updates_per_batch,
            micro_batch=self.micro_batch,
            temperature=self.temperature,
            max_new_tokens=self.max_completion_length,
            seed=self.seed,
            eval_every=self.eval_every,
        ).validate()


class AgentFormat(Protocol):
    """How an agent sees an environment and answers it."""

    def prompt(self, env: Any, history: Sequence[tuple[str, str]], observation: str) -> list[dict]:
        """Chat messages for this turn; `history` holds the (observation, action) pairs so far."""
        ...

    def parse(self, reply: str) -> str | None:
        """The action in a reply, or None when the reply is malformed (counted invalid)."""
        ...


@dataclass
class TurnOutput:
    """One generated turn. `score` is the turn's uncertainty score where the generator computes one
    (T2PO's mean M_t), NaN otherwise; `generations` counts the samples spent on it (resampling)."""

    token_ids: list[int]
    text: str
    loss_mask: list[int] | None = None
    score: float = float("nan")
    think_tokens: int = 0
    cut: str | None = None  # why a hook ended thinking early, if it did
    generations: int = 1


# (model, tokenizer, prompt token ids, previous turn's score per prompt (None at turn 0), seed)
TurnGenerator = Callable[[Any, Any, list[list[int]], list[float | None], int], list[TurnOutput]]


def turn_params(n: int, max_new_tokens: int, temperature: float, seed: int) -> list[SamplingParams]:
    """Sampling settings for n prompts of one turn, each with its own seed (reproducible whatever the
    batch)."""
    return [SamplingParams(max_new_tokens, temperature, seed=seed * 1_000_003 + i) for i in range(n)]


@dataclass
class SampledTurns:
    """The plain turn generator: one sample per turn, no hooks."""

    temperature: float = 1.0
    max_new_tokens: int = 64
    batch_size: int = 256

    def __call__(self, model, tok, prompts, prev_scores, seed) -> list[TurnOutput]:
        params = turn_params(len(prompts), self.max_new_tokens, self.temperature, seed)
        gens = generate(model, tok, prompts, params, batch_size=self.batch_size)
        return [TurnOutput(g.token_ids, g.text) for g in gens]


@dataclass
class Turn:
    """One played turn: the sample the trainer sees plus what the metrics need."""

    group: int
    episode: int
    index: int  # turn number within the episode
    observation: str  # the state it acted in (GiGPO's anchor)
    prompt_ids: list[int]
    out: TurnOutput
    action: str | None
    valid: bool
    reward: float


@dataclass
class Episode:
    group: int
    index: int
    turns: list[Turn] = field(default_factory=list)
    won: bool = False


def run_episodes(
    model,
    tok,
    tasks: Sequence[Any],
    make_env: Callable[[Any], Any],
    fmt: AgentFormat,
    turn_generator: TurnGenerator,
    copies: int = 1,
    seed: int = 0,
    win_reward: float = 1.0,
    invalid_penalty: float = 0.1,
) -> list[Episode]:
    """Play `copies` episodes of each task (task-major order: episode e is task e // copies), all
    running episodes advancing one turn per batched generation, each to its environment's end."""
    if copies < 1:
        raise TenfoldError(f"copies must be >= 1, got {copies}")
    envs, episodes, obs, history = [], [], [], []
    for g, task in enumerate(tasks):
        for _ in range(copies):
            env = make_env(task)
            envs.append(env)
            obs.append(env.reset())
            episodes.append(Episode(g, len(episodes)))
            history.append([])
    prev: list[float | None] = [None] * len(envs)
    done = [False] * len(envs)
    was_training = model.training
    model.eval()
    turn = 0
    try:
        while not all(done):
            live = [i for i in range(len(envs)) if not done[i]]
            prompts = [tok.apply_chat_template(fmt.prompt(envs[i], history[i], obs[i])) for i in live]
            with torch.no_grad():
                outs = turn_generator(model, tok, prompts, [prev[i] for i in live], seed * 7919 + turn)
            for i, p, out in zip(live, prompts, outs, strict=True):
                action = fmt.parse(out.text)
                admissible = action is not None and action in envs[i].admissible_actions()
                res = envs[i].step(action if action is not None else "")
                valid = admissible and res.valid
                reward = (win_reward if res.won else 0.0) - (0.0 if valid else invalid_penalty)
                episodes[i].turns.append(
                    Turn(episodes[i].group, i, turn, obs[i], p, out, action, valid, reward)
                )
                history[i].append((obs[i], action or ""))
                obs[i], prev[i] = res.observation, (None if math.isnan(out.score) else out.score)
                if res.done:
                    done[i], episodes[i].won = True, res.won
            turn += 1
    finally:
        model.train(was_training)
        for env in envs:  # TextWorld envs hold an interpreter process each
            if hasattr(env, "close"):
                env.close()
    return episodes


def episode_metrics(episodes: Sequence[Episode]) -> dict:
    """Success, valid-action rate, thinking and response tokens per turn, cuts and generations per turn."""
    turns = [t for e in episodes for t in e.turns]
    n = max(1, len(turns))
    return {
        "success": sum(e.won for e in episodes) / max(1, len(episodes)),
        "valid_rate": sum(t.valid for t in turns) / n,
        "think_tokens": sum(t.out.think_tokens for t in turns) / n,
        "response_tokens": sum(len(t.out.token_ids) for t in turns) / n,
        "turns": len(turns) / max(1, len(episodes)),
        "cut_share": sum(t.out.cut is not None for t in turns) / n,
        "generations_per_turn": sum(t.out.generations for t in turns) / n,
    }


class EpisodeRollouts:
    """The trainer's rollout worker for multi-turn episodes (see the module docstring). `tasks` is a
    list of task descriptions sampled uniformly without replacement, epoch by epoch."""

    def __init__(
        self,
        tasks: Sequence[Any],
        make_env: Callable[[Any], Any],
        fmt: AgentFormat,
        turn_generator: TurnGenerator,
        cfg: MultiTurnConfig,
    ):
        if not tasks:
            raise TenfoldError("EpisodeRollouts needs at least one training task")
        self.tasks, self.make_env, self.fmt, self.gen = list(tasks), make_env, fmt, turn_generator
        self.cfg = cfg.validate()
        self.rng = random.Random(cfg.seed)
        self.order: list[int] = []

    def _sample_tasks(self) -> list[Any]:
        out = []
        while len(out) < self.cfg.tasks_per_step:
            if not self.order:
                self.order = list(range(len(self.tasks)))
                self.rng.shuffle(self.order)
            out.append(self.tasks[self.order.pop()])
        return out

    def collect(self, model, tokenizer, step: int) -> Batch:
        cfg = self.cfg
        episodes = run_episodes(
            model,
            tokenizer,
            self._sample_tasks(),
            self.make_env,
            self.fmt,
            self.gen,
            cfg.num_generations,
            cfg.seed * 104_729 + step,
            cfg.win_reward,
            cfg.invalid_penalty,
        )
        turns = [t for e in episodes for t in e.turns]
        records = [StepRecord(t.group, t.episode, t.observation, t.reward) for t in turns]
        weight = cfg.step_weight if cfg.advantage == "gigpo" else 0.0
        adv = gigpo_advantages(records, cfg.gamma, weight)
        rollouts = []
        for t, a in zip(turns, adv, strict=True):
            r = Rollout(t.group, t.prompt_ids, t.out.token_ids, t.out.text, t.reward, t.out.loss_mask, a)
            rollouts.append(r)
        metrics = {f"train_{k}": v for k, v in episode_metrics(episodes).items()}
        metrics["reward_mean"] = sum(t.reward for t in turns) / max(1, len(turns))
        return Batch(rollouts, sum(t.out.generations for t in turns), metrics)

    def state_dict(self) -> dict:
        return {"order": self.order, "rng": self.rng.getstate()}

    def load_state_dict(self, d: dict) -> None:
        self.order = list(d["order"])
        v, internal, g = d["rng"]
        self.rng.setstate((v, tuple(internal), g))

"""The benchmark's arms and one RL run of an arm: GRPO, GiGPO, GiGPO + thinking cut-off, GiGPO + turn
resampling, and T2PO (GiGPO + both). Every arm starts from the same cold-start agent and trains on the
same tasks with the same seed; only the advantage and the two T2PO controls differ."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tenfold.core.errors import TenfoldError
from tenfold.core.thinking import ThinkingCutoff
from tenfold.rl.multiturn import EpisodeRollouts, MultiTurnConfig, episode_metrics, run_episodes
from tenfold.rl.trainer import RunResult, train_rl
from tenfold.t2po.agent import ThinkFormat
from tenfold.t2po.resample import T2POTurns


@dataclass(frozen=True)
class Arm:
    advantage: str  # "gigpo" or "grpo"
    cut: bool  # token-level thinking intervention (TTI)
    resample: bool  # turn-level dynamic sampling (TDS)


ARMS = {
    "grpo": Arm("grpo", False, False),
    "gigpo": Arm("gigpo", False, False),
    "gigpo+cut": Arm("gigpo", True, False),
    "gigpo+resample": Arm("gigpo", False, True),
    "t2po": Arm("gigpo", True, True),
}


def arm_of(name: str) -> Arm:
    if name not in ARMS:
        raise TenfoldError(f"unknown arm {name!r}; arms: {', '.join(ARMS)}")
    return ARMS[name]


@dataclass
class RunConfig:
    """One RL run. The thinking settings apply to arms with the cut; `eps` and `patience` are the
    calibrated ones for this vocabulary (`tenfold.t2po.calibrate`), `budget` the hard thinking budget."""

    steps: int = 30
    tasks_per_step: int = 4
    num_generations: int = 4
    learning_rate: float = 1e-3  # where GiGPO collapsed in 2 of 2 seeds within 9 steps (docs/t2po.md)
    beta: float = 0.0
    track_kl: bool = True  # KL to the start is one of the collapse signals, so measured at beta = 0 too
    temperature: float = 1.0
    max_new_tokens: int = 256
    # calibrated on the cold-start agent (`tenfold t2po calibrate --tasks 16`, docs/t2po.md): the paper's
    # eps 1e-4 / patience 20 / eta 0.3 fit Qwen3's vocabulary and thinking lengths, not a byte-level agent
    eps: float = 0.1
    patience: int = 16
    budget: int = 128
    # the cut only closes thinking: ending answers on stagnation (the paper's rule) cost success here,
    # even with the counter restarted at the think tags (docs/t2po.md, calibration)
    end_outside: bool = False
    reset_at_tags: bool = False
    eta: float = 0.003
    train_forced: bool = True  # the paper's: forced close-tag tokens are trained on like sampled ones
    max_try: int = 2
    history: int = 3
    micro_batch: int = 32
    eval_every: int = 5

    def validate(self) -> RunConfig:
        if self.steps < 1 or self.tasks_per_step < 1 or self.eval_every < 1:
            raise TenfoldError(f"steps, tasks_per_step and eval_every must be >= 1: {self}")
        return self

    def cutoff(self, arm: Arm) -> ThinkingCutoff:
        # arms without the cut still record M_t: TDS and the metrics need turn scores
        if arm.cut:
            return ThinkingCutoff(
                eps=self.eps,
                patience=self.patience,
                budget=self.budget,
                end_outside=self.end_outside,
                reset_at_tags=self.reset_at_tags,
            )
        return ThinkingCutoff(cut=False, budget=None)


def turn_generator(arm: Arm, cfg: RunConfig, training: bool) -> T2POTurns:
    """The arm's way of generating turns; resampling only while training (as the paper)."""
    return T2POTurns(
        cfg.cutoff(arm),
        resample=arm.resample and training,
        eta=cfg.eta,
        max_try=cfg.max_try,
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
        train_forced=cfg.train_forced,
    )


def evaluate_arm(model, tok, arm: Arm, cfg: RunConfig, tasks, samples: int = 1, seed: int = 12345) -> dict:
    """Success, valid-action rate and tokens on held-out tasks, with the arm's own cut (TTI is an
    inference-time control too) and no resampling."""
    gen = turn_generator(arm, cfg, training=False)
    eps = run_episodes(model, tok, tasks, make_env, ThinkFormat(cfg.history), gen, copies=samples, seed=seed)
    return episode_metrics(eps)


def make_env(task):
    return task.make(expert=False)  # RL never asks for the plan: TextWorld steps faster without it


def train_arm(
    model,
    tok,
    arm_name: str,
    tasks,
    cfg: RunConfig,
    seed: int = 0,
    evaluate=None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    quiet: bool = True,
) -> tuple[RunResult, T2POTurns]:
    """Train `model` in place with the arm; returns the run and its turn generator (resampling stats)."""
    arm = arm_of(arm_name)
    cfg = cfg.validate()
    mt = MultiTurnConfig(
        num_generations=cfg.num_generations,
        tasks_per_step=cfg.tasks_per_step,
        steps=cfg.steps,
        learning_rate=cfg.learning_rate,
        beta=cfg.beta,
        track_kl=cfg.track_kl,
        advantage=arm.advantage,
        temperature=cfg.temperature,
        max_completion_length=cfg.max_new_tokens,
        micro_batch=cfg.micro_batch,
        seed=seed,
        eval_every=cfg.eval_every,
    ).validate()
    gen = turn_generator(arm, cfg, training=True)
    worker = EpisodeRollouts(tasks, make_env, ThinkFormat(cfg.history), gen, mt)
    res = train_rl(
        model,
        tok,
        cfg=mt.rl_config(),
        evaluate=evaluate,
        out_dir=out_dir,
        resume=resume,
        quiet=quiet,
        worker=worker,
    )
    return res, gen

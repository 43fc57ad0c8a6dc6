"""One RLVR run of an arm: the prompt source each arm uses, GRPO on generated arithmetic until the
rollout budget is spent, and the held-out evaluation. `tenfold heapa train` (through the api) runs one
arm; `tenfold heapa bench` runs every arm over seeds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenfold.envs.arith import MAX_ANSWER_TOKENS, level_accuracy, reward
from tenfold.heapa.pool import PoolConfig
from tenfold.heapa.sources import HeaPAConfig, HeaPASource, PrioritizedSource
from tenfold.rl.grpo import Config
from tenfold.rl.trainer import UniformSource, train_rl

if TYPE_CHECKING:
    from tenfold.heapa.bench import BenchConfig

ARMS = ("uniform", "dapo", "prioritized", "heap", "heap+aug", "heap+aug+path", "heap@p=0.5")


def make_source(arm: str, problems, seed: int, cfg: BenchConfig, policy, tok):
    if arm in ("uniform", "dapo"):  # the same item type as the pool's, so one reward function serves all
        return UniformSource([HeaPASource._item(i, p) for i, p in enumerate(problems)], seed=seed)
    if arm == "prioritized":
        return PrioritizedSource(problems, seed=seed)
    hc = HeaPAConfig(
        pool=PoolConfig(
            max_size=cfg.pool_size, seed=seed, split_at=0.0 if arm == "heap@p=0.5" else cfg.split_at
        ),
        augment=arm not in ("heap", "heap@p=0.5"),
        reestimate="path" if arm == "heap+aug+path" else None,
        group_size=cfg.group_size,
    )
    return HeaPASource(problems, hc, policy, tok)


def train_arm(
    policy, tok, source, arm: str, seed: int, cfg: BenchConfig, evaluate, ckpt_every: int = 0, **train_kw
):
    """GRPO on arithmetic with `source` choosing the prompts, until `cfg.budget` rollouts (the bench
    and `tenfold heapa train` share it); `train_kw` goes to `train_rl` (out_dir, resume, quiet)."""
    rl = Config(
        group_size=cfg.group_size,
        prompts_per_step=cfg.prompts_per_step,
        steps=10**6,  # the budget ends the run
        lr=cfg.lr,
        dynamic_sampling=arm == "dapo",
        eval_every=cfg.eval_every,
        max_new_tokens=MAX_ANSWER_TOKENS[cfg.answers],
        ckpt_every=ckpt_every,
        seed=seed,
    )
    train_kw.setdefault("quiet", True)
    return train_rl(
        policy,
        tok,
        source,
        lambda item, text: reward(item.answer, text),
        rl,
        evaluate=evaluate,
        rollout_budget=cfg.budget,
        **train_kw,
    )


def evaluate_policy(model, tok, cfg: BenchConfig) -> dict:
    """Held-out accuracy per level: avg@`eval_samples` at temperature 1.0, top-p 0.7 (HeaPA's protocol)."""
    return level_accuracy(
        model,
        tok,
        cfg.eval_n,
        samples=cfg.eval_samples,
        temperature=1.0,
        top_p=0.7,
        max_new_tokens=MAX_ANSWER_TOKENS[cfg.answers],
        batch_size=512,  # one evaluation (6 levels x eval_n x samples) in one batch: fewer decode steps
    )

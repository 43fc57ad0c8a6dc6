"""What a HeaPA user calls: the pool outside our trainer (`HeapPool`, and `HeapSampler` for a PyTorch or
TRL loop), and our own RLVR runs: `warm` (the SFT'd arithmetic policy), `train` (one arm), `bench`.

    pool = HeapPool([PoolItem(i, text) for i, text in enumerate(prompts)])
    batch = pool.sample(64)                  # cold first, then the frontier
    pool.update(batch, rewards_per_item)     # mean reward of each item's group -> archive

`HeapSampler` plugs the pool into a PyTorch / TRL training loop that draws dataset indices: it yields
each chosen index `repeat` times in a row (the layout of TRL's GRPO `RepeatSampler`, one block per
generation group) and learns from `feedback(indices, rewards)` called after each step (e.g. from a
TrainerCallback). Indices whose feedback never arrives are archived unscored and come back cold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tenfold.core.errors import TenfoldError
from tenfold.heapa.pool import HeapPool, PoolConfig, PoolItem


class HeapSampler:
    """A `torch.utils.data.Sampler`-compatible iterator of dataset indices drawn from a HeapPool."""

    def __init__(
        self,
        dataset_size: int,
        batch_prompts: int,
        repeat: int = 1,
        steps: int = 1000,
        cfg: PoolConfig | None = None,
    ):
        if dataset_size < 1 or batch_prompts < 1 or repeat < 1 or steps < 1:
            raise TenfoldError("dataset_size, batch_prompts, repeat and steps must all be >= 1")
        self.pool = HeapPool((PoolItem(i, str(i)) for i in range(dataset_size)), cfg)
        self.batch_prompts, self.repeat, self.steps = batch_prompts, repeat, steps
        self.pending: dict[int, PoolItem] = {}

    def __len__(self) -> int:
        return self.steps * self.batch_prompts * self.repeat

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.steps):
            for it in self.pending.values():  # no feedback: back as cold next time
                it.reward = None
                self.pool.archive[it.id] = it
            self.pending = {}
            for it in self.pool.sample(self.batch_prompts):
                self.pending[it.id] = it
                yield from [it.id] * self.repeat

    def feedback(self, indices: Sequence[int], rewards: Sequence[float]) -> None:
        """Per-completion rewards for dataset indices of the last batch (any order, repeats allowed)."""
        if len(indices) != len(rewards):
            raise TenfoldError(f"{len(indices)} indices but {len(rewards)} rewards")
        groups: dict[int, list[float]] = {}
        for i, r in zip(indices, rewards, strict=True):
            if int(i) not in self.pending:
                raise TenfoldError(f"index {i} was not in the last batch")
            groups.setdefault(int(i), []).append(float(r))
        items = [self.pending.pop(i) for i in groups]
        self.pool.update(items, list(groups.values()))

    def state_dict(self) -> dict:
        return self.pool.state_dict()

    def load_state_dict(self, d: dict) -> None:
        self.pool.load_state_dict(d)


def warm(answers: str = "worked", retrain: bool = False, quiet: bool = False) -> tuple:
    """The warm-start policy for `answers` (worked or bare; shipped, cached or trained) and its held-out
    accuracy per level (avg@2 at temperature 1.0, top-p 0.7): (checkpoint dir, accuracy)."""
    from tenfold.core.models import load_model
    from tenfold.heapa.arms import evaluate_policy
    from tenfold.heapa.bench import BenchConfig
    from tenfold.heapa.train import WarmStart, warm_policy

    cfg = BenchConfig(answers=answers).validate()
    path = warm_policy(WarmStart.for_answers(answers), retrain=retrain, quiet=quiet)
    model, tok = load_model(path)
    return path, evaluate_policy(model.eval(), tok, cfg)


def train(
    arm: str = "heap+aug+path",
    budget: int = 6144,
    out_dir: str | None = "runs/heapa",
    seed: int = 0,
    answers: str = "worked",
    resume: bool = False,
    quiet: bool = False,
):
    """GRPO on generated arithmetic from the warm policy, prompts chosen by `arm`, until `budget`
    rollouts; metrics and checkpoints under `out_dir` (resumable). Returns the run's RunResult."""
    from tenfold.core.models import load_model
    from tenfold.envs.arith import sample_problems
    from tenfold.heapa.arms import ARMS, evaluate_policy, make_source, train_arm
    from tenfold.heapa.bench import BenchConfig
    from tenfold.heapa.train import WarmStart, warm_policy

    if arm not in ARMS:
        raise TenfoldError(f"unknown arm {arm!r}; arms are {', '.join(ARMS)}")
    cfg = BenchConfig(budget=budget, answers=answers).validate()
    policy, tok = load_model(warm_policy(WarmStart.for_answers(answers), quiet=quiet))
    source = make_source(arm, sample_problems(cfg.problems, seed), seed, cfg, policy, tok)
    try:
        return train_arm(
            policy,
            tok,
            source,
            arm,
            seed,
            cfg,
            evaluate=lambda m: evaluate_policy(m, tok, cfg),
            ckpt_every=cfg.eval_every,
            out_dir=out_dir,
            resume=resume,
            quiet=quiet,
        )
    finally:
        if hasattr(source, "close"):
            source.close()


def bench(cfg, quiet: bool = False) -> dict:
    """Every arm of `cfg` (a `heapa.bench.BenchConfig`) at an equal rollout budget, over its seeds."""
    from tenfold.heapa.bench import run_bench

    return run_bench(cfg, quiet)

"""What a RESD user calls: the warm-start model (`warm`), one streaming run (`train`), held-out
evaluation (`evaluate`) and the benchmark (`bench`). The loss is `tenfold.rl.distill` (reusable with any
teacher context), the task `tenfold.envs.manufactoria`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tenfold.core.errors import TenfoldError
from tenfold.resd.bench import ARMS, BenchConfig
from tenfold.resd.loop import LoopConfig


def warm(retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the warm-start model (cached, or trained now: SFT from tenfold-base)."""
    from tenfold.resd.train import cached_warm

    return cached_warm(quiet=quiet).path(retrain)


def train(
    arm: str = "resd",
    cfg: LoopConfig | None = None,
    stream_tasks: int = 128,
    model: str | Path | None = None,
    out: str | Path | None = None,
    quiet: bool = False,
) -> dict:
    """One streaming run of a RESD-family arm (resd, resd-oracle, sdpo, sdpo+ss, ablations) from the
    warm start (or `model`); the trained model is saved to `out` when given."""
    from tenfold.core.models import load_model, save_model
    from tenfold.resd.bench import stream
    from tenfold.resd.loop import Resd

    if arm not in ARMS or ARMS[arm] is None:
        runnable = [a for a, v in ARMS.items() if v is not None]
        raise TenfoldError(f"train runs one of {runnable} (GRPO-8x runs in the bench), got {arm!r}")
    cfg = replace(cfg or LoopConfig(), **ARMS[arm]).validate()
    lm, tok = load_model(model or warm(quiet=quiet))
    trainer = Resd(lm, tok, cfg)
    history = trainer.run(stream(BenchConfig(stream_tasks=stream_tasks, loop=cfg)), quiet=quiet)
    if out:
        save_model(lm, tok, out)
    return {
        "iterations": len(history),
        "last": history[-1].__dict__ if history else None,
        "playbook": trainer.ctx.playbook.render(),
        "context": trainer.ctx.stats.as_dict(),
    }


def evaluate(
    model: str | Path | None = None, tasks: int = 48, samples: int = 4, split: str = "heldout"
) -> dict:
    """mean@k, best@k and per-test accuracy on `tasks` tasks of `split` (held-out families by default)."""
    from tenfold.core.models import load_model
    from tenfold.envs.manufactoria import task_pool
    from tenfold.resd.bench import evaluate as run_eval

    lm, tok = load_model(model or warm())
    return run_eval(lm, tok, task_pool(tasks, split), samples)


def bench(cfg: BenchConfig | None = None, quiet: bool = False) -> dict:
    from tenfold.resd import bench as b

    cfg = (cfg or BenchConfig()).validate()
    return b.bench(cfg, warm(quiet=quiet), quiet)

"""What a T2PO user calls: the cold-start agent (`agent`), one RL run of an arm (`train`), the
calibration of the thinking cut-off (`calibrate`), the benchmark (`bench`), and playing held-out games
(`evaluate`). The pieces are reusable apart: the cut-off is `tenfold.core.thinking` (any model, and
`tenfold serve`'s `thinking_cutoff` request option), GiGPO and the multi-turn trainer are
`tenfold.rl`, the environments `tenfold.envs`.
"""

from __future__ import annotations

from pathlib import Path

from tenfold.t2po.arms import RunConfig, arm_of
from tenfold.t2po.bench import BenchConfig


def agent(init: str = "base", retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the cold-start agent (shipped, cached, or trained now)."""
    from tenfold.t2po.train import agent_dir

    return agent_dir(init, retrain, quiet)


def train(
    arm: str = "t2po",
    cfg: RunConfig | None = None,
    out: str | Path = "runs/t2po",
    seed: int = 0,
    train_tasks: int = 48,
    eval_tasks: int = 24,
    model: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
):
    """Train the cold-start agent (or `model`) with one arm; metrics and checkpoints in `out`."""
    import torch

    from tenfold.core.models import load_model
    from tenfold.t2po.arms import evaluate_arm, train_arm
    from tenfold.t2po.train import build_games, task_pool

    cfg = (cfg or RunConfig()).validate()
    arm_of(arm)
    tasks, heldout = task_pool(train_tasks, "train"), task_pool(eval_tasks, "heldout")
    build_games(tasks + heldout)
    torch.manual_seed(seed)
    lm, tok = load_model(model or agent(quiet=quiet))
    res, gen = train_arm(
        lm, tok, arm, tasks, cfg, seed,
        evaluate=lambda m: evaluate_arm(m, tok, arm_of(arm), cfg, heldout),
        out_dir=out, resume=resume, quiet=quiet,
    )  # fmt: skip
    return res, gen.stats.as_dict()


def calibrate(tasks: int = 24, model: str | Path | None = None, quiet: bool = False) -> dict:
    """eps and patience of the thinking cut-off for the agent (see `tenfold.t2po.calibrate`)."""
    from tenfold.core.models import load_model
    from tenfold.t2po import calibrate as cal
    from tenfold.t2po.train import build_games, task_pool

    pool = task_pool(tasks, "train")
    build_games(pool)
    lm, tok = load_model(model or agent(quiet=quiet))
    return cal.calibrate(lm.eval(), tok, pool)


def evaluate(arm: str = "t2po", model: str | Path | None = None, tasks: int = 24, samples: int = 1) -> dict:
    """Held-out success, valid-action rate and thinking tokens with the arm's generation settings."""
    from tenfold.core.models import load_model
    from tenfold.t2po.arms import evaluate_arm
    from tenfold.t2po.train import build_games, task_pool

    chosen = arm_of(arm)
    heldout = task_pool(tasks, "heldout")
    build_games(heldout)
    lm, tok = load_model(model or agent())
    return evaluate_arm(lm.eval(), tok, chosen, RunConfig(), heldout, samples)


def bench(cfg: BenchConfig | None = None, quiet: bool = False) -> dict:
    from tenfold.t2po import bench as b

    cfg = (cfg or BenchConfig()).validate()
    return b.bench(cfg, agent(cfg.init, quiet=quiet), quiet)

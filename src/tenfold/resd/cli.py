"""`tenfold resd ...`: the warm-start model, one streaming run, held-out evaluation, the benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, WorkersOpt, finish_bench

app = typer.Typer(
    help="RESD: reflection-enhanced self-distillation on Manufactoria-like tape programs.",
    no_args_is_help=True,
)

ModelOpt = Annotated[Path | None, typer.Option(help="checkpoint (default: the warm-start model)")]


@app.command()
def warm(retrain: bool = False, quiet: QuietOpt = False) -> None:
    """SFT the warm-start model (attempts, reflections, curations, corrections) from tenfold-base."""
    from tenfold.resd import api

    print(api.warm(retrain, quiet))


@app.command()
def train(
    arm: Annotated[str, typer.Option(help="resd, resd-oracle, sdpo, sdpo+ss, no-reflection, ...")] = "resd",
    stream_tasks: Annotated[int, typer.Option(help="tasks in the one-pass stream")] = 128,
    lr: Annotated[float, typer.Option(help="learning rate")] = 1e-3,
    seed: int = 0,
    model: ModelOpt = None,
    out: Annotated[Path | None, typer.Option(help="save the trained model here")] = None,
    quiet: QuietOpt = False,
) -> None:
    """One streaming RESD run (Algorithm 1) from the warm start."""
    from tenfold.resd import api
    from tenfold.resd.loop import LoopConfig

    res = api.train(arm, LoopConfig(learning_rate=lr, seed=seed), stream_tasks, model, out, quiet)
    print(json.dumps({k: v for k, v in res.items() if k != "playbook"}, indent=1))
    print(res["playbook"])


@app.command()
def evaluate(
    model: ModelOpt = None,
    tasks: Annotated[int, typer.Option(help="tasks to evaluate")] = 48,
    samples: Annotated[int, typer.Option(help="samples per task (mean@k, best@k)")] = 4,
    split: Annotated[str, typer.Option(help="heldout (held-out families) or train")] = "heldout",
) -> None:
    """mean@k, best@k and per-test-case accuracy of a model on Manufactoria-like tasks."""
    from tenfold.resd import api

    print(json.dumps(api.evaluate(model, tasks, samples, split), indent=1))


@app.command()
def bench(
    quick: QuickOpt = True,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """RESD against SDPO, SDPO + solution buffer, GRPO-8x and the ablations, several seeds."""
    from tenfold.resd import api
    from tenfold.resd.bench import BenchConfig, markdown, plot

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg.workers = workers
    result = api.bench(cfg, quiet)
    finish_bench(result, markdown(result), json_path, plot_path, plot)

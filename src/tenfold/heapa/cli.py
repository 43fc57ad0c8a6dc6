"""`tenfold heapa ...`: warm-start the policy, train one arm with RLVR, run the benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, WorkersOpt, finish_bench

app = typer.Typer(
    help="HeaPA: heap-based frontier prompt pool with on-policy augmentation (RLVR).", no_args_is_help=True
)


Answers = Annotated[str, typer.Option(help="the policy's answer format: worked (steps) or bare (the number)")]


@app.command()
def warm(answers: Answers = "worked", retrain: bool = False, quiet: QuietOpt = False) -> None:
    """SFT the tiny arithmetic policy (answers and variant writing; cached) and print its held-out
    accuracy per level (avg@2 at temperature 1.0, top-p 0.7)."""
    from tenfold.heapa import api

    path, accuracy = api.warm(answers, retrain, quiet)
    print(f"-> {path}")
    print(json.dumps(accuracy, indent=1))


@app.command()
def train(
    arm: Annotated[
        str, typer.Option(help="uniform, dapo, prioritized, heap, heap+aug, heap+aug+path, heap@p=0.5")
    ] = "heap+aug+path",
    budget: Annotated[int, typer.Option(help="rollouts to spend")] = 6144,
    out: Annotated[Path, typer.Option(help="run directory: metrics.jsonl, checkpoints")] = Path("runs/heapa"),
    seed: int = 0,
    answers: Answers = "worked",
    resume: bool = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the warm policy with GRPO on arithmetic, prompts chosen by `arm`, until `budget` rollouts."""
    from tenfold.heapa import api

    res = api.train(arm, budget, out, seed, answers, resume, quiet)
    print(json.dumps({"steps": res.steps, "rollouts": res.rollouts, "final": res.evals[-1]}, indent=1))


@app.command()
def bench(
    quick: QuickOpt = True,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Uniform, DAPO filtering, prioritized and three HeaPA arms at an equal rollout budget, >= 3 seeds."""
    from tenfold.heapa import api
    from tenfold.heapa.bench import BenchConfig, markdown, plot

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg.workers = workers
    result = api.bench(cfg, quiet)
    finish_bench(result, markdown(result), json_path, plot_path, plot)

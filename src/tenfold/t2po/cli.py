"""`tenfold t2po ...`: the cold-start agent, its calibration, one RL run, evaluation, the benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, WorkersOpt, finish_bench

app = typer.Typer(
    help="T2PO: multi-turn agent RL with a thinking cut-off and turn resampling (on GiGPO).",
    no_args_is_help=True,
)

ArmOpt = Annotated[str, typer.Option(help="grpo, gigpo, gigpo+cut, gigpo+resample or t2po")]
InitOpt = Annotated[str, typer.Option(help="the cold start's start: base (tenfold-base) or scratch")]


@app.command()
def agent(init: InitOpt = "base", retrain: bool = False, quiet: QuietOpt = False) -> None:
    """SFT the cold-start agent on expert TextWorld turns with synthetic thinking (cached; shipped)."""
    from tenfold.t2po import api

    print(api.agent(init, retrain, quiet))


@app.command()
def calibrate(
    tasks: Annotated[int, typer.Option(help="training games to play (2 episodes each)")] = 24,
    model: Annotated[Path | None, typer.Option(help="checkpoint (default: the cold-start agent)")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Measure the thinking signal of the agent and choose the cut-off's eps and patience."""
    from tenfold.t2po import api

    out = api.calibrate(tasks, model, quiet)
    grid = out.pop("grid")
    print(json.dumps(out, indent=1))
    kept = "within" if out["within_tolerance"] else "NOT within (the least harmful shown)"
    print(f"({len(grid)} grid rows; eps {out['eps']:g}, patience {out['patience']}: {kept} tolerance)")


@app.command()
def train(
    arm: ArmOpt = "t2po",
    steps: Annotated[int, typer.Option(help="RL steps")] = 30,
    lr: Annotated[float, typer.Option(help="learning rate (1e-3: where GiGPO collapses here)")] = 1e-3,
    out: Annotated[Path, typer.Option(help="run directory: metrics.jsonl, checkpoints")] = Path("runs/t2po"),
    seed: int = 0,
    model: Annotated[Path | None, typer.Option(help="start here instead of the cold-start agent")] = None,
    train_forced: Annotated[
        bool, typer.Option(help="train on the forced </think> tokens like sampled ones (the paper's)")
    ] = True,
    resume: bool = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the cold-start agent with one arm on TextWorld coin-collector games."""
    from tenfold.t2po import api
    from tenfold.t2po.arms import RunConfig

    res, resampling = api.train(
        arm,
        RunConfig(steps=steps, learning_rate=lr, train_forced=train_forced),
        out,
        seed,
        model=model,
        resume=resume,
        quiet=quiet,
    )
    print(
        json.dumps(
            {"steps": res.steps, "samples": res.rollouts, "final": res.evals[-1], "resampling": resampling},
            indent=1,
        )
    )


@app.command()
def evaluate(
    arm: ArmOpt = "t2po",
    model: Annotated[Path | None, typer.Option(help="checkpoint (default: the cold-start agent)")] = None,
    tasks: Annotated[int, typer.Option(help="held-out games")] = 24,
) -> None:
    """Play held-out games with the arm's generation settings: success, valid actions, thinking tokens."""
    from tenfold.t2po import api

    print(json.dumps(api.evaluate(arm, model, tasks), indent=1))


@app.command()
def bench(
    quick: QuickOpt = True,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """GRPO, GiGPO, GiGPO + cut, GiGPO + resampling and T2PO from one cold start, several seeds."""
    from tenfold.t2po import api
    from tenfold.t2po.bench import BenchConfig, markdown, plot

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg.workers = workers
    result = api.bench(cfg, quiet)
    finish_bench(result, markdown(result), json_path, plot_path, plot)

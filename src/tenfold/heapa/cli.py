"""`tenfold heapa ...`: warm-start the policy, train one arm with RLVR, run the benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="HeaPA: heap-based frontier prompt pool with on-policy augmentation (RLVR).", no_args_is_help=True
)


Answers = Annotated[str, typer.Option(help="the policy's answer format: worked (steps) or bare (the number)")]


@app.command()
def warm(answers: Answers = "worked", retrain: bool = False, quiet: bool = False) -> None:
    """SFT the tiny arithmetic policy (answers and variant writing; cached) and print its held-out
    accuracy per level (avg@2 at temperature 1.0, top-p 0.7)."""
    from tenfold.core.models import load_model
    from tenfold.heapa.bench import BenchConfig, evaluate_policy
    from tenfold.heapa.train import WarmStart, warm_policy

    cfg = BenchConfig(answers=answers).validate()
    path = warm_policy(WarmStart.for_answers(answers), retrain=retrain, quiet=quiet)
    model, tok = load_model(path)
    print(f"-> {path}")
    print(json.dumps(evaluate_policy(model.eval(), tok, cfg), indent=1))


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
    quiet: bool = False,
) -> None:
    """Train the warm policy with GRPO on arithmetic, prompts chosen by `arm`, until `budget` rollouts."""
    from tenfold.core.errors import TenfoldError
    from tenfold.core.models import load_model
    from tenfold.envs.arith import sample_problems
    from tenfold.heapa.bench import ARMS, BenchConfig, evaluate_policy, make_source, train_arm
    from tenfold.heapa.train import WarmStart, warm_policy

    if arm not in ARMS:
        raise TenfoldError(f"unknown arm {arm!r}; arms are {', '.join(ARMS)}")
    cfg = BenchConfig(budget=budget, answers=answers).validate()
    policy, tok = load_model(warm_policy(WarmStart.for_answers(answers), quiet=quiet))
    source = make_source(arm, sample_problems(cfg.problems, seed), seed, cfg, policy, tok)
    res = train_arm(
        policy,
        tok,
        source,
        arm,
        seed,
        cfg,
        evaluate=lambda m: evaluate_policy(m, tok, cfg),
        ckpt_every=cfg.eval_every,
        out_dir=out,
        resume=resume,
        quiet=quiet,
    )
    if hasattr(source, "close"):
        source.close()
    print(json.dumps({"steps": res.steps, "rollouts": res.rollouts, "final": res.evals[-1]}, indent=1))


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick/--full")] = True,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot")] = None,
    workers: Annotated[
        int | None, typer.Option(help="runs side by side, one CPU thread each (default: one per core)")
    ] = None,
    quiet: bool = False,
) -> None:
    """Uniform, DAPO filtering, prioritized and three HeaPA arms at an equal rollout budget, >= 3 seeds."""
    from tenfold.heapa.bench import BenchConfig, markdown, plot, run_bench, write_json

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg.workers = workers
    result = run_bench(cfg, quiet)
    print(markdown(result))
    if json_out:
        write_json(result, json_out)
    if plot_out:
        print(f"wrote {plot(result, plot_out)}")

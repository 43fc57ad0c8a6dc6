"""`tenfold sgd ...`: answer a question autoregressively, with Skeleton-of-Thought, or with SGD."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, finish_bench

app = typer.Typer(
    help="Skeleton Graph Decoding: skeleton with dependencies, points decoded as a graph.",
    no_args_is_help=True,
)

DEFAULT_MODELS = "the tiny SGD models trained here (trained and cached on first use)"
LargeOpt = Annotated[str | None, typer.Option(help=f"checkpoint dir or URL (default: {DEFAULT_MODELS})")]
SmallOpt = Annotated[str | None, typer.Option(help="model for easy points (default: with --large, none)")]


@app.command()
def train(
    role: Annotated[str, typer.Argument(help="small (easy points) or large")],
    retrain: bool = False,
    init: Annotated[
        str, typer.Option(help="large model's start: base (tenfold-base), drill (recall warm-up) or scratch")
    ] = "base",
    quiet: bool = False,
) -> None:
    """Train (or find cached) a tiny SGD model on generated chains questions; prints its checkpoint dir."""
    from tenfold.sgd.train import recipe, trained_model

    print(trained_model(recipe(role, init), retrain=retrain, quiet=quiet))


@app.command()
def run(
    question: Annotated[str | None, typer.Argument(help="the question (default: a generated one)")] = None,
    large: LargeOpt = None,
    small: SmallOpt = None,
    mode: Annotated[str, typer.Option(help="ar, sot or sgd")] = "sgd",
    seed: Annotated[int, typer.Option(help="seed of the generated question")] = 0,
    parts: int = 4,
    escalate_below: Annotated[
        float | None,
        typer.Option(help="re-answer on the large model a small-model point with a token logprob below this"),
    ] = None,
    stream: Annotated[
        bool, typer.Option(help="start points while the plan is being written (--no-stream: after it)")
    ] = True,
    one_line_points: Annotated[
        bool | None,
        typer.Option(
            help="end each point at its first newline (default: on for the tiny models and generated "
            "questions, whose parts are answered in one line; off for your own model and question)"
        ),
    ] = None,
) -> None:
    """Answer one question and print the answer, the skeleton, the schedule trace and, for a generated
    question, which parts are right."""
    import asyncio

    from tenfold.core.backends import make_backend
    from tenfold.envs.chains import ChainConfig, generate, score
    from tenfold.sgd.api import SGDConfig, answer

    if one_line_points is None:
        one_line_points = large is None or question is None
    cfg = SGDConfig(
        mode=mode,
        escalate_below=escalate_below,
        stream=stream,
        point_stop=("\n",) if one_line_points else (),
    ).validate()
    if large is None:
        large, small = _default_models(small)
    q = None if question else generate(ChainConfig(parts, seed=seed))
    text = question or q.text

    async def main():
        lg = make_backend(large)
        sm = make_backend(small) if small else None
        try:
            return await answer(text, lg, sm, cfg)
        finally:
            await lg.aclose()
            if sm is not None:
                await sm.aclose()

    a = asyncio.run(main())
    print(text)
    print(a.text)
    for w in a.warnings:
        print("warning:", w)
    if a.skeleton is not None:
        print("skeleton:\n" + a.skeleton.format())
    print(json.dumps({"mode": a.mode, "seconds": round(a.seconds, 3), **a.trace}, default=str))
    if q is not None:
        print("right:", score(q, a.text))


@app.command()
def bench(
    quick: QuickOpt = True,
    large: LargeOpt = None,
    small: SmallOpt = None,
    questions: Annotated[
        int | None, typer.Option(help="generated questions (default: quick 24, full 48)")
    ] = None,
    min_parts: Annotated[int, typer.Option(help="parts per question, at least")] = 7,
    max_parts: Annotated[int, typer.Option(help="parts per question, at most (8 at most)")] = 8,
    max_depth: Annotated[int, typer.Option(help="longest dependency chain between parts")] = 1,
    judge: Annotated[str | None, typer.Option(help="OpenAI-compatible URL of an LLM judge")] = None,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """ar vs SoT vs SGD (with and without routing) on the same generated questions: latency, exact
    match per part and dependency depth, small-model share; optionally an LLM-judge score."""
    from dataclasses import replace

    from tenfold.sgd import api
    from tenfold.sgd.bench import BenchConfig, markdown_table, plot

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg = replace(
        cfg,
        questions=questions or cfg.questions,
        min_parts=min_parts,
        max_parts=max_parts,
        max_depth=max_depth,
    )
    if large is None and small is None:
        print(f"using {DEFAULT_MODELS}")
    result = api.bench(cfg, large, small, quiet, judge)
    finish_bench(
        result, markdown_table(result["summary"]), json_path, plot_path, lambda r, p: plot(r["summary"], p)
    )


def _default_models(small: str | None) -> tuple[str, str]:
    from tenfold.sgd.train import prepare_models

    if small is not None:
        raise typer.BadParameter("--small needs --large")
    print(f"using {DEFAULT_MODELS}")
    return prepare_models()

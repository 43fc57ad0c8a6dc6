"""`tenfold sgd ...`: answer a question autoregressively, with Skeleton-of-Thought, or with SGD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Skeleton Graph Decoding (in progress: no trained models yet).", no_args_is_help=True)


@app.command()
def train(
    role: Annotated[str, typer.Argument(help="small (easy points) or large")],
    retrain: bool = False,
    quiet: bool = False,
) -> None:
    """Train (or find cached) a tiny SGD model on generated chains questions; prints its checkpoint dir."""
    from tenfold.sgd.train import recipe, trained_model

    print(trained_model(recipe(role), retrain=retrain, quiet=quiet))


@app.command()
def run(
    question: Annotated[str | None, typer.Argument(help="the question (default: a generated one)")] = None,
    large: Annotated[str, typer.Option(help="checkpoint dir, preset or OpenAI-compatible URL")] = "",
    small: Annotated[str | None, typer.Option(help="model for easy points (default: none)")] = None,
    mode: Annotated[str, typer.Option(help="ar, sot or sgd")] = "sgd",
    seed: Annotated[int, typer.Option(help="seed of the generated question")] = 0,
    parts: int = 4,
) -> None:
    """Answer one question and print the answer, the skeleton, the schedule trace and, for a generated
    question, which parts are right."""
    import asyncio

    from tenfold.core.backends import make_backend
    from tenfold.core.errors import TenfoldError
    from tenfold.envs.chains import ChainConfig, generate, score
    from tenfold.sgd.api import SGDConfig, answer

    if not large:
        raise TenfoldError("--large is required (trained SGD models are not built yet)")
    cfg = SGDConfig(mode=mode).validate()
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
    large: Annotated[str, typer.Option(help="checkpoint dir, preset or OpenAI-compatible URL")],
    small: Annotated[str | None, typer.Option(help="model for easy points")] = None,
    questions: int = 24,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    plot_path: Annotated[Path | None, typer.Option("--plot")] = None,
    quiet: bool = False,
) -> None:
    """ar vs SoT vs SGD (with and without routing) on the same generated questions."""
    from tenfold.sgd.bench import BenchConfig, markdown_table, plot, run_bench, write_json

    result = run_bench(BenchConfig(questions=questions), large, small, quiet)
    print(markdown_table(result["summary"]))
    if json_path:
        write_json(result, json_path)
    if plot_path:
        plot(result["summary"], plot_path)

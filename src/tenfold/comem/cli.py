"""`tenfold comem ...`: train the tiny models, play episodes, benchmark the policies, run the proxy."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, finish_bench

app = typer.Typer(help="CoMem: asynchronous k-step-off agent memory.", no_args_is_help=True)


@app.command()
def train(
    role: Annotated[
        str,
        typer.Argument(
            help="agent, memory, memory-rl (trained by reward), drill (the shared warm-up) or all"
        ),
    ],
    retrain: bool = False,
    init: Annotated[
        str, typer.Option(help="start from: base (tenfold-base), drill (the recall warm-up) or scratch")
    ] = "base",
    quiet: bool = False,
) -> None:
    """Train (or find cached) the tiny Vault models; prints the checkpoint dir(s)."""
    from tenfold.comem.train import drilled_model, prepare_models, recipe, trained_model
    from tenfold.core.errors import TenfoldError

    if role == "all" and not retrain:
        print(*prepare_models(quiet, init), sep="\n")
    elif role == "drill":
        print(drilled_model(retrain=retrain, quiet=quiet))
    elif role in ("agent", "memory"):
        print(trained_model(recipe(role, init), retrain=retrain, quiet=quiet))
    elif role == "memory-rl":
        from tenfold.comem.memory_rl import cached_rl_memory

        if init != "base":
            raise TenfoldError("memory-rl starts from the shipped SFT memory model (--init base)")
        print(cached_rl_memory(quiet=quiet).path(retrain))
    else:
        raise TenfoldError(
            f"role must be agent, memory, memory-rl, drill or all (without --retrain), got {role!r}"
        )


@app.command()
def run(
    policy: Annotated[str, typer.Option(help="full, sync or comem")] = "comem",
    steps: Annotated[int, typer.Option(help="episode length (rooms)")] = 40,
    seed: int = 0,
    agent: Annotated[str | None, typer.Option(help="checkpoint dir or OpenAI-compatible URL")] = None,
    memory: Annotated[str | None, typer.Option(help="checkpoint dir or OpenAI-compatible URL")] = None,
    interval: Annotated[int, typer.Option(help="R: summarise every R steps")] = 4,
    k: Annotated[int, typer.Option(help="wait for a summary only once it is k steps old")] = 1,
    verbose: bool = True,
) -> None:
    """Play one Vault episode in-process under POLICY and print each step."""
    from tenfold.comem import api

    game, res = api.play(policy, steps, seed, agent, memory, interval, k)
    if verbose:
        for (obs, reply), r in zip(game.log, res.records, strict=True):
            print(f"{r.t:3d} {r.seconds * 1000:6.0f} ms  {obs:45s} -> {reply}")
        for s in res.summaries:
            print("summary:", s)
    print(json.dumps(res.summary(), indent=1))


@app.command()
def check(
    agent: Annotated[str | None, typer.Option(help="checkpoint dir or URL (default: trained tiny)")] = None,
    memory: Annotated[str | None, typer.Option(help="checkpoint dir or URL (default: trained tiny)")] = None,
    games: Annotated[int, typer.Option(help="held-out episodes per probe")] = 8,
) -> None:
    """Probe the two skills CoMem's success hinges on, each alone on held-out episodes: the agent's
    action at every door and fork given the full expert history, and the memory model's recall of the
    facts still needed. Run it after `train --retrain`, or on your own models."""
    import asyncio

    from tenfold.comem.runtime import BackendMemory
    from tenfold.comem.train import agent_skill, memory_skill, recipe, trained_model
    from tenfold.core.backends import make_backend
    from tenfold.core.errors import TenfoldError

    if games < 1:
        raise TenfoldError(f"games must be >= 1, got {games}")

    async def main():
        a = make_backend(agent or str(trained_model(recipe("agent"))))
        m = make_backend(memory or str(trained_model(recipe("memory"))))
        try:
            return {
                "agent": await agent_skill(a, games),
                "memory": await memory_skill(BackendMemory(m), games),
            }
        finally:
            await a.aclose()
            await m.aclose()

    print(json.dumps(asyncio.run(main()), indent=1))


@app.command()
def bench(
    quick: QuickOpt = True,
    steps: Annotated[
        list[int] | None, typer.Option(help="episode lengths (repeatable; default: quick 40, 80; full 20-80)")
    ] = None,
    concurrency: Annotated[list[int] | None, typer.Option(help="concurrent sessions (repeatable)")] = None,
    agent: Annotated[str | None, typer.Option(help="checkpoint dir or URL (default: trained tiny)")] = None,
    memory: Annotated[str | None, typer.Option(help="checkpoint dir or URL (default: trained tiny)")] = None,
    env_latency: Annotated[float, typer.Option(help="seconds per environment step")] = 0.0,
    interval: Annotated[int, typer.Option(help="R: summarise every R steps")] = 4,
    k: Annotated[int | None, typer.Option(help="staleness bound of the main arms (default: R)")] = None,
    ks: Annotated[list[int] | None, typer.Option("--ks", help="k values of the quality sweep")] = None,
    proxy: Annotated[bool, typer.Option(help="also run comem through the proxy")] = True,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """full vs sync vs comem (and the proxy) on the same seeded episodes; see docs/comem.md."""
    from dataclasses import replace

    from tenfold.comem import api
    from tenfold.comem.bench import BenchConfig, markdown_tables, plot

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg = replace(
        cfg,
        steps=steps or cfg.steps,
        concurrency=concurrency or cfg.concurrency,
        agent=agent,
        memory=memory,
        env_latency=env_latency,
        interval=interval,
        k=interval if k is None else k,
        ks=ks or cfg.ks,
        proxy=proxy,
    )
    result = api.bench(cfg, quiet)
    finish_bench(result, markdown_tables(result, result["summary"]), json_path, plot_path, plot)


@app.command()
def quality(
    quick: QuickOpt = True,
    steps: Annotated[
        list[int] | None, typer.Option(help="episode lengths (default: quick 40; full 40, 80)")
    ] = None,
    episodes: Annotated[int, typer.Option(help="held-out episodes per arm and length")] = 64,
    arms: Annotated[
        list[str] | None,
        typer.Option("--arm", help="full, none, oracle, sft, rl, sync (repeatable; default all)"),
    ] = None,
    agent: Annotated[str | None, typer.Option(help="agent checkpoint dir (default: shipped)")] = None,
    sft_memory: Annotated[
        str | None, typer.Option(help="SFT memory checkpoint dir (default: shipped)")
    ] = None,
    rl_memory: Annotated[str | None, typer.Option(help="RL memory checkpoint dir (default: shipped)")] = None,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Success per memory arm (full, no memory, scripted oracle, SFT, RL, sync) on held-out episodes,
    with 95% intervals, RL vs SFT on the same episodes, and the RL reward curve; see docs/comem.md."""
    from dataclasses import replace

    from tenfold.comem import api
    from tenfold.comem.quality import QualityConfig, markdown_table, plot

    cfg = QualityConfig.quick() if quick else QualityConfig()
    cfg = replace(
        cfg,
        steps=steps or cfg.steps,
        episodes=episodes,
        arms=arms or cfg.arms,
        agent=agent,
        sft_memory=sft_memory,
        rl_memory=rl_memory,
    )
    result = api.quality(cfg, quiet)
    finish_bench(result, markdown_table(result), json_path, plot_path, plot)


@app.command()
def proxy(
    agent_url: Annotated[str, typer.Option(help="the agent model's OpenAI-compatible base URL (…/v1)")],
    memory_url: Annotated[str, typer.Option(help="the memory model's OpenAI-compatible base URL")],
    port: int = 8100,
    host: str = "127.0.0.1",
    interval: Annotated[int, typer.Option(help="R: summarise every R turns")] = 4,
    k: Annotated[int, typer.Option(help="wait for a pending summary once it is k turns old")] = 1,
    memory_model: Annotated[str | None, typer.Option(help="model name on the memory server")] = None,
    memory_max_tokens: int = 96,
    memory_input: Annotated[
        str,
        typer.Option(help="incremental (previous summary + new turns) or history (every turn, the paper)"),
    ] = "incremental",
    memory_timeout: Annotated[
        float,
        typer.Option(
            help="seconds a summary may take (connect + answer) before the turn goes on with the full "
            "history (why 15 s: see ProxyConfig)"
        ),
    ] = 15.0,
    agent_timeout: Annotated[
        float,
        typer.Option(help="seconds to wait for the agent's first byte, or between streamed bytes (then 504)"),
    ] = 600.0,
    max_body_mb: Annotated[float, typer.Option(help="largest request body, MiB (then 413)")] = 32.0,
) -> None:
    """Serve an OpenAI-compatible endpoint that forwards compressed histories to AGENT_URL.

    Errors come in the OpenAI shape (400 malformed request, 413 body too large, 415 not JSON, 421 a Host
    that is not loopback when bound to loopback, 502/504 agent down or hung); /health probes
    both servers: 200 ok, 200 degraded (memory down: full histories), 503 unavailable (agent down)."""
    import uvicorn

    from tenfold.comem.proxy import ProxyConfig, create_proxy_app
    from tenfold.comem.runtime import BackendMemory
    from tenfold.core.backends import OpenAIBackend
    from tenfold.core.http import LOOPBACK_HOSTS

    cfg = ProxyConfig(  # checks the values
        agent_url,
        interval,
        k,
        memory_timeout=memory_timeout,
        memory_input=memory_input,
        agent_timeout=agent_timeout,
        memory_url=memory_url,
        max_body_bytes=max(1, int(max_body_mb * 2**20)),
        # bound to loopback: answer only Host headers naming loopback (no DNS rebinding from a web page)
        allowed_hosts=LOOPBACK_HOSTS if host.strip("[]") in LOOPBACK_HOSTS else None,
    )
    # the client's own timeout bounds connect and read; ProxyConfig.memory_timeout bounds the whole call
    backend = OpenAIBackend(memory_url, model=memory_model, timeout=memory_timeout)
    memory = BackendMemory(backend, memory_max_tokens)
    app_ = create_proxy_app(cfg, memory)
    print(f"CoMem proxy on http://{host}:{port}/v1 -> agent {agent_url}, memory {memory_url}")
    uvicorn.run(app_, host=host, port=port, log_level="warning")

"""What a CoMem user calls: play an episode with the agent acting on a summary at most k steps stale
(`play`), benchmark full context vs synchronous vs CoMem memory (`bench`). The schedule itself is
`tenfold.comem.runtime.run_episode` (any OpenAI-compatible agent and memory); `tenfold comem proxy`
puts it in front of an existing agent server."""

from __future__ import annotations

from tenfold.comem.bench import BenchConfig, run_bench, summarize
from tenfold.comem.quality import QualityConfig, run_quality
from tenfold.comem.runtime import BackendMemory, EpisodeResult, PolicyConfig, run_episode
from tenfold.core.benchkit import isolated


def default_models() -> tuple[str, str]:
    """The trained tiny agent and the memory model trained by reward (shipped, cached, or trained on
    first use)."""
    from tenfold.comem.memory_rl import cached_rl_memory
    from tenfold.comem.train import recipe, trained_model

    return str(trained_model(recipe("agent"))), str(cached_rl_memory().path())


def play(
    policy: str = "comem",
    steps: int = 40,
    seed: int = 0,
    agent: str | None = None,
    memory: str | None = None,
    interval: int = 4,
    k: int = 1,
):
    """One generated Vault episode under `policy` (full, sync or comem); returns (game, EpisodeResult).
    `agent` and `memory` are checkpoint dirs or OpenAI-compatible URLs (default: the trained tiny ones)."""
    import asyncio

    from tenfold.core.backends import make_backend
    from tenfold.envs.vault import AGENT_SYSTEM, TASK, VaultConfig, VaultGame

    if agent is None or memory is None:
        default_agent, default_memory = default_models()
        agent, memory = agent or default_agent, memory or default_memory
    game = VaultGame(VaultConfig(steps, seed=seed))

    async def main() -> EpisodeResult:
        a, m = make_backend(agent), make_backend(memory)
        try:
            return await run_episode(
                game, a, BackendMemory(m), PolicyConfig(policy, interval, k), AGENT_SYSTEM, TASK
            )
        finally:
            await a.aclose()
            await m.aclose()

    return game, asyncio.run(main())


def quality(cfg: QualityConfig, quiet: bool = False) -> dict:
    """Success per memory arm on held-out episodes with 95% intervals (`comem.quality`); the cells run
    side by side, one process and one thread each per core."""
    return run_quality(cfg.validate(), quiet)


def bench(cfg: BenchConfig, quiet: bool = False) -> dict:
    """full vs sync vs comem (and the proxy, and the k sweep) on the same seeded episodes, in a fresh
    process with one CPU thread; the result carries its `summary`."""
    result = isolated(run_bench, cfg.validate(), quiet)
    return {**result, "summary": summarize(result)}


__all__ = [
    "BenchConfig",
    "PolicyConfig",
    "QualityConfig",
    "bench",
    "default_models",
    "play",
    "quality",
    "run_episode",
]

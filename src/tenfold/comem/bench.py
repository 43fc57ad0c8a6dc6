"""`tenfold comem bench`: full vs sync vs comem (and comem through the proxy) on the same episodes.

Setup: the agent and the memory model each run in their own `tenfold serve` process pinned to one CPU
core, both with in-memory automatic prefix caching (`--prefix-cache-gb`), so the `full` baseline only
prefills each step's new tokens, as vLLM's automatic prefix caching would give it. Every policy plays
the same seeded Vault episodes; for each concurrency c, c sessions run at once against the same two
servers (their requests are batched together), and the policies take turns.

Reported per (episode length, concurrency, policy): episode latency (mean over sessions), per-step
latency, agent-call time, memory-call time, time blocked on memory, success rate. Also the analytic
bound for comem vs sync from the measured means (R = interval; memory overlapped with the agent step
and environment step it runs beside; see `analytic_bound`), quality vs k, and the proxy arm.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tenfold.comem.runtime import BackendMemory, EpisodeResult, PolicyConfig, run_episode
from tenfold.core.benchkit import save_figure
from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar
from tenfold.envs.vault import AGENT_SYSTEM, TASK, VaultConfig, VaultGame


@dataclass
class BenchConfig:
    """The full benchmark's settings; `quick()` is the quick reproduction's."""

    steps: list[int] = field(default_factory=lambda: [20, 40, 60, 80])  # episode lengths (difficulty)
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 8])
    min_episodes: int = 8  # per (length, concurrency, policy): waves of c sessions until at least this many
    interval: int = 4  # R
    # Staleness bound of the main arms. The paper's code awaits a summary one step after starting it
    # (k = 1), which only stalls rarely when a memory call takes about one agent + environment step.
    # Our memory model writes ~50 tokens where the agent mostly writes one word, so a call spans
    # several agent steps; k = R keeps the paper's bound (summary at most R steps stale). The k sweep
    # reports k = 1 too.
    k: int = 4
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # quality vs k (comem)
    k_episodes: int = 8
    env_latency: float = 0.0
    doors: int = 2
    forks: int = 1
    proxy: bool = True
    agent: str | None = None  # checkpoint dir or URL; None: the trained tiny agent (cached)
    memory: str | None = None
    seed: int = 10_000  # episode seeds start here (training draws from its own generator)
    prefix_cache_gb: float = 1.0
    # also run comem with the paper's optimized schedule (`PolicyConfig.prefill_ahead`) as its own arm
    prefill_arm: bool = True

    @classmethod
    def quick(cls) -> BenchConfig:
        # the k row compares the sweep's ends; the full run sweeps between them
        return cls(steps=[40, 80], min_episodes=2, ks=[1, 8])

    def validate(self) -> BenchConfig:
        if not self.steps or min(self.steps) < 3 * (self.doors + self.forks) + 3:
            raise TenfoldError(f"episode lengths {self.steps} too short for {self.doors + self.forks} facts")
        if not self.concurrency or min(self.concurrency) < 1 or min(self.ks or [1]) < 1:
            raise TenfoldError("concurrency and k values must be >= 1")
        return self


def analytic_bound(t_agent: float, t_mem: float, t_env: float, interval: int, k: int = 1) -> dict:
    """comem vs sync speed-up bounds from mean per-call times.

    Per summarisation step (the issue's form, and the paper's accounting: sync step = mem + agent + env,
    async step = max(agent, mem) + env): (mem + agent + env) / (max(agent, mem) + env), at most 2.
    Per window of R steps with one summary (what an episode is made of): sync = R (agent + env) + mem;
    comem = R (agent + env) + max(0, mem - k' (agent + env)) with k' = min(k, R) steps run beside the
    summary before it is awaited (k = 1: (R - 1)(agent + env) + max(agent + env, mem)).
    """
    step = (t_mem + t_agent + t_env) / (max(t_agent, t_mem) + t_env)
    beside = min(k, interval) * (t_agent + t_env)
    sync_w = interval * (t_agent + t_env) + t_mem
    comem_w = interval * (t_agent + t_env) + max(0.0, t_mem - beside)
    return {"per_step": step, "per_window": sync_w / comem_w}


def _games(cfg: BenchConfig, steps: int, n: int, offset: int = 0) -> list[VaultGame]:
    return [VaultGame(VaultConfig(steps, cfg.doors, cfg.forks, cfg.seed + offset + i)) for i in range(n)]


async def _wave(games, agent, memory, pcfg: PolicyConfig) -> list[EpisodeResult]:
    return list(
        await asyncio.gather(*(run_episode(g, agent, memory, pcfg, AGENT_SYSTEM, TASK) for g in games))
    )


def _aggregate(results: list[EpisodeResult]) -> dict:
    s = [r.summary() for r in results]
    mean = lambda key: statistics.fmean(x[key] for x in s)  # noqa: E731
    return {
        "episodes": len(s),
        "episode_s": mean("seconds"),
        "step_s": mean("step_mean_s"),
        "agent_s": mean("agent_mean_s"),
        "wait_s": mean("wait_total_s"),
        "env_s": mean("env_mean_s"),
        "prompt_tokens": mean("prompt_tokens_mean"),
        "prefills": sum(r.prefills for r in results),
        "memory_s": statistics.fmean([m for r in results for m in r.memory_seconds] or [0.0]),
        "memory_calls": sum(x["memory_calls"] for x in s),
        "memory_errors": sum(x["memory_errors"] for x in s),
        "success": mean("success"),
        "score": mean("score"),
    }


def resolve_models(cfg: BenchConfig, quiet: bool = False) -> tuple[str, str]:
    """(agent, memory): the config's, else the shipped agent and the memory model trained by reward
    (docs/comem.md: CoMem succeeds more often with it than with the SFT one)."""
    from tenfold.comem.memory_rl import cached_rl_memory
    from tenfold.comem.train import prepare_models

    if cfg.agent and cfg.memory:
        return cfg.agent, cfg.memory
    agent, _ = prepare_models(quiet)  # cached after the first time
    return cfg.agent or agent, cfg.memory or str(cached_rl_memory(quiet=quiet).path())


def run_bench(cfg: BenchConfig, quiet: bool = False) -> dict:
    """All arms in one run; returns {"setup", "rows", "k_sweep", "proxy"}."""
    from tenfold.core.backends import OpenAIBackend

    cfg.validate()
    agent_spec, memory_spec = resolve_models(cfg, quiet)
    t0 = time.perf_counter()
    rows, ksweep, proxy_rows = [], [], []
    pc = ("--prefix-cache-gb", str(cfg.prefix_cache_gb))
    with (
        _server(agent_spec, pc, cpu=0) as agent_url,
        _server(memory_spec, pc, cpu=1) as memory_url,
    ):
        policies = ("full", "sync", "comem") + (("comem-prefill",) if cfg.prefill_arm else ())
        n_cells = len(cfg.steps) * len(cfg.concurrency) * (len(policies) + cfg.proxy) + len(cfg.ks)
        with progress_bar("comem bench", total=n_cells, quiet=quiet) as bar:

            async def main():
                agent = OpenAIBackend(agent_url, timeout=600)
                memory = BackendMemory(OpenAIBackend(memory_url, timeout=600))
                await _wave(_games(cfg, 20, 1, offset=-1), agent, memory, PolicyConfig("comem"))  # warm-up
                for steps in cfg.steps:
                    for c in cfg.concurrency:
                        waves = max(1, -(-cfg.min_episodes // c))
                        for policy in policies:
                            pcfg = PolicyConfig(
                                policy.removesuffix("-prefill"),
                                cfg.interval,
                                cfg.k,
                                env_latency=cfg.env_latency,
                                prefill_ahead=policy.endswith("-prefill"),
                            )
                            results = []
                            before = await _computed_tokens(agent_url)
                            for w in range(waves):
                                results += await _wave(
                                    _games(cfg, steps, c, offset=w * c), agent, memory, pcfg
                                )
                            row = {"steps": steps, "concurrency": c, "policy": policy, **_aggregate(results)}
                            calls = sum(len(r.records) + r.prefills for r in results)
                            # tokens the agent server ran a forward pass on per request (the rest
                            # came from its prefix cache): what switching to a new summary costs
                            row["agent_prefill_tokens"] = (await _computed_tokens(agent_url) - before) / calls
                            rows.append(row)
                            bar.advance(1, steps=steps, c=c, policy=policy)
                        if cfg.proxy:
                            proxy_rows.append(await _proxy_arm(cfg, steps, c, waves, agent_url, memory_url))
                            bar.advance(1, steps=steps, c=c, policy="proxy")
                steps = max(cfg.steps)
                for k in cfg.ks:
                    pcfg = PolicyConfig("comem", cfg.interval, k, env_latency=cfg.env_latency)
                    results = await _wave(
                        _games(cfg, steps, cfg.k_episodes, offset=1000), agent, memory, pcfg
                    )
                    ksweep.append({"k": k, "steps": steps, **_aggregate(results)})
                    bar.advance(1, k=k)
                await agent.aclose()
                await memory.backend.aclose()

            asyncio.run(main())
    return {
        "setup": {
            **asdict(cfg),
            "agent": agent_spec,
            "memory": memory_spec,
            "seconds": time.perf_counter() - t0,
        },
        "rows": rows,
        "k_sweep": ksweep,
        "proxy": proxy_rows,
    }


async def _computed_tokens(url: str) -> float:
    """The agent server's prefill tokens computed so far (its prefix cache's counter), NaN if unknown."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10) as h:
            text = (await h.get(url.removesuffix("/v1") + "/metrics")).text
    except httpx.HTTPError:
        return float("nan")
    for line in text.splitlines():
        if line.startswith("tenfold_prefill_prefix_cache_computed_tokens_total "):
            return float(line.split()[1])
    return float("nan")


class _server:
    """A URL: `spec` itself when it is one, else a pinned `tenfold serve` process for the checkpoint."""

    def __init__(self, spec: str, args, cpu: int):
        self.spec, self.args, self.cpu, self.proc = spec, args, cpu, None

    def __enter__(self) -> str:
        if self.spec.startswith(("http://", "https://")):
            return self.spec
        from tenfold.core.server import ServerProcess

        self.proc = ServerProcess(self.spec, *self.args, cpu=self.cpu).__enter__()
        return self.proc.base_url

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.__exit__(*exc)


async def _proxy_arm(
    cfg: BenchConfig, steps: int, c: int, waves: int, agent_url: str, memory_url: str
) -> dict:
    """comem through `tenfold comem proxy`: a plain agent loop (full history each call) via the proxy,
    which runs as its own process, as users deploy it (in-process, its event loop and the harness's
    would share one GIL)."""
    import httpx

    from tenfold.core.backends import OpenAIBackend
    from tenfold.core.server import ServerProcess

    args = ("--agent-url", agent_url, "--memory-url", memory_url)
    args += ("--interval", str(cfg.interval), "--k", str(cfg.k))
    results = []
    with ServerProcess(None, command=("comem", "proxy", *args)) as proxy:
        client = OpenAIBackend(proxy.base_url, timeout=600)
        pcfg = PolicyConfig("full", cfg.interval, cfg.k, env_latency=cfg.env_latency)
        for w in range(waves):
            results += await _wave(_games(cfg, steps, c, offset=w * c), client, None, pcfg)
        await client.aclose()
        async with httpx.AsyncClient() as h:
            stats = (await h.get(proxy.base_url.removesuffix("/v1") + "/health")).json()
    return {
        "steps": steps,
        "concurrency": c,
        "policy": "comem-proxy",
        **_aggregate(results),
        "proxy_stats": stats,
    }


def summarize(result: dict) -> dict:
    """Ratios the issue's targets are stated in, per (steps, concurrency)."""
    by = {(r["steps"], r["concurrency"], r["policy"]): r for r in result["rows"]}
    cells = sorted({(r["steps"], r["concurrency"]) for r in result["rows"]})
    out = []
    for steps, c in cells:
        full, sync, comem = (by[(steps, c, p)] for p in ("full", "sync", "comem"))
        bound = analytic_bound(
            comem["agent_s"],
            comem["memory_s"],
            comem["env_s"],
            result["setup"]["interval"],
            result["setup"]["k"],
        )
        row = {
            "steps": steps,
            "concurrency": c,
            "speedup_vs_full": full["episode_s"] / comem["episode_s"],
            "speedup_vs_sync": sync["episode_s"] / comem["episode_s"],
            "bound_vs_sync_window": bound["per_window"],
            "bound_vs_sync_step": bound["per_step"],
            "success_full": full["success"],
            "success_sync": sync["success"],
            "success_comem": comem["success"],
            "success_ratio": comem["success"] / full["success"] if full["success"] else float("nan"),
        }
        row["vs_sync_of_bound"] = row["speedup_vs_sync"] / row["bound_vs_sync_window"]
        if (prefill := by.get((steps, c, "comem-prefill"))) is not None:
            row["prefill_speedup_vs_full"] = full["episode_s"] / prefill["episode_s"]
            row["prefill_vs_comem"] = comem["episode_s"] / prefill["episode_s"]
        px = next((p for p in result["proxy"] if p["steps"] == steps and p["concurrency"] == c), None)
        if px:
            row["proxy_vs_library"] = px["episode_s"] / comem["episode_s"]
            row["proxy_speedup_vs_full"] = full["episode_s"] / px["episode_s"]
        out.append(row)
    return {"cells": out}


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    steps = max(r["steps"] for r in rows)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for policy, style in (("full", "o-"), ("sync", "s-"), ("comem", "^-"), ("comem-prefill", "v-")):
        sub = sorted(
            (r for r in rows if r["policy"] == policy and r["steps"] == steps), key=lambda r: r["concurrency"]
        )
        if not sub:
            continue
        ax[0].plot([r["concurrency"] for r in sub], [r["episode_s"] for r in sub], style, label=policy)
    px = sorted((p for p in result["proxy"] if p["steps"] == steps), key=lambda r: r["concurrency"])
    if px:
        ax[0].plot([r["concurrency"] for r in px], [r["episode_s"] for r in px], "x--", label="comem (proxy)")
    ax[0].set_xlabel("concurrent sessions")
    ax[0].set_ylabel(f"episode latency, {steps} steps (s)")
    ax[0].legend()
    policies = ("full", "sync", "comem")
    succ = [statistics.fmean(r["success"] for r in rows if r["policy"] == p) for p in policies]
    ax[1].bar(policies, succ, color=["C0", "C1", "C2"])
    ax[1].set_ylim(0, 1.05)
    ax[1].set_ylabel("success rate (all runs)")
    ks = result["k_sweep"]
    if ks:
        ax[2].plot([r["k"] for r in ks], [r["success"] for r in ks], "^-", label="success")
        ax[2].plot([r["k"] for r in ks], [r["score"] for r in ks], "v--", label="critical actions right")
        ax2 = ax[2].twinx()
        ax2.plot([r["k"] for r in ks], [r["episode_s"] for r in ks], "k:", label="episode s")
        ax2.set_ylabel("episode latency (s)")
        ax[2].set_xlabel("k (staleness bound)")
        ax[2].set_ylim(0, 1.05)
        ax[2].legend(loc="lower left")
    fig.suptitle("CoMem on Vault: tiny agent + tiny memory, one CPU core each")
    return save_figure(fig, path)


def markdown_tables(result: dict, summary: dict) -> str:
    """The per-arm table, the per-cell ratios and the k sweep, as Markdown (what docs/comem.md shows)."""
    out = [
        "| steps | sessions | policy | episode s | step ms | agent call ms | blocked on memory s "
        "| memory call ms | prompt tokens | prefilled tokens per agent request | success | critical actions right |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(result["rows"] + result["proxy"], key=lambda r: (r["steps"], r["concurrency"])):
        mem = f"{r['memory_s'] * 1000:.0f}" if r["memory_calls"] else "-"
        out.append(
            f"| {r['steps']} | {r['concurrency']} | {r['policy']} | {r['episode_s']:.2f} | {r['step_s'] * 1000:.0f} "
            f"| {r['agent_s'] * 1000:.0f} | {r['wait_s']:.2f} | {mem} | {r['prompt_tokens']:.0f} "
            f"| {r.get('agent_prefill_tokens', float('nan')):.0f} | {r['success']:.2f} | {r['score']:.2f} |"
        )
    out += [
        "",
        "| steps | sessions | comem vs full | comem vs sync | bound vs sync (R-step window) | share of bound "
        "| bound (issue's per-step form) | proxy / library | comem with pre-fill vs full | success comem / full |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in summary["cells"]:
        out.append(
            f"| {c['steps']} | {c['concurrency']} | {c['speedup_vs_full']:.2f}x | {c['speedup_vs_sync']:.2f}x "
            f"| {c['bound_vs_sync_window']:.2f}x | {c['vs_sync_of_bound']:.2f} | {c['bound_vs_sync_step']:.2f}x "
            f"| {c.get('proxy_vs_library', float('nan')):.2f} | {c.get('prefill_speedup_vs_full', float('nan')):.2f}x "
            f"| {c['success_comem']:.2f} / {c['success_full']:.2f} |"
        )
    if result["k_sweep"]:
        out += [
            "",
            "| k | episode s | blocked on memory s | success | critical actions right |",
            "|---|---|---|---|---|",
        ]
        for r in result["k_sweep"]:
            out.append(
                f"| {r['k']} | {r['episode_s']:.2f} | {r['wait_s']:.2f} | {r['success']:.2f} | {r['score']:.2f} |"
            )
    return "\n".join(out)

"""The CoMem reproduction: full vs sync vs comem (and the proxy) on seeded Vault episodes for latency;
each memory arm's success on held-out episodes (64 per arm, batched, no concurrency) for quality."""

from __future__ import annotations

from tenfold.comem import quality as q
from tenfold.comem.api import bench
from tenfold.comem.bench import BenchConfig, plot
from tenfold.core.benchkit import write_json
from tenfold.core.reproduce import Context, Row, register


@register(
    "comem",
    "asynchronous k-step-off memory: the agent acts on a stale summary + recent turns",
    artefacts=("comem-agent", "comem-memory", "comem-memory-rl"),
)
def reproduce(ctx: Context) -> list[Row]:
    return quality_rows(ctx) + latency_rows(ctx)


def quality_rows(ctx: Context) -> list[Row]:
    from tenfold.comem.api import quality

    result = quality(q.QualityConfig.quick() if ctx.quick else q.QualityConfig(), ctx.quiet)
    write_json(result, ctx.out_dir / "comem_quality.json")
    q.plot(result, ctx.plot_path("quality"))
    full, rl, sft = (q.pooled(result, a) for a in ("full", "rl", "sft"))
    vs_sft = next(p for p in result["paired"] if p["b"] == "sft")
    lengths = "/".join(str(s) for s in result["setup"]["steps"])

    def rate(name, p):
        return f"{name} {p['successes']}/{p['episodes']} = {p['success']:.2f} ({p['ci_low']:.2f}-{p['ci_high']:.2f})"

    others = ", ".join(rate(a, q.pooled(result, a)) for a in ("none", "oracle", "sync"))
    return [
        Row(
            f"success kept with the RL memory model: comem / full ({lengths}-step held-out episodes, "
            f"{result['setup']['episodes']} per arm and length)",
            "41.0% vs 40.4% (DeepSWE) ... 62.7% vs 69.0% (GLM-4.7); issue: >= 0.9",
            "comem_rl_success_ratio",
            rl["success"] / full["success"] if full["success"] else float("nan"),
            0.9,
            detail=f"{rate('rl', rl)}, {rate('full', full)}, {rate('sft', sft)}; {others} (95% Wilson intervals)",
        ),
        Row(
            "RL memory model above the SFT one beyond noise (one-sided exact McNemar p, same episodes)",
            "SFT-only memory model is a repository arm; issue: RL above SFT beyond seed noise",
            "rl_above_sft_p",
            vs_sft["p_a_above"],
            0.05,
            higher_is_better=False,
            detail=f"rl {rl['success']:.2f} vs sft {sft['success']:.2f}; episodes won by rl alone "
            f"{vs_sft['only_a']}, by sft alone {vs_sft['only_b']}",
        ),
    ]


def latency_rows(ctx: Context) -> list[Row]:
    result = bench(BenchConfig.quick() if ctx.quick else BenchConfig(), ctx.quiet)
    s = result["summary"]
    write_json(result, ctx.out_dir / "comem_bench.json")
    plot(result, ctx.plot_path("latency_success"))
    long = [c for c in s["cells"] if c["steps"] >= 40]
    by_c = {c["concurrency"]: c for c in long if c["steps"] == max(x["steps"] for x in long)}
    worst_speed = min(long, key=lambda c: c["speedup_vs_full"])
    pooled = {  # success over every episode of 40+ steps (the same seeds for every policy)
        p: sum(r["success"] * r["episodes"] for r in result["rows"] if r["policy"] == p and r["steps"] >= 40)
        / sum(r["episodes"] for r in result["rows"] if r["policy"] == p and r["steps"] >= 40)
        for p in ("full", "sync", "comem")
    }
    worst_batched = min(
        (c for c in long if c["concurrency"] >= 4), key=lambda c: c["speedup_vs_full"], default=worst_speed
    )
    worst_bound = min(long, key=lambda c: c["vs_sync_of_bound"])
    growth = by_c[max(by_c)]["speedup_vs_full"] / by_c[min(by_c)]["speedup_vs_full"]
    proxy = [c for c in s["cells"] if "proxy_vs_library" in c]
    worst_proxy = max(proxy, key=lambda c: abs(c["proxy_vs_library"] - 1)) if proxy else None
    ks = result["k_sweep"]

    def where(c):
        return f"{c['steps']} steps, {c['concurrency']} sessions"

    rows = [
        Row(
            "end-to-end latency: comem vs full context (worst over concurrency, 40+ steps)",
            "1.4x (SWE-Bench-Verified)",
            "comem_speedup_vs_full",
            worst_speed["speedup_vs_full"],
            1.4,
            detail=where(worst_speed)
            + "; all: "
            + ", ".join(
                f"{c['steps']} steps x {c['concurrency']}: {c['speedup_vs_full']:.2f}x" for c in long
            ),
        ),
        Row(
            "end-to-end latency: comem vs full context at 4 and 8 sessions (worst, 40+ steps)",
            "1.43-1.45x with CPU offload, 1.61-1.92x without (repository README)",
            "comem_speedup_vs_full_batched",
            worst_batched["speedup_vs_full"],
            1.4,
            detail=where(worst_batched)
            + f"; comem success in these cells {pooled['comem']:.2f}, full {pooled['full']:.2f} (few episodes: "
            "the quality rows measure success)",
        ),
        Row(
            "comem vs sync, as a share of the analytic bound (worst cell)",
            "bound (mem + agent + env) / (max(agent, mem) + env)",
            "comem_vs_sync_of_bound",
            worst_bound["vs_sync_of_bound"],
            0.85,
            detail=f"{where(worst_bound)}: measured {worst_bound['speedup_vs_sync']:.2f}x, "
            f"window bound {worst_bound['bound_vs_sync_window']:.2f}x, "
            f"per-step bound {worst_bound['bound_vs_sync_step']:.2f}x",
        ),
        Row(
            "speed-up over full does not shrink with concurrency (8 sessions / 1 session)",
            "grows: 1.92x -> 2.52x at batch 256 (GLM-4.7)",
            "speedup_growth_1_to_8",
            growth,
            1.0,
            detail=f"{by_c[min(by_c)]['speedup_vs_full']:.2f}x at {min(by_c)} -> "
            f"{by_c[max(by_c)]['speedup_vs_full']:.2f}x at {max(by_c)}",
        ),
    ]
    if worst_proxy:
        rows.append(
            Row(
                "proxy: episode latency through `tenfold comem proxy` / library comem (worst cell)",
                "drop-in adoption (issue: within 10%)",
                "proxy_vs_library",
                worst_proxy["proxy_vs_library"],
                1.10,
                higher_is_better=False,
                detail=where(worst_proxy),
            )
        )
    if ks:
        rows.append(
            Row(
                "quality vs staleness bound k (success at the largest k / at k=1)",
                "summary 1 <= k <= R steps stale",
                "success_k_max_over_k1",
                ks[-1]["success"] / ks[0]["success"] if ks[0]["success"] else float("nan"),
                0.9,
                detail=", ".join(f"k={r['k']}: {r['success']:.2f} ({r['episode_s']:.1f} s)" for r in ks),
            )
        )
    return rows

"""The HeterMoE reproduction: the paper's trends in the simulator, and the real runtime against it."""

from __future__ import annotations

from tenfold.core.benchkit import write_json
from tenfold.core.reproduce import Context, Row, register
from tenfold.hetermoe.api import bench
from tenfold.hetermoe.bench import BenchConfig, markdown, plot


@register(
    "hetermoe",
    "HeterMoE: attention on new GPUs, experts on old ones, zebra parallelism (simulated + runtime)",
)
def reproduce(ctx: Context) -> list[Row]:
    cfg = BenchConfig.quick() if ctx.quick else BenchConfig()
    result = bench(cfg, quiet=ctx.quiet)
    write_json(result, ctx.out_dir / "hetermoe_bench.json")
    (ctx.out_dir / "hetermoe_bench.md").write_text(markdown(result) + "\n")
    plot(result, ctx.plot_path("speedups"))
    s = result["summary"]
    by_seq, asym = s["heter_moe_over_ep_by_seq"], s["asym_gain_by_seq"]
    short, long = min(by_seq), max(by_seq)
    fmt = lambda d: ", ".join(f"{v:.2f}x at {int(k) // 1024}K" for k, v in d.items())  # noqa: E731
    rows = [
        Row(
            "HeterMoE / EP grows with sequence length (simulated, paper clusters)",
            "1.22x (4K) -> 1.89x (32K)",
            "hetermoe_over_ep_growth",
            by_seq[long] / by_seq[short],
            1.2,
            detail=fmt(by_seq),
        ),
        Row(
            "HeterMoE / EP at the longest sequence (simulated)",
            "1.89x at 32K",
            "hetermoe_over_ep_longest",
            by_seq[long],
            1.5,
            detail=f"max over settings {s['heter_moe_over_ep_max']:.2f}x (paper: up to 2.29x)",
        ),
        Row(
            "DistEP (no overlap) throughput as a share of HeterMoE's (simulated)",
            "about 0.55",
            "dist_ep_share",
            s["dist_ep_share_mean"],
            0.7,
            higher_is_better=False,
        ),
        Row(
            "asymmetric expert assignment gain at short sequences (HeterMoE / ZP)",
            "1.14-1.20x at 4K",
            "asym_gain_short",
            asym[short],
            1.1,
            detail=f"{fmt(asym)} (paper: fades to ~1.04x at 24K)",
        ),
        Row(
            "asymmetric assignment gain fades with sequence length (gain at 4K minus at 32K)",
            "1.14-1.20x at 4K, ~1.04x at 24K",
            "asym_gain_fade",
            asym[short] - asym[long],
            0.05,
        ),
        Row(
            "HeterMoE / EP(Ideal) (simulated, mean over settings)",
            "1.18x average, up to 1.38x",
            "hetermoe_over_ep_ideal",
            s["over_ep_ideal_mean"],
            1.0,
            detail=f"range {s['over_ep_ideal_min']:.2f}-{s['over_ep_ideal_max']:.2f}x",
        ),
        Row(
            "simulated HeterMoE iteration time / LP (fluid) bound, worst setting",
            "within 15% (issue target)",
            "hetermoe_over_lp_bound_worst",
            s["over_lp_bound_max"],
            1.15,
            higher_is_better=False,
            detail=f"mean {s['over_lp_bound_mean']:.2f}; worst at {s['worst_lp_case']}; against its own layout's "
            f"bound (attention pinned to new GPUs) worst {s['over_layout_bound_max']:.2f}",
        ),
    ]
    rt = result["runtime"]
    if rt:
        devs = [abs(r[k]["measured_over_predicted"] - 1) for r in rt for k in ("zp", "ep")]
        rows += [
            Row(
                "real runtime iteration time vs the simulator's prediction (ZP and EP, emulated devices)",
                "within 15% (issue target)",
                "runtime_vs_simulator_worst_deviation",
                max(devs),
                0.15,
                higher_is_better=False,
                detail="; ".join(
                    f"{r['case']}: ZP {r['zp']['measured_over_predicted']:.2f}, EP {r['ep']['measured_over_predicted']:.2f}"
                    for r in rt
                ),
            ),
            Row(
                "real runtime: ZP speed-up over EP (measured)",
                "HeterMoE beats EP",
                "runtime_zp_over_ep",
                min(r["zp_speedup_measured"] for r in rt),
                1.0,
                detail="; ".join(
                    f"{r['case']}: {r['zp_speedup_measured']:.2f}x measured, {r['zp_speedup_predicted']:.2f}x simulated"
                    for r in rt
                ),
            ),
            Row(
                "real runtime: first-step gradients equal a single-process run (max relative difference)",
                "equal up to float32 rounding",
                "runtime_grad_rel_diff",
                max(r[k]["grad_max_rel_diff"] for r in rt for k in ("zp", "ep")),
                1e-4,
                higher_is_better=False,
            ),
        ]
    return rows

"""`tenfold hetermoe ...`: plan, simulate and benchmark MoE training on two GPU generations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, finish_bench

app = typer.Typer(
    help="HeterMoE: attention on new GPUs, experts on old ones, zebra-parallel overlap.",
    no_args_is_help=True,
)

ClusterOpt = Annotated[str, typer.Option(help="COUNTxDEVICE,COUNTxDEVICE, e.g. 6xA40,6xV100")]
ModelOpt = Annotated[str, typer.Option(help="model spec: mixtral-1.3b, mixtral-2.6b, mixtral-4.3b, moe-tiny")]
ProfileOpt = Annotated[
    Path | None,
    typer.Option(help="device profiles from `tenfold hetermoe profile` (added to the built-in ones)"),
]
SCHEDULES = ("heter_moe", "zp", "dist_ep", "ep", "hetero_pp")


@app.command()
def plan(
    cluster: ClusterOpt = "6xA40,6xV100",
    model: ModelOpt = "mixtral-4.3b",
    seq: Annotated[int, typer.Option(help="sequence length (tokens)")] = 4096,
    batch: Annotated[int, typer.Option(help="sequences per iteration")] = 8,
    r: Annotated[
        int | None, typer.Option("--r", help="micro-batches (default: the planner's choice)")
    ] = None,
    profile: ProfileOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the plan as JSON")] = None,
    gantt: Annotated[Path | None, typer.Option(help="write a Gantt PNG of the schedules")] = None,
) -> None:
    """Choose R and the expert assignment, and compare every schedule (simulated)."""
    from tenfold.hetermoe import api

    p = api.plan(cluster, model, seq, batch, r, profile)
    d = p.to_dict()
    print(
        f"{p.cluster}  {model}  seq {seq}  batch {batch}: R = {p.R}, experts on attention GPUs per layer "
        f"{p.experts_moved}{'  (' + p.note + ')' if p.note else ''}"
    )
    print(f"{'schedule':<14}{'iteration ms':>14}{'HeterMoE speed-up':>20}")
    for k, v in p.times_ms.items():
        print(f"{k:<14}{v:>14.1f}{v / p.times_ms['heter_moe']:>19.2f}x")
    print(
        f"LP bound {p.lp_bound_ms:.1f} ms (x_attention {p.lp_x[0]:.2f}, x_expert {p.lp_x[1]:.2f} on new GPUs); "
        f"HeterMoE at {d['heter_moe_over_lp_bound']:.2f}x of it, {d['heter_moe_over_layout_bound']:.2f}x of "
        "its layout's bound"
    )
    if json_out:
        from tenfold.core.io import atomic_write_text

        atomic_write_text(json_out, json.dumps(d, indent=1))
    if gantt:
        _gantt(*api.setup(cluster, model, seq, batch, profile), p.R, p.experts_moved, gantt)


def _gantt(cost, cl, r: int, moved: list[int], path: Path, schedules=SCHEDULES) -> None:
    from tenfold.hetermoe.gantt import plot_timelines
    from tenfold.hetermoe.schedules import Setting, dist_ep, ep, hetero_pp, zp

    s = Setting(cost, cl)
    shares = [x / cost.model.experts for x in moved]
    make = {
        "heter_moe": lambda: zp(s, r, shares),
        "zp": lambda: zp(s, r),
        "dist_ep": lambda: dist_ep(s),
        "ep": lambda: ep(s),
        "hetero_pp": lambda: hetero_pp(s, r),
    }
    names = {
        "heter_moe": f"HeterMoE (ZP + asymmetric, R={r})",
        "zp": f"ZP (R={r})",
        "dist_ep": "DistEP",
        "ep": "EP",
        "hetero_pp": "hetero-aware PP",
    }
    tls = {names[k]: make[k]() for k in schedules}
    print(f"wrote {plot_timelines(tls, path, f'{cl}, {cost.model.name}, seq {cost.work.seq}')}")


@app.command()
def simulate(
    schedule: Annotated[str, typer.Option(help=f"one of {', '.join(SCHEDULES)}")] = "heter_moe",
    cluster: ClusterOpt = "6xA40,6xV100",
    model: ModelOpt = "mixtral-4.3b",
    seq: int = 4096,
    batch: int = 8,
    r: Annotated[int, typer.Option("--r", help="micro-batches")] = 8,
    profile: ProfileOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write every task's start and end")] = None,
    gantt: Annotated[Path | None, typer.Option(help="write a Gantt PNG")] = None,
) -> None:
    """Simulate one iteration of one schedule; print its time and each stream's busy share."""
    from tenfold.core.errors import TenfoldError
    from tenfold.hetermoe import api
    from tenfold.hetermoe.planner import gather_and_squeeze
    from tenfold.hetermoe.schedules import Setting, dist_ep, ep, hetero_pp, zp

    if schedule not in SCHEDULES:
        raise TenfoldError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    cost, cl = api.setup(cluster, model, seq, batch, profile)
    s = Setting(cost, cl)
    moved = gather_and_squeeze(s, r).experts_moved if schedule == "heter_moe" else [0] * cost.model.layers
    tl = {
        "heter_moe": lambda: zp(s, r, [x / cost.model.experts for x in moved]),
        "zp": lambda: zp(s, r),
        "dist_ep": lambda: dist_ep(s),
        "ep": lambda: ep(s),
        "hetero_pp": lambda: hetero_pp(s, r),
    }[schedule]()
    print(
        f"{schedule}: {tl.makespan:.1f} ms per iteration ({cost.work.tokens / tl.makespan * 1e3:,.0f} tokens/s)"
    )
    for res, u in tl.utilisation().items():
        print(f"  {res:<18} busy {u:6.1%}")
    if json_out:
        from tenfold.core.io import atomic_write_text

        rows = [
            {"task": n, "resource": t.resource, "kind": t.kind, "start_ms": tl.start[n], "end_ms": tl.end[n]}
            for n, t in tl.tasks.items()
        ]
        atomic_write_text(
            json_out, json.dumps({"schedule": schedule, "makespan_ms": tl.makespan, "tasks": rows})
        )
    if gantt:
        _gantt(cost, cl, r, moved, gantt, (schedule,))


@app.command()
def bench(
    quick: QuickOpt = True,
    runtime: Annotated[bool, typer.Option(help="also run the real multi-process runtime (ZP and EP)")] = True,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The paper's comparisons on its clusters, models and sequence lengths (simulated), and the real
    runtime's iteration time beside the simulator's prediction."""
    from tenfold.hetermoe import api
    from tenfold.hetermoe.bench import BenchConfig, markdown, plot

    cfg = BenchConfig.quick() if quick else BenchConfig()
    if not runtime:
        cfg.runtime_cases = []
    result = api.bench(cfg, quiet)
    finish_bench(result, markdown(result), json_path, plot_path, plot)


@app.command()
def profile(
    out: Annotated[Path, typer.Option(help="profile file to write (JSON)")] = Path("hetermoe_profile.json"),
    name: Annotated[str, typer.Option(help="name of this device type in the profile")] = "",
    seq: Annotated[int, typer.Option(help="sequence length for the attention-core measurement")] = 1024,
    generation: Annotated[int, typer.Option(help="generation rank (higher is newer)")] = 1,
) -> None:
    """Measure matmul, attention-core and copy throughput on this machine (CUDA when present)."""
    from tenfold.hetermoe.costmodel import save_profiles
    from tenfold.hetermoe.profiler import measure_profile

    prof = measure_profile(name or None, seq=seq, generation=generation)
    save_profiles([prof], out)
    print(
        f"{prof.name}: matmul {prof.matmul_tflops:.3f} TFLOP/s, attention core {prof.attn_core_tflops:.3f} "
        f"TFLOP/s, link {prof.link_gbps:.2f} GB/s -> {out}"
    )


@app.command()
def train(
    schedule: Annotated[str, typer.Option(help="zp or ep")] = "zp",
    attention_ranks: Annotated[
        int, typer.Option(help="M: processes holding attention (new device type)")
    ] = 2,
    expert_ranks: Annotated[int, typer.Option(help="N: processes holding the experts (old device type)")] = 2,
    micro_batches: Annotated[int, typer.Option(help="R (ZP)")] = 6,
    batch: Annotated[int, typer.Option(help="sequences per step")] = 12,
    seq: int = 256,
    steps: int = 5,
    emulate: Annotated[bool, typer.Option(help="dilate ops to the emulated device types' times")] = True,
    check: Annotated[bool, typer.Option(help="compare with a single-process run of the same model")] = True,
) -> None:
    """Train the small MoE with the real multi-process runtime (gloo; spawns M + N processes here; use
    `torchrun -m tenfold.hetermoe.runtime` for several machines)."""
    from tenfold.hetermoe import api
    from tenfold.hetermoe.runtime import RuntimeConfig, compare

    cfg = RuntimeConfig(
        schedule, attention_ranks, expert_ranks, micro_batches, batch, seq, steps, emulate=emulate
    )
    res, ref = api.train(cfg, check)
    for i, s in enumerate(res["steps"]):
        extra = f"  (one process: {ref['losses'][i]:.5f})" if ref else ""
        print(
            f"step {i}: loss {s['loss']:.5f}{extra}  iteration {s['iteration_s']:.3f} s  "
            f"grad sync + Adam {s['sync_and_step_s']:.3f} s"
        )
    print(f"simulator's prediction for this configuration: {res['predicted_s']:.3f} s per iteration")
    if ref:
        c = compare(res, ref)
        print(
            f"first-step gradients vs one process: max relative difference {c['grad_max_rel_diff']:.2e} "
            f"({c['grad_worst_param']}); losses differ by at most {c['loss_max_abs_diff']:.2e}"
        )

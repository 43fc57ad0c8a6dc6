"""What a HeterMoE user calls: plan a heterogeneous cluster's MoE schedule (`plan`: micro-batches R and
the asymmetric expert assignment, every schedule simulated), train with the real multi-process zebra
runtime (`train`), and benchmark the paper's comparisons (`bench`)."""

from __future__ import annotations

from pathlib import Path

from tenfold.hetermoe.bench import BenchConfig, run_bench


def setup(cluster: str, model: str, seq: int, batch: int, profile: Path | None = None):
    """(CostModel, Cluster) for a cluster spec like "6xA40,6xV100", a model name and a workload;
    `profile`: device profiles measured by `tenfold hetermoe profile`, added to the built-in ones."""
    from tenfold.hetermoe.costmodel import CostModel, Workload, get_model, load_profiles, parse_cluster

    profiles = load_profiles(profile) if profile else None
    return CostModel(get_model(model).validate(), Workload(seq, batch).validate()), parse_cluster(
        cluster, profiles
    )


def plan(
    cluster: str = "6xA40,6xV100",
    model: str = "mixtral-4.3b",
    seq: int = 4096,
    batch: int = 8,
    r: int | None = None,
    profile: Path | None = None,
):
    """HeterMoE's plan (R, experts moved to the attention GPUs per layer, every schedule's simulated
    iteration time and the LP bound) for a cluster and workload."""
    from tenfold.hetermoe.planner import plan as make_plan

    cost, cl = setup(cluster, model, seq, batch, profile)
    return make_plan(cost, cl, r)


def train(cfg, check: bool = True) -> tuple[dict, dict | None]:
    """Train the small MoE with the real runtime (`cfg`: a `hetermoe.runtime.RuntimeConfig`; spawns
    M + N gloo processes); with `check`, also a single-process run of the same model to compare with.
    Returns (run, reference or None)."""
    from tenfold.hetermoe.runtime import reference, run

    cfg.validate()
    res = run(cfg)
    return res, reference(cfg) if check else None


def bench(cfg: BenchConfig, quiet: bool = False) -> dict:
    """The paper's comparisons on its clusters, models and sequence lengths (simulated) and the real
    runtime beside the simulator's prediction."""
    return run_bench(cfg, quiet)


__all__ = ["BenchConfig", "bench", "plan", "setup", "train"]

"""What an AutoSpec user calls: generate specifications for a system's network from its traces
(`generate`), and benchmark AutoSpec against hand-written, grid and clustering specs (`bench`). Scoring
(`tenfold.autospec.metrics.score`) and verification (`tenfold.autospec.verify`, with the `autospec`
extra for ONNX and Marabou) work on any spec file."""

from __future__ import annotations

from tenfold.autospec.bench import METHODS, BenchConfig, run_bench
from tenfold.core.errors import TenfoldError


def simulate_split(system: str, traces: int = 60, steps: int = 100, seed: int = 0):
    """The system simulated over `traces` traces of `steps` steps, split by trace into the generation
    set (70%) and the held-out set (30%)."""
    from tenfold.autospec.systems import simulate

    return simulate(system, traces, steps, seed).split_by_trace(0.3, seed)


def generate(
    system: str = "abr",
    method: str = "autospec",
    traces: int = 60,
    steps: int = 100,
    seed: int = 0,
    polytope: bool = False,
) -> tuple[list, dict]:
    """Specs for `system` by `method` (autospec, hand-written, grid or clusters) from the generation
    traces, and the metadata a spec file records. `polytope` (autospec only) cuts each box to bounds on
    pairwise input differences."""
    from tenfold.autospec.generate import GenConfig, autospec

    if method not in METHODS:
        raise TenfoldError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if polytope and method != "autospec":
        raise TenfoldError("--polytope applies to the autospec method only")
    gen, _ = simulate_split(system, traces, steps, seed)
    specs = autospec(gen, GenConfig(polytope=True)) if polytope else METHODS[method](gen)
    meta = {
        "system": system,
        "method": method,
        "features": gen.features,
        "task": gen.task,
        "classes": gen.classes,
        "traces": traces,
        "steps": steps,
        "seed": seed,
    }
    return specs, meta


def verify_property(onnx, vnnlib, timeout_s: float = 30, engine: str = "tenfold", workers: int | None = None):
    """One VNN-LIB property on one ONNX network: a `bab.Result` (holds / violated / unknown)."""
    from pathlib import Path

    from tenfold.autospec.bab import SolveConfig
    from tenfold.autospec.instances import run_one
    from tenfold.core.benchkit import check_workers

    if timeout_s <= 0:
        raise TenfoldError(f"timeout must be positive, got {timeout_s}")
    return run_one(Path(onnx), Path(vnnlib), timeout_s, engine, SolveConfig(workers=check_workers(workers)))


def verify_instances(
    csv_path, engine: str = "tenfold", out=None, timeout_override=None, workers=None, quiet=False
):
    """A benchmark CSV (onnx,vnnlib,timeout) by `engine`: (per-instance results, summary)."""
    from tenfold.autospec.bab import SolveConfig
    from tenfold.autospec.instances import ENGINES, read_instances, run_instances, summary
    from tenfold.core.benchkit import check_workers

    if engine not in ENGINES:
        raise TenfoldError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    rows = read_instances(csv_path)
    cfg = SolveConfig(workers=check_workers(workers))
    results = run_instances(rows, engine, cfg, out, quiet, timeout_override)
    return results, summary(results)


def verify_bench(cfg=None, quiet: bool = False, keep_dir=None) -> dict:
    """tenfold's verifier against plain Marabou on competition-style instances (`verify_bench.run`)."""
    from tenfold.autospec.verify_bench import VerifyBenchConfig, run
    from tenfold.core.benchkit import check_workers

    cfg = cfg or VerifyBenchConfig.quick()
    check_workers(cfg.workers)
    return run(cfg, quiet, keep_dir)


def bench(cfg: BenchConfig, quiet: bool = False) -> dict:
    """Every method on every system of `cfg` over its seeds: F1, coverage, verification, flawed nets."""
    return run_bench(cfg, quiet)


__all__ = [
    "METHODS",
    "BenchConfig",
    "bench",
    "generate",
    "simulate_split",
    "verify_bench",
    "verify_instances",
    "verify_property",
]

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


def bench(cfg: BenchConfig, quiet: bool = False) -> dict:
    """Every method on every system of `cfg` over its seeds: F1, coverage, verification, flawed nets."""
    return run_bench(cfg, quiet)


__all__ = ["METHODS", "BenchConfig", "bench", "generate", "simulate_split"]

"""The bench kit every system's benchmark uses: runs side by side or in a fresh process with a fixed
number of CPU threads, JSON and figure writing, and the `bench` command's shared options and ending.

Why fresh processes with one thread: see `tenfold.core.bench`'s docstring (measured on the 2-core VMs:
two OpenMP threads stall in phases, and a second thread of a process that has run forward passes runs
slower). This module imports neither torch nor matplotlib until a function needs them.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.errors import TenfoldError
from tenfold.core.io import atomic_write_text


def isolated(fn, *args, threads: int | None = 1, **kwargs):
    """Run `fn(*args, **kwargs)` in a fresh spawned process with `threads` CPU threads; return its result.

    `threads` sets OMP_NUM_THREADS/MKL_NUM_THREADS for the child (None: the machine's default).
    """
    return in_processes(functools.partial(fn, **kwargs), [args], workers=1, threads=threads)[0]


def in_processes(fn, jobs: list[tuple], workers: int, threads: int | None = 1, on_done=None) -> list:
    """`[fn(*job) for job in jobs]`, run by `workers` fresh spawned processes of `threads` CPU threads
    each; results in job order. `fn` must be importable (a module-level function or a partial of one);
    `on_done(i, result)` is called as each job finishes (in the parent, in finishing order).

    Small models use a second core poorly inside one process (a decode step is mostly per-op overhead),
    so independent runs side by side, one thread each, finish sooner than one after another on two threads.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    try:
        if threads is not None:
            for k in saved:
                os.environ[k] = str(threads)
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=mp.get_context("spawn")) as pool:
            futures = {
                pool.submit(fn, *job): i for i, job in enumerate(jobs)
            }  # children get this environment
            results: list = [None] * len(jobs)
            for f in as_completed(futures):
                results[futures[f]] = f.result()
                if on_done is not None:
                    on_done(futures[f], results[futures[f]])
            return results
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_workers(workers: int | None) -> int | None:
    """`workers` unchanged when it is a count of processes (None: one per CPU core); else TenfoldError."""
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise TenfoldError(f"workers must be at least 1 (or None: one per CPU core), got {workers!r}")
    return workers


def map_jobs(fn, jobs: list[tuple], workers: int | None = None, on_done=None) -> list:
    """`[fn(*job) for job in jobs]` for independent, self-seeded jobs: in this process when `workers`
    is 1 (or there is one job), else side by side in `workers` processes of one CPU thread each (None:
    one per core). `on_done(i, result)` as each finishes. Raises TenfoldError for `workers` < 1."""
    workers = min(len(jobs), check_workers(workers) or os.cpu_count() or 1)
    if workers > 1:
        return in_processes(fn, jobs, workers, on_done=on_done)
    results = []
    for i, job in enumerate(jobs):
        results.append(fn(*job))
        if on_done is not None:
            on_done(i, results[-1])
    return results


def runs_by_arm(runs: list[dict]) -> dict[str, list[dict]]:
    """A bench's runs grouped by their "arm", in first-seen order."""
    arms: dict[str, list[dict]] = {}
    for r in runs:
        arms.setdefault(r["arm"], []).append(r)
    return arms


def seed_sd(xs: list[float]) -> float:
    """Sample standard deviation over seeds (0 for a single seed)."""
    import statistics

    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (z = 1.96: 95%); (0, 1) when n = 0. Unlike the normal
    approximation it stays inside [0, 1] and is not empty at 0 or n successes."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, not 1 - 1e-16
    return lo, 1.0 if successes == n else min(1.0, centre + half)


def mcnemar_p(only_a: int, only_b: int, one_sided: bool = False) -> float:
    """Exact McNemar p-value for paired outcomes (the same episodes under two arms): `only_a` episodes
    won by arm A alone, `only_b` by arm B alone; under the null each discordant pair is a fair coin.
    Two-sided by default; `one_sided`: the alternative that A wins more often. 1.0 with no discordant
    pair."""
    if min(only_a, only_b) < 0:
        raise ValueError(f"counts must be >= 0, got {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    if one_sided:
        return sum(math.comb(n, i) for i in range(only_a, n + 1)) / 2**n
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def write_json(data, path: str | Path) -> Path:
    """Write a benchmark's result as indented JSON, atomically, creating the folder. Objects with a
    `to_dict()` (core's BenchResult) are written through it, anything else JSON cannot hold as text."""

    def jsonable(obj):
        return obj.to_dict() if hasattr(obj, "to_dict") else str(obj)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(data, indent=1, default=jsonable))


# The `bench` command of every system: the same four options (plus its own), the same ending.
QuickOpt = Annotated[
    bool, typer.Option("--quick/--full", help="the quick reproduction's settings, or the full benchmark's")
]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="write the results here (JSON)")]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="write the plot here (PNG)")]
QuietOpt = Annotated[bool, typer.Option(help="no progress bars")]
WorkersOpt = Annotated[
    int | None, typer.Option(help="runs side by side, one CPU thread each (default: one per core)")
]


def finish_bench(result, table: str, json_path: Path | None, plot_path: Path | None, plot=None) -> None:
    """Print the result's table; write its JSON and `plot(result, path)` where asked."""
    print(table)
    if json_path:
        print(f"wrote {write_json(result, json_path)}")
    if plot_path and plot is not None:
        print(f"wrote {plot(result, plot_path)}")

"""Marabou queries in worker processes: side by side on the machine's cores, each killed at the
deadline or as soon as another one finds a counterexample.

Every query runs in a forked child process (cheap: maraboupy is already imported in the parent), so a
query past its time limit, or one no longer needed, is stopped by killing its process, and a crash in
Marabou's C++ core costs one `unknown` instead of the caller's process.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import wait

import numpy as np


@dataclass
class Piece:
    """One conjunctive query: is there x in [lo, hi] with A_in x <= b_in and A y <= b for y = f(x)?"""

    lo: np.ndarray
    hi: np.ndarray
    A: np.ndarray  # output rows
    b: np.ndarray
    A_in: np.ndarray | None = None
    b_in: np.ndarray | None = None


def _quiet():
    """Marabou's C++ core prints to the process's stdout; a worker sends it to /dev/null."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)


def _marabou():
    import warnings

    with warnings.catch_warnings():  # Marabou warns about its optional TensorFlow reader
        warnings.simplefilter("ignore")
        from maraboupy import Marabou
    return Marabou


def _solve(Marabou, net, xs: list[int], timeout_s: float, **kw) -> tuple[str, np.ndarray | None]:
    # Marabou's limit is whole seconds, and 0 means none
    opts = Marabou.createOptions(timeoutInSeconds=max(1, math.ceil(timeout_s)), verbosity=0)
    code, vals, _ = net.solve(options=opts, verbose=False, **kw)
    if code == "sat":
        return "sat", np.array([vals[v] for v in xs])
    return ("unsat", None) if code == "unsat" else ("unknown", None)


def solve_piece(onnx_path: str, piece: Piece, timeout_s: float) -> tuple[str, np.ndarray | None]:
    """("sat", x) | ("unsat", None) | ("unknown", None): Marabou on one piece, in this process."""
    Marabou = _marabou()
    net = Marabou.read_onnx(onnx_path)
    xs = [int(v) for v in np.asarray(net.inputVars[0]).flatten()]
    ys = [int(v) for v in np.asarray(net.outputVars[0]).flatten()]
    for i, v in enumerate(xs):
        net.setLowerBound(v, float(piece.lo[i]))
        net.setUpperBound(v, float(piece.hi[i]))
    rows = [(xs, piece.A_in, piece.b_in), (ys, piece.A, piece.b)]
    for variables, A, b in rows:
        for row, bound in zip(A if A is not None else [], b if b is not None else [], strict=True):
            nz = [i for i, a in enumerate(row) if a != 0]
            if nz:
                net.addInequality([variables[i] for i in nz], [float(row[i]) for i in nz], float(bound))
            elif bound < 0:  # 0 <= bound is false: the piece is empty
                return "unsat", None
    return _solve(Marabou, net, xs, timeout_s)


def solve_vnnlib(onnx_path: str, vnnlib_path: str, timeout_s: float) -> tuple[str, np.ndarray | None]:
    """Plain Marabou, as a user runs it: its own ONNX and VNN-LIB readers on the original files."""
    Marabou = _marabou()
    net = Marabou.read_onnx(onnx_path)
    xs = [int(v) for v in np.asarray(net.inputVars[0]).flatten()]
    return _solve(Marabou, net, xs, timeout_s, propertyFilename=vnnlib_path)


def _child(conn, fn, args):
    _quiet()
    try:
        conn.send(fn(*args))
    except Exception as e:  # Marabou's readers raise anything from AssertionError to RuntimeError
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def run_pieces(fn, jobs: list[tuple], workers: int, deadline: float, on_result=None) -> list:
    """`fn(*job)` for each job in up to `workers` child processes at a time, until `deadline`
    (time.monotonic()). Returns one (code, payload) per job: code "sat" / "unsat" / "unknown" /
    "error" (payload: the message) / "timeout" (killed at the deadline) / "cancelled" (not needed
    after a stop, or never started). `on_result(i, result) -> (stop, more_jobs)` sees each result
    as it arrives: `stop` ends the run (the others are killed), `more_jobs` are queued (and get
    results of their own, after the given ones). Without it the run stops at the first "sat"."""
    ctx = mp.get_context("fork")
    jobs = list(jobs)
    results: list = [("cancelled", None)] * len(jobs)
    if on_result is None:
        on_result = lambda i, r: (r[0] == "sat", [])  # noqa: E731
    running: dict = {}  # reader connection -> (job index, process)
    queue = list(range(len(jobs)))
    stop = False
    try:
        while (queue and not stop) or running:
            while queue and not stop and len(running) < max(1, workers):
                i = queue.pop(0)
                reader, writer = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_child, args=(writer, fn, jobs[i]), daemon=True)
                p.start()
                writer.close()
                running[reader] = (i, p)
            left = deadline - time.monotonic()
            if left <= 0:
                for _reader, (i, _p) in running.items():
                    results[i] = ("timeout", None)
                break
            for reader in wait(list(running), timeout=left):
                i, p = running.pop(reader)
                try:
                    results[i] = reader.recv()
                except EOFError:  # the child died without an answer (a crash in the C++ core)
                    results[i] = ("error", f"worker exited with code {p.exitcode}")
                reader.close()
                p.join()
                stop_now, more = on_result(i, results[i])
                for job in more:
                    jobs.append(job)
                    results.append(("cancelled", None))
                    queue.append(len(jobs) - 1)
                stop = stop or stop_now
            if stop:
                break
    finally:
        for reader, (_i, p) in running.items():
            p.kill()
            p.join()
            reader.close()
    return results

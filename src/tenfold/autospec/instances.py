"""Whole benchmarks in the verification competitions' format: an `onnx,vnnlib,timeout` CSV (paths
relative to the CSV's folder, optionally gzipped), each instance decided by tenfold's engine
(`bab.solve`) or by plain Marabou, a results CSV written as it goes, and a summary.

Plain Marabou is run as a user runs it: its own ONNX reader and VNN-LIB reader on the original files
(`Marabou.read_onnx`, `solve(propertyFilename=...)`), in a child process killed at the time limit.
Its `sat` points are re-checked in onnxruntime like tenfold's, and reported either way.
"""

from __future__ import annotations

import csv
import gzip
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tenfold.core.errors import TenfoldError

ENGINES = ("tenfold", "marabou")
RESULT_FIELDS = ["onnx", "vnnlib", "timeout", "result", "reason", "method", "seconds", "rechecked"]


@dataclass
class Row:
    onnx: Path
    vnnlib: Path
    timeout: float


def read_instances(path: str | Path) -> list[Row]:
    """The rows of an instances CSV; a bad row is a TenfoldError naming its line."""
    path = Path(path)
    if not path.exists():
        raise TenfoldError(f"instances file {path} does not exist")
    rows = []
    with open(path, newline="") as f:
        for line, rec in enumerate(csv.reader(f), 1):
            if not rec or not "".join(rec).strip() or rec[0].lstrip().startswith("#"):
                continue
            if len(rec) != 3:
                raise TenfoldError(f"{path} line {line}: expected onnx,vnnlib,timeout; got {len(rec)} fields")
            try:
                timeout = float(rec[2])
            except ValueError:
                raise TenfoldError(f"{path} line {line}: timeout {rec[2]!r} is not a number") from None
            if timeout <= 0:
                raise TenfoldError(f"{path} line {line}: timeout must be positive, got {timeout}")
            onnx, vnnlib = (path.parent / rec[0].strip(), path.parent / rec[1].strip())
            for p in (onnx, vnnlib):
                if not p.exists():
                    raise TenfoldError(f"{path} line {line}: {p} does not exist")
            rows.append(Row(onnx, vnnlib, timeout))
    if not rows:
        raise TenfoldError(f"{path} lists no instances")
    return rows


def _plain(path: Path, tmp: Path) -> Path:
    """A gzipped file unpacked into `tmp` (Marabou and onnxruntime read plain files only)."""
    if path.suffix != ".gz":
        return path
    out = tmp / path.name[: -len(".gz")]
    if not out.exists():
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return out


def run_one(onnx: Path, vnnlib: Path, timeout: float, engine: str = "tenfold", cfg=None, cache=None):
    """One instance by `engine`: a `bab.Result` (status holds / violated / unknown). Gzipped files are
    unpacked to a temporary folder first."""
    with tempfile.TemporaryDirectory() as tmp:
        return _run_one(
            _plain(Path(onnx), Path(tmp)), _plain(Path(vnnlib), Path(tmp)), timeout, engine, cfg, cache
        )


def _run_one(onnx: Path, vnnlib: Path, timeout: float, engine: str, cfg, cache):
    from tenfold.autospec.bab import Instance, Result, SolveConfig, recheck, solve
    from tenfold.autospec.relunet import from_onnx
    from tenfold.autospec.vnnlib import read_vnnlib

    if engine not in ENGINES:
        raise TenfoldError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "tenfold":
        cache = {} if cache is None else cache
        t0 = time.monotonic()  # the time includes reading the files (compiling a network once per file)
        if str(onnx) not in cache:
            cache[str(onnx)] = from_onnx(onnx)
        inst = Instance(onnx, vnnlib, cache[str(onnx)])
        base = cfg or SolveConfig()
        res = solve(inst, SolveConfig(**{**base.__dict__, "timeout_s": timeout}))
        res.seconds = time.monotonic() - t0
        return res
    # plain Marabou reads the files itself; the property is read here only to re-check its answer
    from tenfold.autospec.marabou_pool import run_pieces, solve_vnnlib

    prop = read_vnnlib(vnnlib)
    t0 = time.monotonic()
    ((code, x),) = run_pieces(solve_vnnlib, [(str(onnx), str(vnnlib), timeout)], 1, t0 + timeout + 2)
    seconds = time.monotonic() - t0
    if code == "unsat":
        return Result("holds", "", "marabou", seconds)
    if code == "sat":
        ok, y = recheck(onnx, prop, x)
        reason = "" if ok else "Marabou's counterexample does not reproduce in onnxruntime"
        cex, out = [float(v) for v in x], [float(v) for v in y]
        return Result("violated", reason, "marabou", seconds, cex, out, stats={"rechecked": ok})
    reason = {"timeout": "timeout", "unknown": "timeout"}.get(code, f"marabou error: {x}")
    return Result("unknown", reason, "marabou", seconds)


def run_instances(
    rows: list[Row],
    engine: str = "tenfold",
    cfg=None,
    out_csv: str | Path | None = None,
    quiet: bool = False,
    timeout_override: float | None = None,
) -> list[dict]:
    """Every row by `engine`, the results CSV rewritten after each instance (nothing lost on a crash)."""
    from tenfold.core.progress import progress_bar

    results: list[dict] = []
    cache: dict = {}
    with progress_bar(engine, len(rows), quiet) as bar:
        for row in rows:
            timeout = timeout_override or row.timeout
            try:
                res = run_one(row.onnx, row.vnnlib, timeout, engine, cfg, cache)
                rec = {
                    "result": res.status,
                    "reason": res.reason,
                    "method": res.method,
                    "seconds": res.seconds,
                    "rechecked": res.status == "violated" and res.stats.get("rechecked", True),
                    "counterexample": res.counterexample,
                    "stats": res.stats,
                }
            except TenfoldError as e:  # a file this engine cannot read: unknown, with the reason
                rec = {
                    "result": "unknown",
                    "reason": f"error: {e}",
                    "method": "",
                    "seconds": 0.0,
                    "rechecked": False,
                    "counterexample": None,
                    "stats": {},
                }
            results.append({"onnx": str(row.onnx), "vnnlib": str(row.vnnlib), "timeout": timeout, **rec})
            if out_csv:
                write_results(results, out_csv)
            bar.advance(1, last=rec["result"])
    return results


def write_results(results: list[dict], path: str | Path) -> None:
    import io

    from tenfold.core.io import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, RESULT_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in results:
        w.writerow({**r, "seconds": f"{r['seconds']:.3f}"})
    atomic_write_text(Path(path), buf.getvalue())


def summary(results: list[dict]) -> dict:
    statuses = [r["result"] for r in results]
    return {
        "instances": len(results),
        "holds": statuses.count("holds"),
        "violated": statuses.count("violated"),
        "unknown": statuses.count("unknown"),
        "seconds": float(sum(r["seconds"] for r in results)),
        "by_method": {
            m: sum(r["method"] == m for r in results) for m in sorted({r["method"] for r in results})
        },
    }


def compare(ours: list[dict], theirs: list[dict]) -> dict:
    """Agreement of two runs over the same instances: where both decide, do they give the same answer?"""
    both = [(a["result"], b["result"]) for a, b in zip(ours, theirs, strict=True)]
    decided_pairs = [
        (a, b) for a, b in zip(ours, theirs, strict=True) if "unknown" not in (a["result"], b["result"])
    ]
    decided = [(a, b) for a, b in both if a != "unknown" and b != "unknown"]
    return {
        "both_decided": len(decided),
        "disagree": sum(a != b for a, b in decided),
        "only_ours": sum(a != "unknown" and b == "unknown" for a, b in both),
        "only_theirs": sum(a == "unknown" and b != "unknown" for a, b in both),
        "time_ratio": _ratio(theirs, ours),
        # the same ratio over the instances both decide: what the time limits do not inflate
        "time_ratio_both_decided": (
            _ratio([b for _, b in decided_pairs], [a for a, _ in decided_pairs])
            if decided_pairs
            else float("nan")
        ),
    }


def _ratio(theirs, ours) -> float:
    return float(sum(r["seconds"] for r in theirs) / max(1e-9, sum(r["seconds"] for r in ours)))

"""The reproduce framework: a registry of per-system reproductions, their JSON rows, plots and REPORT.md.

A system registers a function in its `tenfold.<system>.reproduce` module:

    @register("cake", "bidirectional KV loading")
    def reproduce(ctx: Context) -> list[Row]: ...

`run_reproductions` writes `OUT/<system>.json` ({system, mode, seconds, rows, plots, error}) and then
`OUT/REPORT.md` with every row in one table. A row's `pass` is computed from its value and target. A
reproduction that raises is reported as crashed (and makes the command exit non-zero); a failing row
is reported, not hidden.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tenfold import systems
from tenfold.core.errors import TenfoldError, one_line
from tenfold.core.io import atomic_write_text

MODES = ("quick", "full")


@dataclass
class Row:
    claim: str
    paper: str  # what the paper (or the issue) states
    metric: str
    value: float
    target: float
    higher_is_better: bool = True
    detail: str = ""

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "paper": self.paper,
            "metric": self.metric,
            "value": self.value,
            "target": self.target,
            "higher_is_better": self.higher_is_better,
            "pass": self.passed,
            "detail": self.detail,
        }


@dataclass
class Context:
    """What a reproduction gets: the mode, where to put plots, and whether to be quiet."""

    system: str
    mode: str
    out_dir: Path
    quiet: bool = False
    plots: list[str] = field(default_factory=list)

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    def plot_path(self, name: str) -> Path:
        """A path for a plot (PNG) that the report will link to."""
        path = self.out_dir / f"{self.system}_{name}.png"
        self.plots.append(path.name)
        return path


@dataclass
class Reproduction:
    system: str
    description: str
    fn: Callable[[Context], list[Row]]
    artefacts: tuple[str, ...] = ()  # the registered trained artefacts it loads (core.artefacts)


REGISTRY: dict[str, Reproduction] = {}


def register(system: str, description: str = "", artefacts: tuple[str, ...] = ()):
    def deco(fn: Callable[[Context], list[Row]]):
        REGISTRY[system] = Reproduction(system, description, fn, tuple(artefacts))
        return fn

    return deco


def discover() -> dict[str, Reproduction]:
    """Import the `reproduce` module of every built system in `tenfold.systems` (found by name: core
    imports no system code), in the list's order."""
    for _, module in systems.built("reproduce"):
        importlib.import_module(module)
    return dict(sorted(REGISTRY.items(), key=lambda kv: systems.order(kv[0])))  # unlisted ones last


def run_reproductions(
    systems: list[str] | None,
    mode: str = "quick",
    out_dir: str | Path = "reports",
    quiet: bool = False,
    echo=print,
) -> int:
    """Run the reproductions of `systems` (all registered when empty); returns the number that crashed."""
    if mode not in MODES:
        raise TenfoldError(f"mode must be one of {MODES}, got {mode!r}")
    registry = discover()
    names = list(systems) if systems else list(registry)
    unknown = [s for s in names if s not in registry]
    if unknown:
        raise TenfoldError(f"no reproduction registered for {unknown}; registered: {sorted(registry)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if mode == "quick":  # the full runs may train other recipes than the shipped ones
        from tenfold.core.artefacts import training_plan

        training_plan([a for n in names for a in registry[n].artefacts], echo)
    crashed, start = 0, time.perf_counter()
    for i, name in enumerate(names, 1):
        ctx = Context(name, mode, out, quiet)
        echo(
            f"[reproduce {i}/{len(names)}] {name} ({mode}) ... [{_clock(time.perf_counter() - start)} elapsed]"
        )
        t0 = time.perf_counter()
        rows, error = [], None
        try:
            rows = registry[name].fn(ctx)
        except TenfoldError as exc:  # a user-facing problem (say, a read-only cache): one line, no traceback
            error = one_line(exc)
            crashed += 1
            echo(f"[reproduce] {name} FAILED: {error}")
        except Exception:  # noqa: BLE001 - a crash is reported in the JSON and the exit status
            error = traceback.format_exc()
            crashed += 1
            echo(f"[reproduce] {name} CRASHED:\n{error}")
        result = {
            "system": name,
            "mode": mode,
            "seconds": round(time.perf_counter() - t0, 2),
            "rows": [r.to_dict() for r in rows],
            "plots": ctx.plots,
            "error": error,
        }
        atomic_write_text(out / f"{name}.json", json.dumps(result, indent=2))
        for r in rows:
            echo(
                f"  {'PASS' if r.passed else 'FAIL'}  {r.claim}: {r.metric} = {r.value:.4g} (target {'>=' if r.higher_is_better else '<='} {r.target:g})"
            )
        echo(f"[reproduce] {name} done in {_clock(time.perf_counter() - t0)}")
    write_report(out)
    echo(f"[reproduce] report: {out / 'REPORT.md'} ({_clock(time.perf_counter() - start)} in all)")
    return crashed


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def write_report(out_dir: str | Path) -> Path:
    """Gather every `<system>.json` under `out_dir` into REPORT.md."""
    import torch  # for the machine line only; the rest of this module stays light

    out = Path(out_dir)
    results = []
    for p in sorted(out.glob("*.json")):
        try:
            data = json.loads(p.read_text())
        except ValueError:
            continue
        if isinstance(data, dict) and "system" in data and "rows" in data:
            results.append(data)
    results.sort(key=lambda d: systems.order(d["system"]))
    n_rows = sum(len(d["rows"]) for d in results)
    n_pass = sum(r["pass"] for d in results for r in d["rows"])
    lines = [
        "# tenfold reproduction report",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} on {platform.node() or 'unknown host'} "
        f"({platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only'}, {os.cpu_count()} CPU cores).",
        "",
        f"**{n_pass} of {n_rows} rows pass.** Values are measured in this run; `pass` compares value with target.",
        "",
        "| system | mode | claim | paper | metric | value | target | pass | detail |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in results:
        for r in d["rows"]:
            op = ">=" if r["higher_is_better"] else "<="
            mark = "yes" if r["pass"] else "**NO**"
            lines.append(
                f"| {d['system']} | {d['mode']} | {r['claim']} | {r['paper']} | `{r['metric']}` | {r['value']:.4g} | {op} {r['target']:g} | {mark} | {r['detail']} |"
            )
        if d.get("error"):
            lines.append(f"| {d['system']} | {d['mode']} | **crashed** | | | | | **NO** | see below |")
    lines.append("")
    for d in results:
        lines += [f"## {d['system']}", "", f"{d['mode']} mode, {d['seconds']:.1f} s."]
        for plot in d.get("plots", []):
            lines += ["", f"![{plot}]({plot})"]
        if d.get("error"):
            lines += ["", "Crashed:", "", "```", d["error"].rstrip(), "```"]
        lines.append("")
    path = out / "REPORT.md"
    atomic_write_text(path, "\n".join(lines))
    return path

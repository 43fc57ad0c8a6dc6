"""The SGD comparison: autoregressive vs Skeleton-of-Thought vs SGD (with and without routing) on the
same generated chains questions, one question at a time (latency as a user sees it).

Per arm: end-to-end seconds, exact match per part and per question, by dependency depth; for SGD the
share of point tokens on the small model and the ideal speed-up bound of the brief,
(total tokens + skeleton tokens) / (tokens decoded one after another: skeleton + critical-path tokens,
or less where points start while the skeleton is written).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tenfold.core.backends import Backend
from tenfold.core.benchkit import save_figure
from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar
from tenfold.envs.chains import NAMES, ChainConfig, generate, score
from tenfold.sgd.api import SGDConfig, answer
from tenfold.sgd.judge import judge_score

ESCALATE_BELOW = -0.5  # the cascade arm's threshold (token logprob), chosen on held-out questions (docs)
# the servers the bench starts send streamed text (the plan) at most every 5 ms, not every token: on a
# one-core server each hand-over takes time from decoding (measured in docs/sgd.md)
STREAM_INTERVAL_MS = 5
ONE_LINE = ("\n",)  # a chains part is answered in one line: a point ends at its first newline
ARMS = {  # arm name -> answer() config
    "ar": SGDConfig(mode="ar"),
    "sot": SGDConfig(mode="sot", stream=False, point_stop=ONE_LINE),  # as published: plan, then points
    "sgd": SGDConfig(mode="sgd", point_stop=ONE_LINE),
    "sgd-plan-first": SGDConfig(mode="sgd", stream=False, point_stop=ONE_LINE),  # the paper's order
    "sgd-large-only": SGDConfig(mode="sgd", route=False, point_stop=ONE_LINE),
    "sgd-escalate": SGDConfig(mode="sgd", escalate_below=ESCALATE_BELOW, point_stop=ONE_LINE),
}


@dataclass
class BenchConfig:
    """The full benchmark's settings; `quick()` is the quick reproduction's."""

    questions: int = 48
    min_parts: int = 7  # many parts, shallow dependencies: the structured answers SGD is for
    max_parts: int = 8  # the most the tiny models are trained on (and the chains task has)
    max_depth: int = 1
    seed: int = 50_000  # questions start here (training draws from its own generator)
    arms: list[str] = field(default_factory=lambda: list(ARMS))

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            questions=24
        )  # 180 parts: one part is 0.006 of exact match (16 questions gave 0.008 steps)

    def validate(self) -> BenchConfig:
        if self.questions < 1:
            raise TenfoldError(f"questions must be >= 1, got {self.questions}")
        if not 1 <= self.min_parts <= self.max_parts <= len(NAMES):
            raise TenfoldError(
                f"parts per question must satisfy 1 <= min_parts <= max_parts <= {len(NAMES)}, "
                f"got {self.min_parts}..{self.max_parts}"
            )
        if self.max_depth < 0:
            raise TenfoldError(f"max_depth must be >= 0, got {self.max_depth}")
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise TenfoldError(f"unknown arms {sorted(unknown)}; arms are {list(ARMS)}")
        return self


def questions(cfg: BenchConfig):
    cfg.validate()
    span = cfg.max_parts - cfg.min_parts + 1
    return [
        generate(ChainConfig(cfg.min_parts + i % span, cfg.max_depth, seed=cfg.seed + i))
        for i in range(cfg.questions)
    ]


async def run_arms(
    cfg: BenchConfig,
    large: Backend,
    small: Backend | None,
    on_question: Callable[[], None] | None = None,
    judge: Backend | None = None,
) -> list[dict]:
    """One row per (question, arm); the arms of a question run back to back. With a `judge`, each
    answer also gets an LLM-judge score against the expert answer (after its arm's timing)."""
    rows = []
    for qi, q in enumerate(questions(cfg)):
        for arm in cfg.arms:
            a = await answer(q.text, large, small, ARMS[arm])
            s = score(q, a.text)
            t = a.trace
            graded = await judge_score(judge, q.text, q.answer(), a.text) if judge is not None else None
            rows.append(
                {
                    "question": qi,
                    "arm": arm,
                    "mode_used": a.mode,
                    "seconds": a.seconds,
                    "parts": len(q.parts),
                    "depth": q.depth(),
                    "parts_right": sum(s.values()),
                    "right_by_depth": _right_by_depth(q, s),
                    "all_right": all(s.values()),
                    "tokens": t.get("tokens_total", 0),
                    "tokens_small": t.get("tokens_small", 0),
                    "escalated": t.get("escalated", 0),
                    "critical_tokens": t.get("critical_tokens", 0),
                    "skeleton_tokens": t.get("skeleton_tokens", 0),
                    "serial_tokens": t.get("serial_tokens", 0),
                    "started_early": t.get("started_early", 0),
                    "redone": t.get("redone", 0),
                    "warnings": a.warnings,
                }
            )
            if judge is not None:
                rows[-1]["judge"] = graded
        if on_question:
            on_question()
    return rows


def _right_by_depth(q, s: dict[str, bool]) -> dict[int, list[int]]:
    """{part depth: [right, total]} (depth 0: no dependency)."""
    depth: dict[str, int] = {}
    out: dict[int, list[int]] = {}
    for p in q.parts:
        depth[p.name] = 1 + max((depth[d] for d in p.deps), default=-1)
        cell = out.setdefault(depth[p.name], [0, 0])
        cell[0] += s[p.name]
        cell[1] += 1
    return out


def summarize(rows: list[dict]) -> dict:
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    out: dict = {"arms": {}}
    for arm in arms:
        rs = [r for r in rows if r["arm"] == arm]
        by_depth: dict[int, list[int]] = {}
        for r in rs:
            for d, (right, total) in r["right_by_depth"].items():
                cell = by_depth.setdefault(int(d), [0, 0])
                cell[0] += right
                cell[1] += total
        tokens = sum(r["tokens"] for r in rs)
        graded = [r["judge"] for r in rs if r.get("judge") is not None]
        dep_total = sum(c[1] for d, c in by_depth.items() if d > 0)
        out["arms"][arm] = {
            "seconds": sum(r["seconds"] for r in rs),
            "part_em": sum(r["parts_right"] for r in rs) / sum(r["parts"] for r in rs),
            "question_em": statistics.fmean(r["all_right"] for r in rs),
            "part_em_by_depth": {d: right / total for d, (right, total) in sorted(by_depth.items())},
            "dependent_part_em": (  # parts that need an earlier part's result (depth > 0)
                sum(c[0] for d, c in by_depth.items() if d > 0) / dep_total if dep_total else float("nan")
            ),
            "small_token_share": sum(r["tokens_small"] for r in rs) / tokens if tokens else 0.0,
            "escalated": sum(r.get("escalated", 0) for r in rs),
            "fallbacks": sum(r["mode_used"] != arm.split("-")[0] for r in rs),
            "ideal_speedup": statistics.fmean(
                (r["tokens"] + r["skeleton_tokens"]) / r["serial_tokens"] for r in rs if r["serial_tokens"]
            )
            if any(r["serial_tokens"] for r in rs)
            else 1.0,
            "started_early": sum(r.get("started_early", 0) for r in rs),
            "redone": sum(r.get("redone", 0) for r in rs),
        }
        if any("judge" in r for r in rs):  # judged run: mean over the scores the judge gave
            out["arms"][arm]["judge_score"] = statistics.fmean(graded) if graded else float("nan")
            out["arms"][arm]["judge_missing"] = sum(r.get("judge") is None for r in rs)
    a = out["arms"]
    if "ar" in a:
        ar_tokens = sum(r["tokens"] for r in rows if r["arm"] == "ar")
        for arm in arms:
            a[arm]["speedup_vs_ar"] = a["ar"]["seconds"] / a[arm]["seconds"]
            # the token bound against the autoregressive answers actually written: ar tokens over the
            # tokens this arm decodes one after another (skeleton, then its critical path; overlapped
            # where points start while the plan is written)
            serial = sum(r["serial_tokens"] for r in rows if r["arm"] == arm)
            a[arm]["token_bound_vs_ar"] = ar_tokens / serial if arm != "ar" and serial else 1.0
    return out


def run_bench(
    cfg: BenchConfig, large: str, small: str | None, quiet: bool = False, judge: str | None = None
) -> dict:
    """Every arm on the same questions against `large` / `small` (checkpoint dirs or presets get a
    pinned `tenfold serve` each, one core; URLs are used as they are), optionally graded by an LLM judge
    at the URL `judge`. Returns {"setup", "rows", "summary"}."""
    import asyncio
    import contextlib

    from tenfold.core.backends import OpenAIBackend
    from tenfold.core.server import ServerProcess

    if judge is not None and not judge.startswith(("http://", "https://")):
        raise TenfoldError(f"--judge must be an OpenAI-compatible URL (http://host:port/v1), got {judge!r}")

    def url(spec: str, cpu: int, stack: contextlib.ExitStack) -> str:
        if spec.startswith(("http://", "https://")):
            return spec
        args = ("--stream-interval-ms", str(STREAM_INTERVAL_MS))
        return stack.enter_context(ServerProcess(spec, *args, cpu=cpu)).base_url

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        large_url = url(large, 0, stack)
        small_url = url(small, 1, stack) if small else None

        async def main():
            lg = OpenAIBackend(large_url, timeout=600)
            sm = OpenAIBackend(small_url, timeout=600) if small_url else None
            jd = OpenAIBackend(judge, timeout=600) if judge else None
            try:
                with progress_bar("sgd bench", total=cfg.questions, quiet=quiet) as bar:
                    return await run_arms(cfg, lg, sm, on_question=lambda: bar.advance(1), judge=jd)
            finally:
                for b in (lg, sm, jd):
                    if b is not None:
                        await b.aclose()

        rows = asyncio.run(main())
    setup = {
        **asdict(cfg),
        "large": large,
        "small": small,
        "judge": judge,
        "seconds": time.perf_counter() - t0,
    }
    return {"setup": setup, "rows": rows, "summary": summarize(rows)}


def markdown_table(summary: dict) -> str:
    arms = summary["arms"]
    depths = sorted({d for a in arms.values() for d in a["part_em_by_depth"]})
    judged = any("judge_score" in a for a in arms.values())
    out = [
        "| arm | seconds | speed-up vs ar | part EM | question EM | "
        + " | ".join(f"EM depth {d}" for d in depths)
        + " | small-model tokens | ideal speed-up | token bound vs ar | fallbacks |"
        + (" judge score |" if judged else ""),
        "|---" * (9 + len(depths) + judged) + "|",
    ]
    for name, a in arms.items():
        em = " | ".join(f"{a['part_em_by_depth'].get(d, float('nan')):.2f}" for d in depths)
        out.append(
            f"| {name} | {a['seconds']:.2f} | {a.get('speedup_vs_ar', float('nan')):.2f}x | {a['part_em']:.2f} "
            f"| {a['question_em']:.2f} | {em} | {a['small_token_share']:.0%} | {a['ideal_speedup']:.2f}x "
            f"| {a.get('token_bound_vs_ar', float('nan')):.2f}x | {a['fallbacks']} |"
            + (f" {a.get('judge_score', float('nan')):.2f} |" if judged else "")
        )
    return "\n".join(out)


def plot(summary: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = summary["arms"]
    names = list(arms)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].bar(names, [arms[n].get("speedup_vs_ar", float("nan")) for n in names], color="C0")
    ax[0].axhline(1.0, color="k", lw=0.8)
    ax[0].set_ylabel("speed-up vs autoregressive")
    ax[0].tick_params(axis="x", labelrotation=20)
    for i, n in enumerate(names):
        by = arms[n]["part_em_by_depth"]
        ax[1].plot(list(by), list(by.values()), "o-", label=n, color=f"C{i}")
    ax[1].set_xticks(sorted({int(d) for n in names for d in arms[n]["part_em_by_depth"]}))
    ax[1].set_xlabel("dependency depth of the part")
    ax[1].set_ylabel("exact match")
    ax[1].set_ylim(0, 1.05)
    ax[1].legend()
    fig.suptitle("SGD vs autoregressive vs SoT on chains questions")
    return save_figure(fig, path)

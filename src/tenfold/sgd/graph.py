"""Decode a skeleton graph: every point starts as soon as its parents are done, with their answers.

Skeleton Graph Decoding (Jin et al., 2024) expands the ready points of the dependency graph together
(one batch on a local engine, concurrent requests on an API), forwards each finished point's text into
the prompts of the points that depend on it, and sends easy points to a small model. The paper expands
in waves (all ready points, then the next ready set); here a point is dispatched the moment its last
parent finishes (`eager=True`, the default), which never starts a point later than the wave schedule
does. `eager=False` gives the waves. With `forward=False` and no dependencies this is Skeleton-of-Thought.

Escalation (`escalate_below`, off by default; not in the paper): a cascade on top of the difficulty
router. A point the small model answered with some token less likely than exp(escalate_below) is answered
again by the large model, whose answer is kept. The small model's slips are mostly unsure tokens, so this
buys back quality at the price of a second, serial decode for the points it catches.

The trace records, per point, the model, start and end times and tokens, from which `critical_tokens`
(the most tokens on one dependency chain) and the ideal speed-up bound follow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenfold.core.backends import Backend
from tenfold.sgd.skeleton import Point, Skeleton


@dataclass
class PointResult:
    id: int
    model: str  # "large", "small", or "small>large" (escalated: tokens count both decodes)
    text: str
    tokens: int
    start: float  # seconds since decoding began
    end: float
    wave: int  # dependency depth (0: no parents)
    small_tokens: int = 0  # of `tokens`, those the small model decoded


@dataclass
class GraphResult:
    points: list[PointResult]  # in skeleton order
    seconds: float
    trace: dict = field(default_factory=dict)


PromptFn = Callable[[str, Skeleton, Point, dict[int, str]], list[dict]]


def critical_tokens(skeleton: Skeleton, tokens: dict[int, int]) -> int:
    """The most generated tokens along one dependency chain (what bounds the latency)."""
    memo: dict[int, int] = {}
    pts = skeleton.by_id()

    def best(i: int) -> int:
        if i not in memo:
            memo[i] = tokens[i] + max((best(j) for j in pts[i].deps), default=0)
        return memo[i]

    return max((best(p.id) for p in skeleton.points), default=0)


async def decode_graph(
    question: str,
    skeleton: Skeleton,
    prompt: PromptFn,
    large: Backend,
    small: Backend | None = None,
    *,
    max_tokens: int = 64,
    forward: bool = True,
    eager: bool = True,
    escalate_below: float | None = None,
) -> GraphResult:
    """Expand every point of `skeleton`; `prompt(question, skeleton, point, parent_texts)` builds the chat
    messages of one point. Easy points go to `small` when given. Returns texts in skeleton order + trace."""
    pts = skeleton.by_id()
    depth: dict[int, int] = {}

    def wave_of(i: int) -> int:
        if i not in depth:
            depth[i] = 1 + max((wave_of(j) for j in pts[i].deps), default=-1)
        return depth[i]

    for p in skeleton.points:
        wave_of(p.id)
    t0 = time.perf_counter()
    done: dict[int, PointResult] = {}
    tasks: dict[int, asyncio.Task] = {}

    async def expand(p: Point) -> PointResult:
        parents = {d: done[d].text for d in p.deps} if forward else {}
        use_small = small is not None and p.difficulty == "easy"
        start = time.perf_counter() - t0
        messages = prompt(question, skeleton, p, parents)
        check = use_small and escalate_below is not None
        c = await (small if use_small else large).chat(
            messages, max_tokens=max_tokens, temperature=0.0, logprobs=check
        )
        model, tokens, small_tokens = ("small" if use_small else "large"), c.completion_tokens, 0
        if check and min(c.logprobs or [0.0]) < escalate_below:
            small_tokens = c.completion_tokens
            c = await large.chat(messages, max_tokens=max_tokens, temperature=0.0)
            model, tokens = "small>large", small_tokens + c.completion_tokens
        elif use_small:
            small_tokens = tokens
        end = time.perf_counter() - t0
        r = PointResult(p.id, model, c.text.strip(), tokens, start, end, depth[p.id], small_tokens)
        done[p.id] = r
        return r

    if eager:

        async def run(p: Point) -> PointResult:
            for d in p.deps:
                await tasks[d]
            return await expand(p)

        for p in sorted(skeleton.points, key=lambda q: depth[q.id]):  # parents' tasks exist first
            tasks[p.id] = asyncio.create_task(run(p))
        await asyncio.gather(*tasks.values())
    else:
        for w in range(max(depth.values(), default=-1) + 1):
            await asyncio.gather(*(expand(p) for p in skeleton.points if depth[p.id] == w))

    seconds = time.perf_counter() - t0
    tokens = {i: r.tokens for i, r in done.items()}
    total = sum(tokens.values())
    crit = critical_tokens(skeleton, tokens)
    trace = {
        "points": len(skeleton.points),
        "waves": max(depth.values(), default=-1) + 1,
        "max_parallel": max(
            (sum(1 for d in depth.values() if d == w) for w in set(depth.values())), default=0
        ),
        "tokens_total": total,
        "tokens_small": sum(r.small_tokens for r in done.values()),
        "escalated": sum(r.model == "small>large" for r in done.values()),
        "critical_tokens": crit,
        "ideal_speedup": total / crit if crit else 1.0,
        "warnings": list(skeleton.warnings),
    }
    return GraphResult([done[p.id] for p in skeleton.points], seconds, trace)

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


def critical_tokens(skeleton: Skeleton, tokens: dict[int, int], ready: dict[int, int] | None = None) -> int:
    """The most generated tokens along one dependency chain (what bounds the latency). With `ready`
    (tokens of the plan written before a point could start), the chain starts there: the tokens decoded
    one after another when points start while the plan is being written."""
    memo: dict[int, int] = {}
    pts = skeleton.by_id()
    ready = ready or {}

    def best(i: int) -> int:
        if i not in memo:
            memo[i] = tokens[i] + max([ready.get(i, 0)] + [best(j) for j in pts[i].deps])
        return memo[i]

    return max((best(p.id) for p in skeleton.points), default=0)


def depths(skeleton: Skeleton) -> dict[int, int]:
    """Dependency depth of every point (0: no parents)."""
    pts = skeleton.by_id()
    depth: dict[int, int] = {}

    def wave_of(i: int) -> int:
        if i not in depth:
            depth[i] = 1 + max((wave_of(j) for j in pts[i].deps), default=-1)
        return depth[i]

    for p in skeleton.points:
        wave_of(p.id)
    return depth


class GraphDecoder:
    """Expands points as they are handed over (`start`), each once its parents are done; `finish(skeleton)`
    checks the started points against the final skeleton, starts the rest and collects the results.

    `start` may be called while the plan is still being written (the points a `PlanReader` releases);
    a started point whose definition, shown plan or parents differ in the final skeleton is cancelled
    and decoded again, so the result never depends on what was started early."""

    def __init__(
        self,
        question: str,
        prompt: PromptFn,
        large: Backend,
        small: Backend | None = None,
        *,
        max_tokens: int = 64,
        forward: bool = True,
        escalate_below: float | None = None,
        stop: tuple[str, ...] = (),
    ):
        self.question, self.prompt, self.large, self.small = question, prompt, large, small
        self.max_tokens, self.forward = max_tokens, forward
        self.escalate_below, self.stop = escalate_below, stop
        self.t0 = time.perf_counter()
        self.tasks: dict[int, asyncio.Task] = {}
        self.started: dict[int, tuple[Point, str]] = {}  # id -> (point, shown plan) it started with
        self.redone = 0
        self.kept: set[int] = set()  # points started before finish() and kept by it

    def start(self, p: Point, shown: Skeleton) -> None:
        """Decode `p` (showing it the plan `shown`) once its parents, which must have started, are done."""
        parents = {d: self.tasks[d] for d in p.deps}
        self.tasks[p.id] = asyncio.create_task(self._run(p, shown, parents))
        self.started[p.id] = (p, shown.format())

    async def _run(self, p: Point, shown: Skeleton, parents: dict[int, asyncio.Task]) -> PointResult:
        texts = {d: (await t).text for d, t in parents.items()}
        return await self.expand(p, shown, texts if self.forward else {})

    async def expand(self, p: Point, shown: Skeleton, parents: dict[int, str]) -> PointResult:
        use_small = self.small is not None and p.difficulty == "easy"
        start = time.perf_counter() - self.t0
        messages = self.prompt(self.question, shown, p, parents)
        check = use_small and self.escalate_below is not None
        kw = {"max_tokens": self.max_tokens, "temperature": 0.0, "stop": self.stop or None}
        c = await (self.small if use_small else self.large).chat(messages, logprobs=check, **kw)
        model, tokens, small_tokens = ("small" if use_small else "large"), c.completion_tokens, 0
        if check and min(c.logprobs or [0.0]) < self.escalate_below:
            small_tokens = c.completion_tokens
            c = await self.large.chat(messages, **kw)
            model, tokens = "small>large", small_tokens + c.completion_tokens
        elif use_small:
            small_tokens = tokens
        end = time.perf_counter() - self.t0
        return PointResult(p.id, model, c.text.strip(), tokens, start, end, 0, small_tokens)

    def cancel(self) -> None:
        for t in self.tasks.values():
            t.cancel()

    async def finish(
        self, skeleton: Skeleton, shown: Callable[[Point], Skeleton] | None = None
    ) -> GraphResult:
        """Decode `skeleton` (points already started and unchanged are kept); `shown(point)` is the plan
        a point is shown (default: the whole skeleton)."""
        shown = shown or (lambda p: skeleton)
        depth = depths(skeleton)
        kept: dict[int, bool] = {}
        ids = {p.id for p in skeleton.points}
        for i in set(self.tasks) - ids:  # started, but not in the final plan
            self.tasks.pop(i).cancel()
        for p in sorted(skeleton.points, key=lambda q: depth[q.id]):  # parents first
            plan = shown(p)
            kept[p.id] = self.started.get(p.id) == (p, plan.format()) and all(kept[d] for d in p.deps)
            if not kept[p.id]:
                if p.id in self.tasks:
                    self.tasks[p.id].cancel()
                    self.redone += 1
                self.start(p, plan)
        self.kept = {i for i, k in kept.items() if k}
        try:
            results = await asyncio.gather(*(self.tasks[p.id] for p in skeleton.points))
        except BaseException:  # a failed point (or a cancelled caller): stop the others too
            self.cancel()
            raise
        for r in results:
            r.wave = depth[r.id]
        return self._result(skeleton, list(results), depth)

    def _result(self, skeleton: Skeleton, results: list[PointResult], depth: dict) -> GraphResult:
        seconds = time.perf_counter() - self.t0
        tokens = {r.id: r.tokens for r in results}
        total = sum(tokens.values())
        crit = critical_tokens(skeleton, tokens)
        trace = {
            "points": len(skeleton.points),
            "waves": max(depth.values(), default=-1) + 1,
            "max_parallel": max(
                (sum(1 for d in depth.values() if d == w) for w in set(depth.values())), default=0
            ),
            "tokens_total": total,
            "tokens_small": sum(r.small_tokens for r in results),
            "escalated": sum(r.model == "small>large" for r in results),
            "critical_tokens": crit,
            "ideal_speedup": total / crit if crit else 1.0,
            "redone": self.redone,
            "warnings": list(skeleton.warnings),
        }
        return GraphResult(results, seconds, trace)


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
    stop: tuple[str, ...] = (),
) -> GraphResult:
    """Expand every point of `skeleton`; `prompt(question, skeleton, point, parent_texts)` builds the chat
    messages of one point. Easy points go to `small` when given. Returns texts in skeleton order + trace."""
    g = GraphDecoder(
        question,
        prompt,
        large,
        small,
        max_tokens=max_tokens,
        forward=forward,
        escalate_below=escalate_below,
        stop=stop,
    )
    if eager:
        return await g.finish(skeleton)
    depth = depths(skeleton)
    done: dict[int, PointResult] = {}
    for w in range(max(depth.values(), default=-1) + 1):
        wave = [p for p in skeleton.points if depth[p.id] == w]
        texts = [{d: done[d].text for d in p.deps} if forward else {} for p in wave]
        for r in await asyncio.gather(*map(g.expand, wave, [skeleton] * len(wave), texts)):
            r.wave = w
            done[r.id] = r
    return g._result(skeleton, [done[p.id] for p in skeleton.points], depth)

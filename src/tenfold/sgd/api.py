"""Answer a question three ways through one code path: autoregressive, Skeleton-of-Thought, SGD.

- `ar`: one pass of the large model over the whole answer.
- `sot`: a skeleton, then every point at once on the large model, each seeing only the question and
  the skeleton (dependencies ignored, nothing forwarded): Skeleton-of-Thought (Ning et al., 2024).
- `sgd`: a skeleton with dependencies and difficulty; points decoded as a graph, parents' answers
  forwarded, easy points on the small model when one is given (Jin et al., 2024).

A skeleton that cannot be parsed falls back to `ar`, with a warning in the result.

Streaming (`SGDConfig(stream=True)`, the default for `sgd`; beyond the paper): the plan is read while it
is being written, and a point starts as soon as its line is complete and its parents are done, instead
of after the whole plan. A point that starts early is shown the plan through its own line, the others
all of it; which points start early depends only on the plan's text, never on timing. With
`early_small=False` points for the small model wait for the whole plan. A point that a later line changes (a
repeat merged into it) is decoded again. With a backend that cannot stream, points start after the plan,
as without the option.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import partial

from tenfold.core.backends import Backend, stream_chat
from tenfold.core.errors import TenfoldError
from tenfold.sgd.graph import GraphDecoder, critical_tokens
from tenfold.sgd.prompts import FORWARDS, direct_messages, point_messages, skeleton_messages
from tenfold.sgd.skeleton import PlanReader, Skeleton, parse_skeleton

MODES = ("ar", "sot", "sgd")


@dataclass
class SGDConfig:
    mode: str = "sgd"
    route: bool = True  # sgd: easy points to the small model (when one is given)
    eager: bool = True  # start a point when its own parents finish (False: the paper's waves)
    stream: bool = True  # start points while the plan is being written (needs eager; module docstring)
    # with stream: points routed to the small model start early too. They then see the plan only through
    # their own line, which costs the tiny small model trained here quality on deeper questions; False
    # holds them (and the points that need them) back until the whole plan, which they then see. On this
    # machine that also gives back the time streaming saves (docs/sgd.md)
    early_small: bool = True
    skeleton_tokens: int = 160
    point_tokens: int = 192
    answer_tokens: int = 1024  # ar (a worked answer to 8 parts is at most ~900 tokens)
    forward: str = "result"  # what a parent forwards: "result" (`A = 82`) or "text" (the paper's)
    # sgd with routing: a small-model point with a token logprob below this is answered again by the
    # large model (a cascade; None: off, as in the paper). See `tenfold.sgd.graph`.
    escalate_below: float | None = None
    # strings that end a point's answer, e.g. ("\n",) where a point is answered in one line (the chains
    # task's format); () lets the model decide, as for the paragraphs a real LLM expands a point into
    point_stop: tuple[str, ...] = ()

    def validate(self) -> SGDConfig:
        if self.mode not in MODES:
            raise TenfoldError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.forward not in FORWARDS:
            raise TenfoldError(f"forward must be one of {FORWARDS}, got {self.forward!r}")
        if min(self.skeleton_tokens, self.point_tokens, self.answer_tokens) < 1:
            raise TenfoldError("token budgets must be >= 1")
        if self.stream and not self.eager:
            raise TenfoldError("stream=True starts points as the plan is written and needs eager=True")
        if self.escalate_below is not None and not self.escalate_below < 0:
            raise TenfoldError(f"escalate_below is a log-probability, so < 0; got {self.escalate_below}")
        return self


@dataclass
class Answer:
    text: str
    mode: str  # the mode that produced the text (ar after a fallback)
    seconds: float
    skeleton: Skeleton | None = None
    trace: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


async def answer(
    question: str, large: Backend, small: Backend | None = None, cfg: SGDConfig | None = None
) -> Answer:
    cfg = (cfg or SGDConfig()).validate()
    t0 = time.perf_counter()
    plan_kw = {"max_tokens": cfg.skeleton_tokens, "temperature": 0.0}
    if cfg.mode == "ar":
        c = await large.chat(direct_messages(question), max_tokens=cfg.answer_tokens, temperature=0.0)
        return Answer(
            c.text.strip(), "ar", time.perf_counter() - t0, trace={"tokens_total": c.completion_tokens}
        )
    sot = cfg.mode == "sot"  # SoT's skeleton has no dependencies, nothing is forwarded, no routing
    graph = GraphDecoder(
        question,
        partial(point_messages, forward=cfg.forward),
        large,
        small if (cfg.mode == "sgd" and cfg.route) else None,
        max_tokens=cfg.point_tokens,
        forward=not sot,
        escalate_below=cfg.escalate_below,
        stop=tuple(cfg.point_stop),
    )

    def as_planned(sk: Skeleton) -> Skeleton:
        return Skeleton([replace(p, deps=[]) for p in sk.points], sk.warnings) if sot else sk

    streaming = cfg.stream and hasattr(large, "chat_stream")  # else points start after the plan
    routed = cfg.mode == "sgd" and cfg.route and small is not None
    reader = PlanReader(None if cfg.early_small or not routed else (lambda p: p.difficulty != "easy"))

    def on_delta(delta: str) -> None:  # points whose line is complete start now
        for p in reader.feed(delta):
            shown = as_planned(reader.shown(p))
            graph.start(shown.points[-1], shown)

    try:
        plan = await (
            stream_chat(large, skeleton_messages(question), on_delta, **plan_kw)
            if streaming
            else large.chat(skeleton_messages(question), **plan_kw)
        )
    except BaseException:  # the plan failed: points already started must not run on
        graph.cancel()
        raise
    skeleton = parse_skeleton(plan.text)
    if skeleton is None:
        graph.cancel()
        fallback = await answer(question, large, small, replace(cfg, mode="ar"))
        fallback.seconds = time.perf_counter() - t0
        fallback.warnings.append(
            f"{cfg.mode}: no usable skeleton in {plan.text[:80]!r}; answered autoregressively"
        )
        return fallback
    skeleton = as_planned(skeleton)

    def shown(p):  # the plan a point sees: through its own line if it started early, else all of it
        return skeleton.through(p.id) if p.id in reader.started else skeleton

    res = await graph.finish(skeleton, shown if streaming else None)
    # tokens of the plan written before each point could start: its line's end when it started early
    # and was kept (estimated from characters), else the whole plan
    early = graph.kept
    chars = max(len(plan.text), 1)
    ready = {
        p.id: min(plan.completion_tokens, round(plan.completion_tokens * reader.ends[p.id] / chars))
        if p.id in early
        else plan.completion_tokens
        for p in skeleton.points
    }
    tokens = {r.id: r.tokens for r in res.points}
    trace = {
        **res.trace,
        "skeleton_tokens": plan.completion_tokens,
        "started_early": len(early),
        # tokens decoded one after another: the plan, overlapped with the points' chains when streaming
        "serial_tokens": max(plan.completion_tokens, critical_tokens(skeleton, tokens, ready)),
    }
    text = "\n".join(r.text for r in res.points)
    return Answer(text, cfg.mode, time.perf_counter() - t0, skeleton, trace, list(skeleton.warnings))


def bench(
    cfg, large: str | None = None, small: str | None = None, quiet: bool = False, judge: str | None = None
) -> dict:
    """Every arm (ar, SoT, SGD with and without routing, plan first, escalation) on the same generated
    questions (`cfg`: a `sgd.bench.BenchConfig`), in a fresh one-thread process. `large` / `small`:
    checkpoint dirs, presets or URLs; default the tiny models trained here. `judge`: an LLM judge's URL."""
    from tenfold.core.benchkit import isolated

    if large is None and small is not None:
        raise TenfoldError("a small model needs a large one (--small needs --large)")
    return isolated(_bench, cfg.validate(), large, small, quiet, judge)


def _bench(cfg, large: str | None, small: str | None, quiet: bool, judge: str | None) -> dict:
    from tenfold.sgd.bench import run_bench

    if large is None:
        from tenfold.sgd.train import prepare_models

        large, small = prepare_models(quiet)
    return run_bench(cfg, large, small, quiet, judge=judge)

"""Answer a question three ways through one code path: autoregressive, Skeleton-of-Thought, SGD.

- `ar`: one pass of the large model over the whole answer.
- `sot`: a skeleton, then every point at once on the large model, each seeing only the question and
  the skeleton (dependencies ignored, nothing forwarded): Skeleton-of-Thought (Ning et al., 2024).
- `sgd`: a skeleton with dependencies and difficulty; points decoded as a graph, parents' answers
  forwarded, easy points on the small model when one is given (Jin et al., 2024).

A skeleton that cannot be parsed falls back to `ar`, with a warning in the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import partial

from tenfold.core.backends import Backend
from tenfold.core.errors import TenfoldError
from tenfold.sgd.graph import decode_graph
from tenfold.sgd.prompts import FORWARDS, direct_messages, point_messages, skeleton_messages
from tenfold.sgd.skeleton import Skeleton, parse_skeleton

MODES = ("ar", "sot", "sgd")


@dataclass
class SGDConfig:
    mode: str = "sgd"
    route: bool = True  # sgd: easy points to the small model (when one is given)
    eager: bool = True  # start a point when its own parents finish (False: the paper's waves)
    skeleton_tokens: int = 160
    point_tokens: int = 192
    answer_tokens: int = 1024  # ar (a worked answer to 8 parts is at most ~900 tokens)
    forward: str = "result"  # what a parent forwards: "result" (`A = 82`) or "text" (the paper's)
    # sgd with routing: a small-model point with a token logprob below this is answered again by the
    # large model (a cascade; None: off, as in the paper). See `tenfold.sgd.graph`.
    escalate_below: float | None = None

    def validate(self) -> SGDConfig:
        if self.mode not in MODES:
            raise TenfoldError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.forward not in FORWARDS:
            raise TenfoldError(f"forward must be one of {FORWARDS}, got {self.forward!r}")
        if min(self.skeleton_tokens, self.point_tokens, self.answer_tokens) < 1:
            raise TenfoldError("token budgets must be >= 1")
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
    if cfg.mode == "ar":
        c = await large.chat(direct_messages(question), max_tokens=cfg.answer_tokens, temperature=0.0)
        return Answer(
            c.text.strip(), "ar", time.perf_counter() - t0, trace={"tokens_total": c.completion_tokens}
        )
    plan = await large.chat(skeleton_messages(question), max_tokens=cfg.skeleton_tokens, temperature=0.0)
    skeleton = parse_skeleton(plan.text)
    if skeleton is None:
        fallback = await answer(question, large, small, replace(cfg, mode="ar"))
        fallback.seconds = time.perf_counter() - t0
        fallback.warnings.append(
            f"{cfg.mode}: no usable skeleton in {plan.text[:80]!r}; answered autoregressively"
        )
        return fallback
    if cfg.mode == "sot":  # SoT's skeleton has no dependencies and no routing
        skeleton = Skeleton([replace(p, deps=[]) for p in skeleton.points], skeleton.warnings)
    res = await decode_graph(
        question,
        skeleton,
        partial(point_messages, forward=cfg.forward),
        large,
        small if (cfg.mode == "sgd" and cfg.route) else None,
        max_tokens=cfg.point_tokens,
        forward=cfg.mode == "sgd",
        eager=cfg.eager,
        escalate_below=cfg.escalate_below,
    )
    trace = {**res.trace, "skeleton_tokens": plan.completion_tokens}
    text = "\n".join(r.text for r in res.points)
    return Answer(text, cfg.mode, time.perf_counter() - t0, skeleton, trace, list(skeleton.warnings))

"""The three prompts of SGD (skeleton, one point, the whole answer) and their expert targets.

Compact on purpose: the tiny models trained here read them, and every prompt token is prefill time.
Point prompts put what all points share first (question, then plan) and the point's own parts last,
so a prefix cache reuses the shared part (the ordering the paper's later version, Plato, uses for KV
reuse).

What a parent forwards into its children's prompts is a choice (`forward`):
- "result" (default): the parent's name and final value, e.g. `A = 82`. The tiny models trained here
  need it: finding the last value of a worked line inside a long prompt is a lookup they do not learn
  in the training a 2-core machine affords (docs/sgd.md). A deviation from the paper, which forwards
  the parent's whole expansion.
- "text": the parent's whole answer text, as the paper does (for capable models behind a URL).
"""

from __future__ import annotations

from tenfold.core.errors import TenfoldError
from tenfold.envs.chains import ChainQuestion
from tenfold.sgd.skeleton import Point, Skeleton

SKELETON_SYSTEM = "Plan: id.part|needs|easy or hard"
POINT_SYSTEM = "Answer the part."
DIRECT_SYSTEM = "Answer all parts."
FORWARDS = ("result", "text")


def skeleton_messages(question: str) -> list[dict]:
    return [{"role": "system", "content": SKELETON_SYSTEM}, {"role": "user", "content": question}]


def result_of(text: str) -> str:
    """`NAME = value` from a worked answer line `NAME = ... = value` (the first line of `text`); text
    without ' = ' is returned as it is (stripped to its first line)."""
    line = text.strip().split("\n", 1)[0].strip()
    if " = " not in line:
        return line
    name, _, rest = line.partition(" = ")
    return f"{name} = {rest.rsplit(' = ', 1)[-1]}"


def point_messages(
    question: str, skeleton: Skeleton, point: Point, parents: dict[int, str], forward: str = "result"
) -> list[dict]:
    if forward not in FORWARDS:
        raise TenfoldError(f"forward must be one of {FORWARDS}, got {forward!r}")
    shown = {i: result_of(t) if forward == "result" else t for i, t in parents.items()}
    known = "; ".join(shown[i] for i in sorted(shown)) or "none"
    body = f"{question}\nPlan:\n{skeleton.format()}\nKnown: {known}\nPart {point.id}: {point.title}"
    return [{"role": "system", "content": POINT_SYSTEM}, {"role": "user", "content": body}]


def direct_messages(question: str) -> list[dict]:
    return [{"role": "system", "content": DIRECT_SYSTEM}, {"role": "user", "content": question}]


def expert_skeleton(q: ChainQuestion) -> str:
    """The plan an expert writes for a chains question, in the canonical compact form
    (`Skeleton.format`): one point per part, in order, titled by the part's name (the question states
    it; the plan stays short, as the paper's skeletons are), e.g. `3.C|1,2|hard`."""
    ids = {p.name: i + 1 for i, p in enumerate(q.parts)}
    points = [Point(ids[p.name], p.name, [ids[d] for d in p.deps], p.difficulty) for p in q.parts]
    return Skeleton(points).format()

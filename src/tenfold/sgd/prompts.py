"""The three prompts of SGD (skeleton, one point, the whole answer) and their expert targets.

Compact on purpose: the tiny models trained here read them. Point prompts put what all points share
first (question, then plan) and the point's own parts last, so a prefix cache reuses the shared part
(the ordering the paper's later version, Plato, uses for KV reuse)."""

from __future__ import annotations

from tenfold.envs.chains import ChainQuestion
from tenfold.sgd.skeleton import Point, Skeleton

SKELETON_SYSTEM = (
    "Plan the answer: one numbered line per part, 'title | ids it needs or none | easy or hard'."
)
POINT_SYSTEM = "Answer one part of the plan in one line with its work, using the known results."
DIRECT_SYSTEM = "Answer every part, one line each, with its work."


def skeleton_messages(question: str) -> list[dict]:
    return [{"role": "system", "content": SKELETON_SYSTEM}, {"role": "user", "content": question}]


def point_messages(question: str, skeleton: Skeleton, point: Point, parents: dict[int, str]) -> list[dict]:
    known = "; ".join(parents[i] for i in sorted(parents)) or "nothing yet"
    body = f"{question}\nPlan:\n{skeleton.format()}\nKnown: {known}\nPart {point.id}: {point.title}"
    return [{"role": "system", "content": POINT_SYSTEM}, {"role": "user", "content": body}]


def direct_messages(question: str) -> list[dict]:
    return [{"role": "system", "content": DIRECT_SYSTEM}, {"role": "user", "content": question}]


def expert_skeleton(q: ChainQuestion) -> str:
    """The plan an expert writes for a chains question: one point per part, in order, titled by the
    part's name (the question states it; the plan stays short, as the paper's skeletons are)."""
    ids = {p.name: i + 1 for i, p in enumerate(q.parts)}
    return "\n".join(
        f"{ids[p.name]}. {p.name} | {','.join(str(ids[d]) for d in p.deps) or 'none'} | {p.difficulty}"
        for p in q.parts
    )

"""An LLM-judge score for answers, for questions where exact match is not enough (real LLMs, free text).

The paper rates answers with a judge model (GPT-4 in the SoT/SGD line of work). Here any
OpenAI-compatible server can judge: it sees the question, a reference answer and the candidate, and
replies with a score from 0 to 10 ("score: 7"). `judge_score` returns it scaled to [0, 1], or None when
the judge's reply holds no score (counted and reported by the bench, never guessed).
"""

from __future__ import annotations

import re

from tenfold.core.backends import Backend

JUDGE_SYSTEM = (
    "You grade answers. Compare the candidate answer with the reference answer, part by part: a part "
    "counts only if its final value matches. Reply with one line 'score: N', N from 0 (nothing right) "
    "to 10 (everything right)."
)
_SCORE = re.compile(r"score\s*[:=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def judge_messages(question: str, reference: str, candidate: str) -> list[dict]:
    body = f"Question:\n{question}\n\nReference answer:\n{reference}\n\nCandidate answer:\n{candidate}"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": body}]


def parse_score(reply: str) -> float | None:
    """The judge's 0-10 score scaled to [0, 1]; None if the reply has none or it is out of range."""
    m = _SCORE.search(reply or "")
    if not m:
        return None
    value = float(m.group(1))
    return value / 10 if 0 <= value <= 10 else None


async def judge_score(judge: Backend, question: str, reference: str, candidate: str) -> float | None:
    reply = await judge.chat(judge_messages(question, reference, candidate), max_tokens=16, temperature=0.0)
    return parse_score(reply.text)

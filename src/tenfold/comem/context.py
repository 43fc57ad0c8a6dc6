"""What the agent model and the memory model see: message lists built from a conversation.

A conversation is `head + body`. The head is the leading system message(s) and the first user message
(the task); the body is everything after it, a sequence of turns, each starting at a user message
(an observation) and followed by the assistant's reply. A summary *covers* the first `cut` turns.

- Agent view at step t (CoMem paper: system prompt + problem + latest summary + raw turns after that
  summary's cut-off): the head, with the summary appended to the task message, then the raw turns
  from `cut` on. With no summary it is the whole conversation (the `full` policy).
- Memory view: a system prompt that asks for the facts still needed and forbids suggesting actions,
  then one user message with the task and a transcript of the covered turns (the paper), or, in the
  incremental form, the previous summary and the transcript of the turns since it.
"""

from __future__ import annotations

from collections.abc import Sequence

from tenfold.core.errors import TenfoldError

MEMORY_SYSTEM = (
    "You are the memory of an agent. Read the transcript and write the facts the agent will still "
    "need, briefly. State facts only; never suggest actions."
)
SUMMARY_PREFIX = "\nMemory: "


def split_head(messages: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """(head, body): head = leading system messages + the first user message."""
    i = 0
    while i < len(messages) and messages[i].get("role") == "system":
        i += 1
    if i >= len(messages) or messages[i].get("role") != "user":
        raise TenfoldError("a conversation needs a user message (the task) after its system messages")
    return [dict(m) for m in messages[: i + 1]], [dict(m) for m in messages[i + 1 :]]


def turn_starts(body: Sequence[dict]) -> list[int]:
    """Indices in `body` where a turn starts: a user or tool message that follows a non-user message
    (or opens the body)."""
    starts, prev = [], None
    for j, m in enumerate(body):
        role = m.get("role")
        if role in ("user", "tool") and prev not in ("user", "tool"):
            starts.append(j)
        prev = role
    return starts


def body_after(body: Sequence[dict], cut: int) -> list[dict]:
    """The raw messages of turns [cut, ...)."""
    starts = turn_starts(body)
    if cut <= 0:
        return list(body)
    if cut >= len(starts):
        return []
    return list(body[starts[cut] :])


def body_before(body: Sequence[dict], cut: int) -> list[dict]:
    """The raw messages of turns [0, cut)."""
    starts = turn_starts(body)
    if cut >= len(starts):
        return list(body)
    return list(body[: starts[cut]]) if cut > 0 else []


def agent_view(messages: Sequence[dict], summary: str | None = None, cut: int = 0) -> list[dict]:
    """The messages the agent model sees: the head (+ summary of turns < cut) and the raw turns >= cut."""
    head, body = split_head(messages)
    if summary is None or cut <= 0:
        return head + body
    head[-1]["content"] = f"{_text(head[-1])}{SUMMARY_PREFIX}{summary}"
    return head + body_after(body, cut)


def transcript(body: Sequence[dict]) -> str:
    """The covered turns as plain text, one line per message; the agent's lines start with '> '."""
    return "\n".join(_text(m) if m["role"] in ("user", "tool") else f"> {_text(m)}" for m in body)


def memory_view(
    messages: Sequence[dict], cut: int, previous: str | None = None, since: int = 0
) -> list[dict]:
    """The memory model's input for a summary covering turns [0, cut).

    `previous=None` (the paper): the transcript of every turn before `cut`. Incremental: the previous
    summary (covering turns [0, since)) and the transcript of turns [since, cut) only."""
    head, body = split_head(messages)
    task = _text(head[-1])
    covered = body_before(body, cut)
    if previous is not None:
        covered = body_after(covered, since) if since > 0 else covered
        task = f"{task}\nMemory so far: {previous}"
    return [
        {"role": "system", "content": MEMORY_SYSTEM},
        {"role": "user", "content": f"Task: {task}\n{transcript(covered)}"},
    ]


def _text(m: dict) -> str:
    c = m.get("content") or ""
    if isinstance(c, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return str(c)

import pytest

from tenfold.comem.context import (
    MEMORY_SYSTEM,
    agent_view,
    body_after,
    body_before,
    memory_view,
    split_head,
    turn_starts,
)
from tenfold.core.errors import TenfoldError


def conv(turns):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "TASK"}]
    for i in range(turns):
        msgs += [{"role": "user", "content": f"obs{i}"}, {"role": "assistant", "content": f"act{i}"}]
    return msgs


def test_split_and_turns():
    head, body = split_head(conv(3))
    assert [m["content"] for m in head] == ["S", "TASK"]
    assert turn_starts(body) == [0, 2, 4]
    assert [m["content"] for m in body_before(body, 2)] == ["obs0", "act0", "obs1", "act1"]
    assert [m["content"] for m in body_after(body, 2)] == ["obs2", "act2"]
    assert body_before(body, 0) == [] and body_after(body, 0) == body and body_after(body, 9) == []
    # tool results and multi-message observations belong to the same turn
    body = [
        {"role": "user", "content": "a"},
        {"role": "tool", "content": "b"},
        {"role": "assistant", "content": "c"},
    ]
    assert turn_starts(body) == [0]


def test_agent_view_puts_the_summary_in_the_task_and_keeps_later_turns_verbatim():
    msgs = conv(5) + [{"role": "user", "content": "obs5"}]
    assert agent_view(msgs) == msgs  # no summary: full history
    view = agent_view(msgs, "facts", 3)
    assert [m["content"] for m in view] == [
        "S",
        "TASK\nMemory: facts",
        "obs3",
        "act3",
        "obs4",
        "act4",
        "obs5",
    ]
    assert msgs[1]["content"] == "TASK"  # the caller's list is not modified


def test_memory_view_covers_only_turns_before_the_cut():
    msgs = conv(5)
    view = memory_view(msgs, 2)
    assert view[0] == {"role": "system", "content": MEMORY_SYSTEM}
    assert "never suggest actions" in MEMORY_SYSTEM
    text = view[1]["content"]
    assert "obs1" in text and "act1" in text and "obs2" not in text and text.startswith("Task: TASK")


def test_a_conversation_without_a_task_is_rejected():
    with pytest.raises(TenfoldError, match="user message"):
        split_head([{"role": "system", "content": "S"}])


def test_incremental_memory_view_has_the_previous_summary_and_only_newer_turns():
    msgs = conv(9)
    view = memory_view(msgs, 8, previous="old facts", since=4)
    text = view[1]["content"]
    assert "Memory so far: old facts" in text
    assert "obs4" in text and "act7" in text and "obs3" not in text and "obs8" not in text
    first = memory_view(msgs, 4, previous="nothing to keep.", since=0)[1]["content"]
    assert "obs0" in first and "obs3" in first and "obs4" not in first

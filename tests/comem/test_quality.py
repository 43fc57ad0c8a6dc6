"""The quality benchmark's arms on a scripted agent that reads the facts in its prompt: what each
memory keeps decides success, and the rows carry the counts their intervals come from."""

import asyncio

import pytest

from tenfold.comem.quality import (
    ListingMemory,
    NullMemory,
    QualityConfig,
    markdown_table,
    play_arm,
    pooled,
)
from tenfold.core.errors import TenfoldError
from tests.comem.fakes import ForgetfulMemory, ReadingAgent

CFG = QualityConfig(steps=[40], episodes=6)


def arm(name, memory):
    return asyncio.run(play_arm(ReadingAgent(), memory, name, 40, CFG))


def test_full_context_and_the_listing_oracle_win_every_episode():
    for name, memory in (("full", None), ("oracle", ListingMemory()), ("sync", ListingMemory())):
        row, wins = arm(name, memory)
        assert wins == [True] * 6 and row["successes"] == 6
        assert row["ci_low"] > 0.5 and row["ci_high"] == 1.0
    row, _ = arm("oracle", ListingMemory())
    assert row["fact_recall"] == 1.0 and row["facts"] > 0  # every adopted summary states what is needed


def test_no_memory_loses_the_facts_revealed_long_before_they_are_needed():
    row, wins = arm("none", NullMemory())
    # facts come in the first third and are needed in the last: R + k = 8 raw turns never reach back
    assert not any(wins) and row["score"] < 0.6
    assert row["fact_recall"] == 0.0


def test_a_forgetful_memory_model_scores_like_no_memory():
    forgetful, _ = arm("sft", ForgetfulMemory())
    none, _ = arm("none", NullMemory())
    assert forgetful["successes"] == none["successes"] == 0


def test_pooled_success_and_the_table():
    rows = [arm("full", None)[0], arm("none", NullMemory())[0]]
    result = {"rows": rows, "paired": [], "probes": {}}
    assert pooled(result, "full")["success"] == 1.0
    assert pooled(result, "none")["success"] == 0.0
    table = markdown_table(result)
    assert "| 40 | full | 6/6 = 1.00 |" in table and "| 40 | none | 0/6 = 0.00 |" in table


def test_bad_configs_are_refused():
    with pytest.raises(TenfoldError, match="unknown arms"):
        QualityConfig(arms=["full", "magic"]).validate()
    with pytest.raises(TenfoldError):
        QualityConfig(steps=[8]).validate()

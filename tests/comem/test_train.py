"""Training data of the tiny CoMem models: every target is answerable from its own prompt."""

import re

import pytest

from tenfold.comem.train import agent_corpus, expert_messages, memory_corpus, recall_drill, sample_game
from tenfold.core.models import build_preset
from tenfold.envs.vault import VaultConfig, VaultGame, parse_action

from .fakes import ForgetfulMemory, ListingMemory, ReadingAgent


def test_recall_drill_targets_are_in_their_prompts():
    pairs = recall_drill(300, seed=1)
    kinds = {"copy": 0, "lookup": 0, "listing": 0}
    for prompt, answer in pairs:
        if prompt.endswith("|"):
            kinds["copy"] += 1
            assert prompt[:-1] == answer
        elif answer.startswith("think: "):
            kinds["lookup"] += 1
            fact = re.match(r"think: (.+)\. act: (.+)", answer)
            assert fact and f": {fact[1]}." in prompt  # the note or sign with the fact was seen
            assert fact[2] == (
                fact[1].split()[-1] if fact[1].startswith("fork") else "code " + fact[1].split()[-1]
            )
        else:
            kinds["listing"] += 1
            assert prompt.startswith("Memory so far: ")
            if answer != "nothing to keep.":
                for fact in answer.rstrip(".").split("; "):
                    assert fact in prompt
    assert min(kinds.values()) >= 99  # a third of each kind


def test_drill_is_seeded():
    assert recall_drill(30, seed=4) == recall_drill(30, seed=4) != recall_drill(30, seed=5)


def test_expert_episode_succeeds_and_corpora_have_targets():
    import random

    game = sample_game(random.Random(0), 20, 40)
    msgs = expert_messages(game)
    replay = VaultGame(game.cfg)
    for m in msgs[2:]:
        if m["role"] == "assistant":
            assert parse_action(m["content"]) == replay.expert_action()
            replay.step(m["content"])
    assert replay.success
    _, tok = build_preset("tiny")
    for ex in agent_corpus(tok, 4, 20, 30, 4, 0.5, seed=0) + memory_corpus(tok, 4, 20, 30, 4, seed=0):
        assert any(y >= 0 for y in ex.labels)


def test_sample_game_respects_the_length_bounds():
    import random

    rng = random.Random(3)
    for _ in range(50):
        g = sample_game(rng, 9, 20, dense_share=1.0)
        assert 9 <= g.cfg.steps <= 20 and isinstance(g.cfg, VaultConfig)


class _GoAgent:
    """Always walks on: never right at a door or fork."""

    async def chat(self, messages, **kw):
        from tenfold.core.backends import Completion

        return Completion("go", "stop", 1, 1)


def test_skill_probes_score_a_reader_fully_and_a_non_reader_zero():
    import asyncio

    from tenfold.comem.train import agent_skill, memory_skill

    reader = asyncio.run(agent_skill(ReadingAgent(), games=3))
    assert reader == {"critical_right": 1.0, "think_format": 1.0, "probes": 9}  # 2 doors + 1 fork each
    assert asyncio.run(agent_skill(_GoAgent(), games=3))["critical_right"] == 0.0
    kept = asyncio.run(memory_skill(ListingMemory(), episodes=4))
    assert kept["fact_recall"] == 1.0 and kept["facts"] > 0
    assert asyncio.run(memory_skill(ForgetfulMemory(), episodes=4))["fact_recall"] == 0.0


def test_recipes_from_the_base_model():
    from tenfold.comem.train import recipe
    from tenfold.core.errors import TenfoldError

    for role in ("agent", "memory"):
        base, drill = recipe(role, "base"), recipe(role, "drill")
        assert recipe(role) == base  # the default
        assert base.base == "tenfold-base" and base.warm_start is None and drill.warm_start is not None
        # the agent trains half the warm-up recipe's steps from the base, the memory model as many
        assert (
            base.steps == drill.steps // (2 if role == "agent" else 1) and base.ckpt_every == base.steps // 4
        )
        assert recipe(role, "scratch").warm_start is None and recipe(role, "scratch").base is None
    with pytest.raises(TenfoldError, match="init must be one of"):
        recipe("agent", "hub")


def test_cli_trains_the_default_start():
    import inspect

    from tenfold.comem.cli import train
    from tenfold.comem.train import DEFAULT_INIT

    assert DEFAULT_INIT == "base" and inspect.signature(train).parameters["init"].default == DEFAULT_INIT

import random

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.envs.chains import score
from tenfold.sgd.prompts import POINT_SYSTEM, SKELETON_SYSTEM
from tenfold.sgd.skeleton import parse_skeleton
from tenfold.sgd.train import corpus, expert_chats, recall_example, sample_question


def test_expert_chats_are_consistent_with_the_question():
    rng = random.Random(0)
    for _ in range(30):
        q = sample_question(rng)
        chats = expert_chats(q)
        plan = chats["skeleton"][0][-1]["content"]
        assert len(parse_skeleton(plan).points) == len(q.parts)
        assert all(score(q, chats["direct"][0][-1]["content"]).values())
        lines = [c[-1]["content"] for c in chats["point"]]
        assert all(score(q, "\n".join(lines)).values())
        for chat, part in zip(chats["point"], q.parts, strict=True):
            known = chat[-2]["content"].split("Known: ")[1].split("\n")[0]
            values = {p.name: p.value for p in q.parts}
            # each parent's result (name = final value) is forwarded, and only parents'
            assert known == ("; ".join(f"{d} = {values[d]}" for d in part.deps) or "none")
        easy = [c[-1]["content"] for c in chats["easy-point"]]
        assert easy == [
            c[-1]["content"] for c, p in zip(chats["point"], q.parts, strict=True) if p.difficulty == "easy"
        ]


def test_result_of_reads_the_final_value_and_forward_modes_differ():
    from tenfold.sgd.prompts import point_messages, result_of

    assert result_of("C = A + 7 = 76 + 7 = 83\nextra") == "C = 83"
    assert result_of("no equation here") == "no equation here"
    q = sample_question(random.Random(5))
    skel = parse_skeleton(expert_chats(q)["skeleton"][0][-1]["content"])
    point = skel.points[-1]
    parents = {1: q.solution(q.parts[0].name)}
    as_result = point_messages(q.text, skel, point, parents)[-1]["content"]
    as_text = point_messages(q.text, skel, point, parents, forward="text")[-1]["content"]
    assert f"Known: {result_of(parents[1])}" in as_result and f"Known: {parents[1]}" in as_text
    with pytest.raises(TenfoldError, match="forward"):
        point_messages(q.text, skel, point, parents, forward="summary")


def test_questions_span_the_chains_task_and_the_drill_keeps_its_six_parts():
    from tenfold.core.tokenizer import Tokenizer
    from tenfold.sgd.train import DRILL_PARTS

    rng = random.Random(2)
    sizes = {len(sample_question(rng).parts) for _ in range(300)}
    assert sizes == set(range(2, 9))  # up to the 8 parts the benchmark asks
    tok = Tokenizer.byte_level()
    for max_parts in (DRILL_PARTS, 8):
        texts = [tok.decode(recall_example(tok, rng, max_parts).ids) for _ in range(100)]
        most = max(t.split("\n")[0].count(" = ") for t in texts)
        assert most == max_parts  # the question line states one `NAME = ...` per part


def test_corpus_mixes_the_three_jobs_and_is_seeded():
    c = corpus(20, seed=1)
    systems = {chat[0]["content"] for chat in c}
    assert SKELETON_SYSTEM in systems and POINT_SYSTEM in systems and len(systems) == 3
    assert c == corpus(20, seed=1) and c != corpus(20, seed=2)
    easy = corpus(20, seed=1, jobs=("easy-point",))
    assert easy and {chat[0]["content"] for chat in easy} == {POINT_SYSTEM}
    with pytest.raises(TenfoldError, match="unknown jobs"):
        corpus(2, seed=1, jobs=("essay",))


def test_train_model_plumbing(tmp_path):
    """A few steps end to end: the corpus encodes, trains and gives a loadable checkpoint."""
    from tenfold.core.models import load_model
    from tenfold.sgd.train import ModelRecipe, train_model

    r = ModelRecipe("small", preset="micro", questions=8, steps=2, batch_size=2, recall_share=0.5)
    ckpt = train_model(r, tmp_path, quiet=True)
    model, tok = load_model(ckpt)
    assert tok.vocab_size > 256 and model.config.num_hidden_layers == 2
    # the option only enters the cache key when set, so models trained before it stay valid
    assert "recall_share" not in ModelRecipe("large").cache_key() and r.cache_key()["recall_share"] == 0.5


def test_polish_stage_starts_from_the_cached_first_stage(tmp_path, monkeypatch):
    """The polished recipe trains its first stage once (cached under its own key), then the second
    stage from it; a bad polish is refused before anything trains."""
    from dataclasses import replace

    from tenfold.core.models import load_model
    from tenfold.sgd.train import ModelRecipe, PolishRecipe, trained_model

    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path))
    base = ModelRecipe("large", preset="micro", questions=4, steps=2, batch_size=2, max_len=512)
    r = replace(base, polish=PolishRecipe((("skeleton", 0.5),), examples=12, steps=2))
    ckpt = trained_model(r, quiet=True)
    assert ckpt.parent.name == "polish" and load_model(ckpt)[0].config.num_hidden_layers == 2
    first = trained_model(base, quiet=True)  # cached by the polished recipe: no second training
    assert first.parent.name == "train" and (first.parent / "log.jsonl").exists()
    assert len(list(tmp_path.glob("sgd-large-*"))) == 2
    assert "polish" not in base.cache_key() and r.cache_key()["polish"]["examples"] == 12
    with pytest.raises(TenfoldError, match="share"):
        trained_model(replace(r, polish=PolishRecipe((("skeleton", 0.7), ("direct", 0.3)))), quiet=True)
    with pytest.raises(TenfoldError, match="cut_plans"):
        trained_model(replace(r, polish=PolishRecipe(cut_plans=1.5)), quiet=True)
    # cut_plans enters the key only when set: the models trained before it keep their cache entries
    assert "cut_plans" not in r.cache_key()["polish"]
    assert replace(r, polish=PolishRecipe(cut_plans=0.5)).cache_key()["polish"]["cut_plans"] == 0.5


def test_cut_plan_gives_the_prompt_of_a_point_started_while_the_plan_streams():
    from tenfold.envs.chains import ChainConfig, generate
    from tenfold.sgd.prompts import expert_skeleton, point_messages
    from tenfold.sgd.train import cut_plan

    q = generate(ChainConfig(7, 2, seed=3))
    sk = parse_skeleton(expert_skeleton(q))
    chats = expert_chats(q)
    assert len(sk.points) >= 4  # precondition: plans worth cutting
    for chat, p in zip(chats["point"], sk.points, strict=True):
        parents = {d: q.solution(q.parts[d - 1].name) for d in p.deps}
        assert cut_plan(chat)[:2] == point_messages(q.text, sk.through(p.id), p, parents)
        assert cut_plan(chat)[2:] == chat[2:]  # the reply is unchanged
    assert cut_plan(chats["skeleton"][0]) == chats["skeleton"][0]  # other jobs pass through
    with pytest.raises(TenfoldError, match="own plan line"):
        bad = chats["point"][1]
        cut_plan([bad[0], {**bad[1], "content": bad[1]["content"].replace("\n2.", "\n9.")}, bad[2]])


def test_recall_example_trains_every_statement_once_and_only_them():
    from tenfold.core.models import build_preset
    from tenfold.core.train import IGNORE

    micro, tok = build_preset("micro")
    assert sum(p.numel() for p in micro.parameters()) < sum(
        p.numel() for p in build_preset("tiny")[0].parameters()
    )
    rng = random.Random(4)
    for _ in range(20):
        state = rng.getstate()
        ex = recall_example(tok, rng)
        rng2 = random.Random()
        rng2.setstate(state)
        q = sample_question(rng2)
        assert len(ex.ids) == len(ex.labels)
        assert all(y in (IGNORE, i) for i, y in zip(ex.ids, ex.labels, strict=True))
        text = tok.decode(ex.ids)
        question, restated = text.split("\n", 1)
        assert question == q.text
        # each part restated once, in some order; only right-hand sides carry loss
        lines = sorted(x.strip() + "." for x in restated.split(". ") if x.strip())
        assert lines == sorted(p.statement() + "." for p in q.parts)
        trained = tok.decode([i for i, y in zip(ex.ids, ex.labels, strict=True) if y != IGNORE])
        rhs = sorted(p.statement().split(" = ", 1)[1] + "." for p in q.parts)
        assert sorted(x.strip() + "." for x in trained.split(". ") if x.strip()) == rhs


def test_large_recipe_from_the_base_model():
    from tenfold.sgd.train import recipe

    base, drill = recipe("large", "base"), recipe("large", "drill")
    assert recipe("large") == base  # the default
    assert base.base == "tenfold-base" and base.warm_start is None
    assert base.steps == drill.steps // 2 and base.polish.steps == drill.polish.steps // 2
    assert recipe("small", "base") == recipe("small")  # no base of the small model's shape
    with pytest.raises(TenfoldError, match="init must be one of"):
        recipe("large", "hub")


def test_cli_trains_the_default_start():
    import inspect

    from tenfold.sgd.cli import train
    from tenfold.sgd.train import DEFAULT_INIT

    assert DEFAULT_INIT == "base" and inspect.signature(train).parameters["init"].default == DEFAULT_INIT

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

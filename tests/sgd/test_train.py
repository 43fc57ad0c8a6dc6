import random

from tenfold.envs.chains import score
from tenfold.sgd.prompts import POINT_SYSTEM, SKELETON_SYSTEM
from tenfold.sgd.skeleton import parse_skeleton
from tenfold.sgd.train import corpus, expert_chats, sample_question


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
            for d in part.deps:  # each parent's full answer line is forwarded, and only parents'
                assert q.solution(d) in known
            assert known == "nothing yet" or known.count("=") >= len(part.deps)


def test_corpus_mixes_the_three_jobs_and_is_seeded():
    c = corpus(20, seed=1)
    systems = {chat[0]["content"] for chat in c}
    assert SKELETON_SYSTEM in systems and POINT_SYSTEM in systems and len(systems) == 3
    assert c == corpus(20, seed=1) and c != corpus(20, seed=2)


def test_train_model_plumbing(tmp_path):
    """A few steps end to end: the corpus encodes, trains and gives a loadable checkpoint."""
    from tenfold.core.models import load_model
    from tenfold.sgd.train import ModelRecipe, train_model

    ckpt = train_model(ModelRecipe("small", questions=8, steps=2, batch_size=2), tmp_path, quiet=True)
    model, tok = load_model(ckpt)
    assert tok.vocab_size > 256 and sum(p.numel() for p in model.parameters()) > 0


def test_copy_drill_answers_are_in_their_prompts():
    from tenfold.sgd.train import ModelRecipe, copy_drill

    pairs = copy_drill(40, seed=3)
    for prompt, answer in pairs:
        assert answer in prompt  # a pure copy: the string or the part's statement
    assert sum(p.startswith("Repeat: ") for p, _ in pairs) == 20
    assert "copy_share" not in ModelRecipe("large").cache_key()  # older cached models stay valid
    assert ModelRecipe("small", copy_share=0.25).cache_key()["copy_share"] == 0.25


def test_reading_drill_trains_only_copied_spans():
    import random

    from tenfold.core.models import build_preset
    from tenfold.core.train import IGNORE, Tokens
    from tenfold.sgd.train import _copy_part, reading_drill, sample_question

    _, tok = build_preset("tiny")
    drill = reading_drill(tok, 9, seed=4)
    assert sum(isinstance(x, tuple) for x in drill) == 3  # a third are plain copy pairs
    for ex in drill:
        if isinstance(ex, tuple):
            assert ex[0] == ex[1] + "|"
            continue
        assert isinstance(ex, Tokens) and len(ex.ids) == len(ex.labels)
        trained = tok.decode([i for i, y in zip(ex.ids, ex.labels, strict=True) if y != IGNORE])
        assert trained and all(y in (IGNORE, i) for i, y in zip(ex.ids, ex.labels, strict=True))
        # every trained span is the copy part of some line: 'X = statement [= substituted]'
        assert trained[0] in "ABCDEFGH" and " = " in trained
    rng = random.Random(0)
    q = next(q for q in (sample_question(rng) for _ in range(100)) if any(p.deps for p in q.parts))
    dep = next(p for p in q.parts if p.deps)
    span = _copy_part(q, dep.name)  # a dependent part's copy span ends with its parents' values
    assert span.count(" = ") == 2 and not any(d in span.split(" = ")[2] for d in dep.deps)

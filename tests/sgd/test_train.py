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

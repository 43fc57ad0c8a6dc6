"""The warm start's corpus: every example fits the training context whole, and the answers it teaches
pass the task's own checker."""

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.core.models import build_preset
from tenfold.envs.arith import Problem, evaluate, is_correct
from tenfold.heapa.train import WarmStart, warm_corpus


@pytest.mark.parametrize("answers", ["bare", "worked"])
def test_warm_corpus_fits_the_context_and_is_right(answers):
    w = WarmStart.for_answers(answers)
    w.problems = 3000
    _, tok = build_preset(w.preset, seed=0)
    corpus = warm_corpus(w)
    longest = max(len(tok.encode(p + c)) for p, c in corpus)
    assert longest <= w.max_len  # a truncated example would teach a cut-off answer
    answers_seen = 0
    for prompt, completion in corpus:
        if prompt.startswith("Q: "):
            expr = prompt[3:].split("\n")[0]
            p = Problem(0, expr, evaluate(expr))
            assert is_correct(p, completion)
            assert ("=" in completion) == (answers == "worked")
            answers_seen += 1
    assert 0.6 < answers_seen / len(corpus) < 0.9  # the rest teach variant writing (share 0.25)


def test_unknown_answer_format_is_refused():
    with pytest.raises(TenfoldError, match="answers"):
        WarmStart.for_answers("essay")

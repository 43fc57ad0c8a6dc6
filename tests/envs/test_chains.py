import re

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.envs.chains import ChainConfig, generate, score


def evaluate(q):
    """An independent evaluator: read each statement and compute it from the values before it."""
    vals = {}
    for p in q.parts:
        expr = p.statement().split(" = ", 1)[1]
        if expr.startswith("reverse "):
            arg = expr.removeprefix("reverse ").strip('"')
            vals[p.name] = vals.get(arg, arg)[::-1]
        elif expr.startswith("letters in "):
            arg = expr.removeprefix("letters in ").strip('"')
            vals[p.name] = str(len(vals.get(arg, arg)))
        else:
            vals[p.name] = str(sum(int(vals.get(t, t)) for t in expr.split(" + ")))
    return vals


@pytest.mark.parametrize("seed", range(40))
def test_values_depths_and_expert_answers(seed):
    cfg = ChainConfig(parts=1 + seed % 8, max_depth=seed % 3, seed=seed)
    q = generate(cfg)
    assert {p.name: p.value for p in q.parts} == evaluate(q)
    assert q.depth() <= cfg.max_depth
    assert all(score(q, q.answer()).values())
    for p in q.parts:  # dependencies are earlier parts named in the statement
        assert all(d < p.name and d in p.statement() for d in p.deps)
    assert generate(cfg) == q  # seeded


def test_hard_parts_take_more_tokens_and_are_the_multi_step_ones():
    easy, hard = [], []
    for seed in range(50):
        q = generate(ChainConfig(parts=6, seed=seed))
        for p in q.parts:
            (hard if p.difficulty == "hard" else easy).append(len(q.solution(p.name)))
            assert (p.difficulty == "hard") == (p.kind == "chain")
    assert sum(hard) / len(hard) > 2 * sum(easy) / len(easy)


def test_score_reads_final_values_exactly():
    q = generate(ChainConfig(parts=3, seed=1))
    good = q.answer().splitlines()
    wrong = [good[0], good[1].rsplit("=", 1)[0] + "= 99999"]  # part 2 wrong, part 3 missing
    s = score(q, "\n".join(wrong))
    assert s == {"A": True, "B": False, "C": False}
    assert score(q, "junk") == {"A": False, "B": False, "C": False}


def test_bad_config():
    with pytest.raises(TenfoldError, match="parts"):
        generate(ChainConfig(parts=0))


def test_worked_solutions_are_consistent_steps():
    """Every step of a sum's work adds up to the answer; a word's work spells the right letters."""
    for seed in range(60):
        q = generate(ChainConfig(6, 3, seed=seed))
        for p in q.parts:
            steps = q.solution(p.name).split(" = ")[1:]
            assert steps[-1] == p.value
            if p.kind in ("add", "chain"):
                sums = [s for s in steps if re.fullmatch(r"[\d +]+", s)]
                assert sums and all(sum(map(int, s.split(" + "))) == int(p.value) for s in sums)
            elif p.kind == "reverse":
                assert steps[-2].replace("-", "") == p.value
            else:
                assert len(steps[-2].split()) == int(p.value)

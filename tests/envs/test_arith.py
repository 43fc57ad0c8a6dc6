import random
import re

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.envs import arith
from tenfold.envs.arith import (
    LEVELS,
    MAX_ANSWER_TOKENS,
    Problem,
    final_answer,
    is_correct,
    make_problem,
    worked_steps,
)


def _python_value(expr: str) -> int:
    assert re.fullmatch(r"[0-9+\-*() ]+", expr)
    return eval(expr)  # the reference: Python's own arithmetic on a checked string


def _left_to_right_prefixes(expr: str) -> list[int]:
    """Running values after each operator, evaluating left to right (the L1-L6 shapes)."""
    flat = re.findall(r"\d+|[-+*]", expr)
    v, out = int(flat[0]), []
    for op, y in zip(flat[1::2], flat[2::2], strict=True):
        v = _python_value(f"{v}{op}{y}")
        out.append(v)
    return out


def test_levels_answers_match_python():
    rng = random.Random(1)
    for level in LEVELS:
        for _ in range(200):
            p = make_problem(level, rng)
            assert p.answer == _python_value(p.expr) >= 0


def test_worked_steps_by_hand():
    assert worked_steps("37+45-19") == "37+45=77+5=82-19=72-9=63"
    # 10+19: tens then ones; 29*4: 20*4 and 9*4, then their sum; 116-72: tens then ones
    assert worked_steps("(10+19)*4-72") == "10+19=20+9=29*4=80+36=110+6=116-72=46-2=44"
    assert worked_steps("3+5") == "3+5=8"
    assert worked_steps("47*6+25") == "47*6=240+42=280+2=282+25=302+5=307"


@pytest.mark.parametrize("level", LEVELS)
def test_worked_steps_are_value_preserving_and_right(level):
    rng = random.Random(level)
    for _ in range(300):
        p = make_problem(level, rng)
        states = worked_steps(p.expr).split("=")
        values = [_python_value(s) for s in states]
        # consecutive states of one operation keep its value: the distinct runs are the running values
        runs = [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
        assert runs == _left_to_right_prefixes(p.expr)
        assert values[-1] == p.answer and states[-1] == str(p.answer)
        assert is_correct(p, p.worked_solution) and is_correct(p, p.solution)
        assert len(p.worked_solution) <= MAX_ANSWER_TOKENS["worked"]


def test_worked_steps_refuse_expressions_needing_precedence():
    with pytest.raises(TenfoldError, match="precedence"):
        worked_steps("2+3*4")
    with pytest.raises(TenfoldError, match="parenthesised"):
        worked_steps("2*(3+4)")
    with pytest.raises(TenfoldError):
        worked_steps("12")


def test_final_answer_and_checker():
    p = Problem(2, "37+45", 82)
    assert final_answer(" 82") == 82 and is_correct(p, " 82\n")
    assert is_correct(p, "82 is it")
    assert not is_correct(p, " 820") and not is_correct(p, " 81")
    assert is_correct(p, " 37+45=77+5=82\nQ: junk")
    assert final_answer(" 37+45=77+5") is None  # cut off before the value
    assert not is_correct(p, " 37+45=77+5=83")
    assert not is_correct(p, " 37+45=77+5\n82")  # only the first line answers
    assert final_answer("") is None
    with pytest.raises(TenfoldError):
        p.target("essay")


def test_held_out_sets_are_fixed_and_distinct():
    a, b = arith.test_set(3, 50), arith.test_set(3, 50)
    assert [x.expr for x in a] == [x.expr for x in b]
    assert len({x.expr for x in a}) == 50

"""Procedurally generated arithmetic with difficulty levels L1-L6 and an exact checker (a verifiable task).

    L1  a + b              one digit each
    L2  a + b              two digits each (carries)
    L3  a - b              two digits, a >= b (borrows)
    L4  a + b - c          two digits each, result >= 0
    L5  a * b + c          two digits times one digit, plus two digits
    L6  (a + b) * c - d    parentheses; result >= 0

A problem is a short prompt ("Q: 37+45\\nA:") whose answer is an integer; a completion is right when the
first integer it contains equals the answer exactly (so "82", " 82" and "82 is it" are right, "820"
and "81" are not). Problems are determined by (level, seed); held-out test sets come from a seed range
training never uses, and a problem's text identifies it, so train/test overlap can be checked.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tenfold.core.errors import TenfoldError

LEVELS = (1, 2, 3, 4, 5, 6)
TEST_SEED_BASE = 10**9  # test problems use seeds from here on; training samplers stay below


@dataclass(frozen=True)
class Problem:
    level: int
    expr: str  # e.g. "37+45"
    answer: int

    @property
    def prompt(self) -> str:
        return f"Q: {self.expr}\nA:"

    @property
    def solution(self) -> str:
        """The expert completion (SFT target)."""
        return f" {self.answer}\n"


def make_problem(level: int, rng: random.Random) -> Problem:
    """One problem of `level` drawn with `rng`."""
    r = rng.randint
    if level == 1:
        a, b = r(0, 9), r(0, 9)
        expr = f"{a}+{b}"
    elif level == 2:
        a, b = r(10, 99), r(10, 99)
        expr = f"{a}+{b}"
    elif level == 3:
        a, b = r(10, 99), r(10, 99)
        a, b = max(a, b), min(a, b)
        expr = f"{a}-{b}"
    elif level == 4:
        a, b = r(10, 99), r(10, 99)
        c = r(10, min(99, a + b))
        expr = f"{a}+{b}-{c}"
    elif level == 5:
        expr = f"{r(10, 99)}*{r(2, 9)}+{r(10, 99)}"
    elif level == 6:
        a, b, c = r(2, 30), r(2, 30), r(2, 9)
        expr = f"({a}+{b})*{c}-{r(1, min(99, (a + b) * c))}"
    else:
        raise TenfoldError(f"level must be one of {LEVELS}, got {level!r}")
    return Problem(level, expr, evaluate(expr))


_TOKEN = re.compile(r"\s*(\d+|[-+*()])")


def evaluate(expr: str) -> int:
    """Value of an expression of non-negative integers, + - * and parentheses (the usual precedence).
    Written out rather than `eval` so that a malformed or hostile string is a clear error."""
    pos, tokens = 0, []
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise TenfoldError(f"cannot read expression {expr!r} at position {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    i = 0

    def peek() -> str | None:
        return tokens[i] if i < len(tokens) else None

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise TenfoldError(f"expression {expr!r} ends early")
        i += 1
        return tokens[i - 1]

    def atom() -> int:
        t = take()
        if t == "(":
            v = total()
            if take() != ")":
                raise TenfoldError(f"unbalanced parentheses in {expr!r}")
            return v
        if not t.isdigit():
            raise TenfoldError(f"expected a number in {expr!r}, got {t!r}")
        return int(t)

    def product() -> int:
        v = atom()
        while peek() == "*":
            take()
            v *= atom()
        return v

    def total() -> int:
        v = product()
        while peek() in ("+", "-"):
            v = v + product() if take() == "+" else v - product()
        return v

    v = total()
    if i != len(tokens):
        raise TenfoldError(f"unexpected {tokens[i]!r} in {expr!r}")
    return v


_FIRST_INT = re.compile(r"-?\d+")


def is_correct(problem: Problem, completion: str) -> bool:
    """Exact check: the first integer in the completion equals the answer."""
    m = _FIRST_INT.search(completion)
    return m is not None and int(m.group()) == problem.answer


def reward(problem: Problem, completion: str) -> float:
    """The verifiable reward of RLVR: +1 right, -1 wrong (so a group's mean is 2p - 1)."""
    return 1.0 if is_correct(problem, completion) else -1.0


def sample_problems(n: int, seed: int, levels: tuple[int, ...] = LEVELS) -> list[Problem]:
    """`n` training problems, levels in turn; seeds below TEST_SEED_BASE."""
    if seed >= TEST_SEED_BASE:
        raise TenfoldError(f"training seeds must be < {TEST_SEED_BASE} (the test sets use the rest)")
    rng = random.Random(f"arith-train:{seed}")
    return [make_problem(levels[i % len(levels)], rng) for i in range(n)]


def test_set(level: int, n: int = 100) -> list[Problem]:
    """The held-out test set of one level: fixed, distinct problems from the test seed range."""
    rng = random.Random(f"arith-test:{TEST_SEED_BASE + level}")
    seen: dict[str, Problem] = {}
    tries = 0
    while len(seen) < n:
        p = make_problem(level, rng)
        seen.setdefault(p.expr, p)
        tries += 1
        if tries > 50 * n:
            raise TenfoldError(f"level {level} has fewer than {n} distinct problems")
    return list(seen.values())


def accuracy(
    model,
    tokenizer,
    problems: list[Problem],
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 128,
) -> float:
    """Pass rate of a policy on `problems`: greedy by default, else avg@`samples` (the mean correctness
    of `samples` sampled answers per problem, as HeaPA's avg@16 at temperature 1.0, top-p 0.7)."""
    from tenfold.core.sampler import SamplingParams, generate

    if temperature == 0 and samples != 1:
        raise TenfoldError("greedy decoding gives one answer per problem: use samples=1")
    params = [
        SamplingParams(
            max_new_tokens=8, temperature=temperature, top_p=top_p, stop=("\n",), seed=seed * 7717 + i
        )
        for i in range(len(problems) * samples)
    ]
    prompts = [p.prompt for p in problems for _ in range(samples)]
    gens = generate(model, tokenizer, prompts, params, batch_size=batch_size)
    right = [is_correct(problems[i // samples], g.text) for i, g in enumerate(gens)]
    return sum(right) / len(right)


def level_accuracy(
    model,
    tokenizer,
    n: int = 100,
    levels: tuple[int, ...] = LEVELS,
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> dict[str, float]:
    """{"L1": acc, ..., "mean": acc}: accuracy on each level's held-out test set (see `accuracy`)."""
    out = {
        f"L{lv}": accuracy(model, tokenizer, test_set(lv, n), samples, temperature, top_p, seed=lv)
        for lv in levels
    }
    out["mean"] = sum(out.values()) / len(levels)
    return out

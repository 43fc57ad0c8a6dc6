"""Procedurally generated arithmetic with difficulty levels L1-L6 and an exact checker (a verifiable task).

    L1  a + b              one digit each
    L2  a + b              two digits each (carries)
    L3  a - b              two digits, a >= b (borrows)
    L4  a + b - c          two digits each, result >= 0
    L5  a * b + c          two digits times one digit, plus two digits
    L6  (a + b) * c - d    parentheses; result >= 0

A problem is a short prompt ("Q: 37+45\\nA:") whose answer is an integer. The policy answers either with
the bare number (" 82") or with worked steps (" 37+45=77+5=82", see `worked_steps`): the task is the
same, the worked form splits it into one-digit-sized steps a tiny model can learn and RL can improve.
A completion is right when the value after the last "=" of its first line is exactly the answer, or,
for a line without "=", when the first integer is (so "82", " 82" and "82 is it" are right; "820",
"81" and "37+45=77+5" are not). Problems are determined by (level, seed); held-out test sets come
from a seed range training never uses, and a problem's text identifies it, so train/test overlap can
be checked.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tenfold.core.errors import TenfoldError

LEVELS = (1, 2, 3, 4, 5, 6)
ANSWER_FORMATS = ("bare", "worked")
# generation lengths that fit every level's longest answer (worked L6: about 45 characters)
MAX_ANSWER_TOKENS = {"bare": 8, "worked": 56}
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
        """The expert completion with the bare answer (SFT target)."""
        return f" {self.answer}\n"

    @property
    def worked_solution(self) -> str:
        """The expert completion with worked steps (SFT target of the worked answer format)."""
        return f" {worked_steps(self.expr)}\n"

    def target(self, answers: str = "bare") -> str:
        if answers not in ANSWER_FORMATS:
            raise TenfoldError(f"answers must be one of {ANSWER_FORMATS}, got {answers!r}")
        return self.worked_solution if answers == "worked" else self.solution


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


def _parts(n: int) -> list[int]:
    """The place parts of n with a non-zero digit, highest first: 405 -> [400, 5]; 0 -> [0]."""
    digits = str(n)
    out = [int(d) * 10 ** (len(digits) - 1 - i) for i, d in enumerate(digits) if d != "0"]
    return out or [0]


def _op_states(v: int, op: str, y: int) -> list[str]:
    """States after "v op y" until a single value: each step is one digit's worth of work.
    + and -: apply the operand's highest part ("37+45" -> "77+5" -> "82"). *, by a one-digit y: the
    products of v's parts, then their sum ("37*7" -> "210+49" -> "250+9" -> "259")."""
    if op == "*":
        vp = _parts(v)
        if y >= 10 or len(vp) == 1:
            return [str(v * y)]
        hi = vp[0] * y
        return [f"{hi}+{(v - vp[0]) * y}", *_op_states(hi, "+", (v - vp[0]) * y)]
    yp = _parts(y)
    states = []
    for i, part in enumerate(yp):
        v = v + part if op == "+" else v - part
        rest = sum(yp[i + 1 :])
        states.append(f"{v}{op}{rest}" if rest else str(v))
    return states


def worked_steps(expr: str) -> str:
    """The worked answer of an expression evaluated left to right (the L1-L6 shapes, whose one
    parenthesised group comes first): states joined by "=", each the running value and the operation
    in progress, ending at the value. "37+45-19" -> "37+45=77+5=82-19=72-9=63"."""
    tokens = _TOKEN.findall(expr)
    flat = [t for t in tokens if t not in "()"]
    if len(flat) < 3 or len(flat) % 2 == 0 or not all(t.isdigit() for t in flat[::2]):
        raise TenfoldError(f"cannot write worked steps for {expr!r}: need numbers joined by + - *")
    brackets = tokens.count("(") + tokens.count(")")
    if brackets and (brackets != 2 or tokens[0] != "(" or tokens.count("(") != 1):
        raise TenfoldError(f"worked steps allow one parenthesised pair at the front, got {expr!r}")
    v, states = int(flat[0]), []
    for i in range(1, len(flat), 2):
        op, y = flat[i], int(flat[i + 1])
        states.append(f"{v}{op}{y}")
        states.extend(_op_states(v, op, y)[:-1])
        v = v + y if op == "+" else v - y if op == "-" else v * y
    if v != evaluate(expr):
        raise TenfoldError(f"worked steps evaluate left to right; {expr!r} needs precedence")
    return "=".join([*states, str(v)])


_INT = re.compile(r"-?\d+")


def final_answer(completion: str) -> int | None:
    """The answer a completion gives: the value after the last "=" of its first line (worked answers),
    or its first integer when the line has no "=" (bare answers); None when there is none."""
    line = completion.lstrip().split("\n", 1)[0]
    if "=" in line:
        last = line.rsplit("=", 1)[1].strip()
        return int(last) if _INT.fullmatch(last) else None
    m = _INT.search(line)
    return int(m.group()) if m else None


def is_correct(problem: Problem, completion: str) -> bool:
    """Exact check of the answer `final_answer` reads."""
    return final_answer(completion) == problem.answer


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


def _graded(
    model,
    tokenizer,
    sets: list[tuple[list[Problem], int]],
    samples: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    max_new_tokens: int,
) -> list[float]:
    """Pass rate on each (problems, seed) set, all generated in one batched call (one long generation
    then holds back one batch, not one per set)."""
    from tenfold.core.sampler import SamplingParams, generate

    if temperature == 0 and samples != 1:
        raise TenfoldError("greedy decoding gives one answer per problem: use samples=1")
    prompts, params, owners = [], [], []
    for k, (problems, seed) in enumerate(sets):
        for i in range(len(problems) * samples):
            prompts.append(problems[i // samples].prompt)
            params.append(SamplingParams(max_new_tokens, temperature, top_p, ("\n",), seed=seed * 7717 + i))
            owners.append((k, problems[i // samples]))
    gens = generate(model, tokenizer, prompts, params, batch_size=batch_size)
    right, total = [0] * len(sets), [0] * len(sets)
    for (k, problem), g in zip(owners, gens, strict=True):
        right[k] += is_correct(problem, g.text)
        total[k] += 1
    return [r / t for r, t in zip(right, total, strict=True)]


def accuracy(
    model,
    tokenizer,
    problems: list[Problem],
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 128,
    max_new_tokens: int = MAX_ANSWER_TOKENS["bare"],
) -> float:
    """Pass rate of a policy on `problems`: greedy by default, else avg@`samples` (the mean correctness
    of `samples` sampled answers per problem, as HeaPA's avg@16 at temperature 1.0, top-p 0.7)."""
    return _graded(
        model, tokenizer, [(problems, seed)], samples, temperature, top_p, batch_size, max_new_tokens
    )[0]


def level_accuracy(
    model,
    tokenizer,
    n: int = 100,
    levels: tuple[int, ...] = LEVELS,
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = MAX_ANSWER_TOKENS["bare"],
    batch_size: int = 128,
) -> dict[str, float]:
    """{"L1": acc, ..., "mean": acc}: accuracy on each level's held-out test set (see `accuracy`)."""
    sets = [(test_set(lv, n), lv) for lv in levels]
    accs = _graded(model, tokenizer, sets, samples, temperature, top_p, batch_size, max_new_tokens)
    out = {f"L{lv}": a for lv, a in zip(levels, accs, strict=True)}
    out["mean"] = sum(accs) / len(levels)
    return out

"""Manufactoria-like program synthesis: a rule over coloured tapes, a program in a small state-machine
DSL, per-test feedback and a binary reward (the task family RESD, arXiv 2605.12741, trains on: RL-Grok's
Manufactoria, FSM programs checked against test tapes, near-zero initial success, rich feedback).

The machine. A tape is a string over the colours R and B. A robot reads it from the front, one symbol per
step, and may append symbols to its back (Manufactoria's conveyor, so a program can loop). A program has
one line per state:

    start a
    a: R>b B>a .>acc
    b: R>a B>b+R .>rej

`start a` names the first state. In state `a`, reading R moves to `b`; `B>b+R` also appends R to the
tape; `.` is taken when the tape is empty. Entering `acc` or `rej` ends the run. A symbol with no
transition rejects (the robot falls off the floor). A run not ended after `max_steps` steps, or whose tape
grows past `max_tape` symbols, is stopped with "no decision": a looping program gets a feedback line,
never a hang. A malformed program gets one error naming the line (`ProgramError`), never an exception
out of `check`.

A task is a rule from a family (`FAMILIES`: starts / ends with a colour, contains a pair, parity and
counts modulo 3, length modulo k, no doubled colour, same ends, exactly n of a colour) with parameters,
and 10-20 test tapes drawn for it, accepted and rejected ones in equal shares where the rule allows.
Families share lessons (an empty tape needs a `.` transition; counting modulo k needs k states; a
missing transition rejects), and `HELDOUT_FAMILIES` are never trained on. Every rule is regular, so an
expert program exists and is built here from the rule alone (`expert_program`, a minimal automaton
found by distinguishing suffixes), for warm starts and for checking the checker.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tenfold.core.errors import TenfoldError

COLOURS = ("R", "B")
END = "."
ACCEPT, REJECT = "acc", "rej"
MAX_STEPS = 64  # a test tape has at most 8 symbols; loops and runaway writes stop here
MAX_TAPE = 64
MAX_PROGRAM_CHARS = 2000
MAX_STATES = 32
TEST_SEED_BASE = 10**6  # held-out tasks draw from seeds here on; training tasks stay below

_STATE = re.compile(r"[a-z][a-z0-9]*$")
_TRANSITION = re.compile(r"([RB.])>([a-z][a-z0-9]*)(?:\+([RB]+))?$")


class ProgramError(TenfoldError):
    """A program that cannot be parsed; `line` is 1-based (0: the program as a whole)."""

    def __init__(self, line: int, message: str):
        self.line, self.reason = line, message
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True)
class Program:
    start: str
    # state -> symbol -> (next state, symbols appended)
    table: dict[str, dict[str, tuple[str, str]]]


def parse(text: str) -> Program:
    """A program from its text; raises `ProgramError` naming the first bad line."""
    if not isinstance(text, str):
        raise ProgramError(0, f"a program is text, got {type(text).__name__}")
    if len(text) > MAX_PROGRAM_CHARS:
        raise ProgramError(0, f"program longer than {MAX_PROGRAM_CHARS} characters")
    lines = [(i, ln.split("#")[0].strip()) for i, ln in enumerate(text.splitlines(), 1)]
    lines = [(i, ln) for i, ln in lines if ln]
    if not lines:
        raise ProgramError(0, "empty program: expected 'start STATE' then one line per state")
    first, head = lines[0]
    words = head.split()
    if len(words) != 2 or words[0] != "start" or not _STATE.match(words[1]):
        raise ProgramError(first, f"expected 'start STATE', got {head!r}")
    start, table, targets = words[1], {}, []
    for i, ln in lines[1:]:
        name, colon, rest = ln.partition(":")
        name = name.strip()
        if not colon or not _STATE.match(name):
            raise ProgramError(i, f"expected 'STATE: SYMBOL>TARGET ...', got {ln!r}")
        if name in (ACCEPT, REJECT):
            raise ProgramError(i, f"{name!r} is a final state and has no transitions")
        if name in table:
            raise ProgramError(i, f"state {name!r} is defined twice")
        row: dict[str, tuple[str, str]] = {}
        for word in rest.split():
            m = _TRANSITION.match(word)
            if not m:
                raise ProgramError(i, f"bad transition {word!r}: expected like R>b, B>acc or R>b+RB")
            symbol, target, write = m.group(1), m.group(2), m.group(3) or ""
            if symbol in row:
                raise ProgramError(i, f"state {name!r} has two transitions on {symbol!r}")
            if symbol == END and write:
                raise ProgramError(
                    i, f"{word!r}: nothing is read on the empty tape, so nothing may be written"
                )
            row[symbol] = (target, write)
            targets.append((i, target))
        table[name] = row
        if len(table) > MAX_STATES:
            raise ProgramError(i, f"more than {MAX_STATES} states")
    if start not in table:
        raise ProgramError(first, f"start state {start!r} has no line")
    for i, target in targets:
        if target not in table and target not in (ACCEPT, REJECT):
            raise ProgramError(i, f"transition to undefined state {target!r}")
    return Program(start, table)


@dataclass(frozen=True)
class Outcome:
    verdict: str  # "accept", "reject" or "no decision"
    steps: int
    why: str = ""  # for a reject or no decision: the missing transition, loop or overflow


def run(program: Program, tape: str, max_steps: int = MAX_STEPS, max_tape: int = MAX_TAPE) -> Outcome:
    """Run `program` on `tape` (front = index 0) for at most `max_steps` transitions."""
    state, queue = program.start, list(tape)
    for step in range(max_steps):
        symbol = queue.pop(0) if queue else END
        target, write = program.table[state].get(symbol, (None, ""))
        if target is None:
            return Outcome("reject", step + 1, f"no transition from {state} on {symbol}")
        queue.extend(write)
        if len(queue) > max_tape:
            return Outcome("no decision", step + 1, f"tape grew past {max_tape} symbols")
        if target == ACCEPT:
            return Outcome("accept", step + 1)
        if target == REJECT:
            return Outcome("reject", step + 1)
        state = target
    return Outcome("no decision", max_steps, f"not decided after {max_steps} steps (a loop?)")


# ---- rules ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    name: str
    draw: Callable[[random.Random], tuple]  # parameters
    describe: Callable[..., str]
    accepts: Callable[..., bool]  # (tape, *params) -> bool


def _other(c: str) -> str:
    return "B" if c == "R" else "R"


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "starts", lambda r: (r.choice(COLOURS),), lambda c: f"start with {c}", lambda t, c: t[:1] == c
        ),
        Family("ends", lambda r: (r.choice(COLOURS),), lambda c: f"end with {c}", lambda t, c: t[-1:] == c),
        Family(
            "contains",
            lambda r: (r.choice(COLOURS) + r.choice(COLOURS),),
            lambda w: f"contain {w}",
            lambda t, w: w in t,
        ),
        Family(
            "parity",
            lambda r: (r.choice(COLOURS), r.randint(0, 1)),
            lambda c, k: f"have an {('even', 'odd')[k]} number of {c}",
            lambda t, c, k: t.count(c) % 2 == k,
        ),
        Family(
            "length_mod",
            lambda r: (r.choice((2, 3)), r.randint(0, 1)),
            lambda m, k: f"have a length of {k} modulo {m}",
            lambda t, m, k: len(t) % m == k,
        ),
        Family(
            "exactly",
            lambda r: (r.choice(COLOURS), r.randint(1, 3)),
            lambda c, n: f"have exactly {n} {c}",
            lambda t, c, n: t.count(c) == n,
        ),
        Family(
            "count_mod3",
            lambda r: (r.choice(COLOURS), r.randint(0, 2)),
            lambda c, k: f"have a number of {c} that is {k} modulo 3",
            lambda t, c, k: t.count(c) % 3 == k,
        ),
        Family(
            "no_double",
            lambda r: (r.choice(COLOURS),),
            lambda c: f"have no two {c} in a row",
            lambda t, c: c + c not in t,
        ),
        Family(
            "same_ends",
            lambda r: (),
            lambda: "are not empty and start and end with the same colour",
            lambda t: bool(t) and t[0] == t[-1],
        ),
    )
}
HELDOUT_FAMILIES = ("count_mod3", "no_double", "same_ends")
TRAIN_FAMILIES = tuple(f for f in FAMILIES if f not in HELDOUT_FAMILIES)


def random_machine(rng: random.Random, states: tuple[int, int] = (2, 4)) -> str:
    """A random program of 2-4 states accepting 20-80% of the tapes up to 6 symbols (so a task's tests
    can be half accepted, half rejected; for the "machine" family)."""
    tapes = list(all_tapes(6))
    while True:
        names = "abcd"[: rng.randint(*states)]
        lines = [f"start {names[0]}"]
        for n in names:
            moves = [f"{c}>{rng.choice(names + 'r')}".replace(">r", ">rej") for c in COLOURS]
            moves = [m for m in moves if not m.endswith(">rej")]  # a missing transition rejects anyway
            if rng.random() < 0.5:
                moves.append(".>acc")
            lines.append(f"{n}: " + " ".join(moves))
        text = "\n".join(lines)
        share = sum(run(parse(text), t).verdict == "accept" for t in tapes) / len(tapes)
        if 0.2 <= share <= 0.8:
            return text


# A family whose rule is an arbitrary machine, described only as "hidden": its program cannot be
# inferred from the task text, so a model trained to write it from a context that contains it learns to
# copy from that context (RESD's warm start uses it for the teacher's corrections). Not in either split.
FAMILIES["machine"] = Family(
    "machine",
    lambda r: (random_machine(r),),
    lambda program: "a hidden machine accepts",
    lambda t, program: run(parse(program), t).verdict == "accept",
)
COPY_FAMILIES = ("machine",)


@dataclass(frozen=True)
class TestResult:
    tape: str
    want: str  # "accept" or "reject"
    got: str  # the outcome's verdict, or "error" for a program that does not parse
    why: str = ""

    @property
    def passed(self) -> bool:
        return self.want == self.got

    def line(self) -> str:
        shown = self.tape or "(empty)"
        if self.passed:
            return f"{shown}: {self.want} ok"
        return f"{shown}: want {self.want}, got {self.got}" + (f" ({self.why})" if self.why else "")


@dataclass(frozen=True)
class Check:
    """A program checked against a task's tests: binary `reward` (every test passed), per-test results,
    and the feedback text a teacher or a reflection reads."""

    reward: float
    results: tuple[TestResult, ...]
    error: str = ""  # the parse error, when there is one

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def test_accuracy(self) -> float:
        return self.passed / len(self.results) if self.results else 0.0

    def feedback(self, max_lines: int = 8) -> str:
        head = f"{self.passed}/{len(self.results)} tests passed."
        if self.error:
            return f"{head} The program does not parse: {self.error}"
        failed = [r.line() for r in self.results if not r.passed]
        more = f"\n... and {len(failed) - max_lines} more failures" if len(failed) > max_lines else ""
        return "\n".join([head, *failed[:max_lines]]) + more


@dataclass(frozen=True)
class Task:
    family: str
    params: tuple
    seed: int
    tests: tuple[tuple[str, bool], ...] = field(repr=False)  # (tape, accepted)

    @property
    def rule(self) -> str:
        return "accept the tapes that " + FAMILIES[self.family].describe(*self.params) + "."

    @property
    def key(self) -> str:
        """The example's identity (a family and seed determine the task), e.g. for a solution buffer."""
        return f"{self.family}:{self.seed}"

    def accepts(self, tape: str) -> bool:
        return FAMILIES[self.family].accepts(tape, *self.params)

    def prompt(self, examples: int = 4) -> str:
        """The problem as the student sees it: the rule, a few labelled tapes, the DSL in one line."""
        shown = " | ".join(f"{t or '(empty)'} {'acc' if a else 'rej'}" for t, a in self.tests[:examples])
        return f"task: {self.rule}\nexamples: {shown}\nprogram:"

    def check(self, text: str, max_steps: int = MAX_STEPS) -> Check:
        """Run the program `text` on every test tape; never raises for a bad program."""
        try:
            program = parse(text)
        except ProgramError as e:
            results = tuple(TestResult(t, _verdict(a), "error") for t, a in self.tests)
            return Check(0.0, results, str(e))
        results = []
        for tape, accepted in self.tests:
            out = run(program, tape, max_steps)
            results.append(TestResult(tape, _verdict(accepted), out.verdict, out.why))
        return Check(float(all(r.passed for r in results)), tuple(results))


def _verdict(accepted: bool) -> str:
    return "accept" if accepted else "reject"


def all_tapes(max_len: int):
    for n in range(max_len + 1):
        for t in itertools.product(COLOURS, repeat=n):
            yield "".join(t)


def make_task(family: str, seed: int, n_tests: int = 12, max_len: int = 8) -> Task:
    """A task of `family` determined by `seed`: parameters, then `n_tests` distinct tapes of length
    0..max_len, half accepted and half rejected where the rule has both among the tapes."""
    if family not in FAMILIES:
        raise TenfoldError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    if not 10 <= n_tests <= 20 or not 1 <= max_len <= 12:
        raise TenfoldError(f"need 10 <= n_tests <= 20 and 1 <= max_len <= 12, got {n_tests}, {max_len}")
    rng = random.Random(f"{family}:{seed}")
    fam = FAMILIES[family]
    params = fam.draw(rng)
    # lengths uniform in 0..max_len (so the empty tape and 1-symbol edge cases turn up), distinct tapes,
    # accepted and rejected ones up to half each; any shortfall of one kind is filled with the other
    quota = {True: n_tests // 2, False: n_tests - n_tests // 2}
    tests: list[tuple[str, bool]] = []
    seen: set[str] = set()
    spare: list[tuple[str, bool]] = []
    for _ in range(200 * n_tests):
        if len(tests) == n_tests:
            break
        tape = "".join(rng.choice(COLOURS) for _ in range(rng.randint(0, max_len)))
        if tape in seen:
            continue
        seen.add(tape)
        accepted = fam.accepts(tape, *params)
        if quota[accepted]:
            quota[accepted] -= 1
            tests.append((tape, accepted))
        else:
            spare.append((tape, accepted))
    tests += spare[: n_tests - len(tests)]
    rng.shuffle(tests)
    return Task(family, params, seed, tuple(tests))


def task_pool(
    n: int, split: str = "train", n_tests: int = 12, families: tuple[str, ...] | None = None, offset: int = 0
) -> list[Task]:
    """n tasks cycling through `families` (default: the split's own, so held-out tasks come from
    held-out families), seeds from `offset` within the split's range: training seeds stay below
    TEST_SEED_BASE, held-out seeds start there, so the two never share a task."""
    if split not in ("train", "heldout"):
        raise TenfoldError(f"split must be 'train' or 'heldout', got {split!r}")
    families = families or (TRAIN_FAMILIES if split == "train" else HELDOUT_FAMILIES)
    bad = [f for f in families if f not in FAMILIES]
    if bad or n < 1 or not 0 <= offset < TEST_SEED_BASE - n:
        raise TenfoldError(
            f"need n >= 1, known families and 0 <= offset < {TEST_SEED_BASE} - n: {n}, {bad}, {offset}"
        )
    base = offset + (0 if split == "train" else TEST_SEED_BASE)
    return [make_task(families[i % len(families)], base + i, n_tests) for i in range(n)]


def expert_program(task: Task, suffix_len: int = 6) -> str:
    """A minimal program for the task's rule, built from the rule alone: prefixes are merged when every
    suffix up to `suffix_len` symbols gets the same verdict (a bounded Myhill-Nerode construction, exact
    for these families, whose automata have at most 5 states). A state every suffix rejects becomes
    `rej`, one every suffix accepts becomes `acc` (the run may stop there), and `.>rej` is left out
    (a missing transition rejects)."""
    suffixes = list(all_tapes(suffix_len))

    def signature(prefix: str) -> tuple[bool, ...]:
        return tuple(task.accepts(prefix + s) for s in suffixes)

    names: dict[tuple, str] = {}
    order: list[tuple[tuple, str]] = []  # (signature, a prefix reaching it)
    todo = [""]
    while todo:
        prefix = todo.pop(0)
        sig = signature(prefix)
        if sig in names or all(sig) or not any(sig):
            continue
        if len(names) >= MAX_STATES:
            raise TenfoldError(f"rule of {task.family} needs more than {MAX_STATES} states")
        names[sig] = "abcdefghijklmnopqrstuvwxyz"[len(names)] if len(names) < 26 else f"s{len(names)}"
        order.append((sig, prefix))
        todo.extend(prefix + c for c in COLOURS)

    def target(prefix: str) -> str:
        sig = signature(prefix)
        return ACCEPT if all(sig) else REJECT if not any(sig) else names[sig]

    start = target("")
    if start in (ACCEPT, REJECT):  # accept or reject everything: one state that decides at once
        return f"start a\na: R>{start} B>{start} .>{start}"
    lines = [f"start {start}"]
    for sig, prefix in order:
        moves = [f"{c}>{target(prefix + c)}" for c in COLOURS]
        moves = [m for m in moves if not m.endswith(REJECT)]
        if task.accepts(prefix):
            moves.append(f"{END}>{ACCEPT}")
        lines.append(f"{names[sig]}: " + " ".join(moves))
    return "\n".join(lines)

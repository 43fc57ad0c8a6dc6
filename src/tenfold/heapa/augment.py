"""On-policy augmentation: the policy writes a variant of a batch prompt with a difficulty estimate; an
asynchronous validator checks it and computes its answer; accepted children join the pool.

HeaPA asks the policy (through the rollout workers) to change only the numbers of a problem slightly and
to say how much harder the variant is, d in [0.75, 1.33]; a cheap external model then cleans the
problem, decides whether it is solvable and computes the new ground truth. Here the policy is the tiny
model being trained (taught the variant format during its warm start) and the validator is exact: it
parses the expression, requires the same shape as the parent (same operators, same number of
operands, each within the level's digit count) and a non-negative result, and evaluates it. It runs on
a daemon thread behind a bounded queue: `submit` blocks for at most `put_timeout` seconds when the
queue is full (back-pressure on the trainer) and then drops the child, counting it.
"""

from __future__ import annotations

import queue
import random
import re
import threading
from dataclasses import dataclass

from tenfold.core.errors import TenfoldError
from tenfold.envs.arith import Problem, evaluate

D_MIN, D_MAX = 0.75, 1.33


def variant_prompt(expr: str) -> str:
    return f"V: {expr}\nN:"


def expert_variant(p: Problem, rng: random.Random) -> tuple[str, float]:
    """A variant with every number nudged (one-digit numbers by up to 3, larger ones by up to 9, digit
    counts kept) and its difficulty: the ratio of operand sums, clipped to [0.75, 1.33]."""
    for _ in range(100):
        nums = [int(x) for x in re.findall(r"\d+", p.expr)]
        new = []
        for x in nums:
            lo, hi = (0, 9) if x < 10 else (10 ** (len(str(x)) - 1), 10 ** len(str(x)) - 1)
            step = 3 if x < 10 else 9
            new.append(min(hi, max(lo, x + rng.randint(-step, step))))
        parts = re.split(r"\d+", p.expr)  # the operators and parentheses around the numbers
        expr = parts[0] + "".join(str(v) + rest for v, rest in zip(new, parts[1:], strict=True))
        if expr != p.expr and evaluate(expr) >= 0:
            d = min(D_MAX, max(D_MIN, sum(new) / max(1, sum(nums))))
            return expr, round(d, 2)
    return p.expr, 1.0


def variant_completion(expr: str, d: float) -> str:
    return f" {expr} d={d:.2f}\n"


_VARIANT = re.compile(r"^\s*([0-9+\-*() ]+?)\s+d=([0-9]*\.?[0-9]+)\s*$")


def parse_variant(text: str) -> tuple[str, float] | None:
    """(expression, difficulty) from the policy's reply, difficulty clipped to [0.75, 1.33]; None if
    the reply has no expression and difficulty."""
    m = _VARIANT.match(text.strip().splitlines()[0] if text.strip() else "")
    if not m:
        return None
    return m.group(1).replace(" ", ""), min(D_MAX, max(D_MIN, float(m.group(2))))


def _shape(expr: str) -> tuple[str, list[int]]:
    return re.sub(r"\d+", "#", expr), [len(x) for x in re.findall(r"\d+", expr)]


def validate_child(parent: Problem, expr: str) -> Problem | None:
    """The checked child problem, or None: same operators and parentheses as the parent, each number
    with at most the parent's digit count, a non-negative value, and not the parent itself."""
    try:
        value = evaluate(expr)
    except TenfoldError:
        return None
    (ps, pd), (cs, cd) = _shape(parent.expr), _shape(expr)
    if ps != cs or any(c > p for c, p in zip(cd, pd, strict=True)) or value < 0 or expr == parent.expr:
        return None
    return Problem(parent.level, expr, value)


@dataclass
class Child:
    parent_id: int
    parent: Problem
    expr: str
    difficulty: float
    prior: float  # r̂ from the parent's r̄ this step


class Validator:
    """A daemon thread that validates submitted children; `drain()` returns the accepted ones."""

    def __init__(self, maxsize: int = 256, put_timeout: float = 0.5):
        self.q: queue.Queue[Child | None] = queue.Queue(maxsize=maxsize)
        self.put_timeout = put_timeout
        self._out: list[tuple[Child, Problem]] = []
        self._lock = threading.Lock()
        self.submitted = self.accepted = self.rejected = self.dropped = 0
        self._t = threading.Thread(target=self._run, name="heapa-validator", daemon=True)
        self._t.start()

    def submit(self, child: Child) -> bool:
        try:
            self.q.put(child, timeout=self.put_timeout)
        except queue.Full:
            self.dropped += 1
            return False
        self.submitted += 1
        return True

    def _run(self) -> None:
        while True:
            c = self.q.get()
            if c is None:
                self.q.task_done()
                return
            try:
                ok = validate_child(c.parent, c.expr)
            except Exception:  # a validator bug must not kill the thread or the trainer
                ok = None
            with self._lock:
                if ok is None:
                    self.rejected += 1
                else:
                    self.accepted += 1
                    self._out.append((c, ok))
            self.q.task_done()

    def drain(self, wait: bool = False) -> list[tuple[Child, Problem]]:
        """Accepted (child, problem) pairs since the last call; `wait` first lets the queue empty."""
        if wait:
            self.q.join()
        with self._lock:
            out, self._out = self._out, []
        return out

    def close(self) -> None:
        self.q.put(None)
        self._t.join(timeout=5)

    def stats(self) -> dict:
        return {
            "submitted": self.submitted,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "queued": self.q.qsize(),
        }

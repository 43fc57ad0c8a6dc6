"""Multi-part questions whose parts depend on earlier parts' results, scored by exact match.

A question defines named parts, e.g.

    Solve each part. A = 37 + 45. B = reverse "lamp". C = A + 19 + 8. D = letters in B.

Some operands are earlier parts' results (C needs A), so a part's answer is only right if its parents'
are. Parts are easy (one operation, answered directly: "A = 82") or hard (several operations, answered
with the intermediate steps: "C = 82 + 19 + 8 = 101 + 8 = 109"), so hard parts really take more tokens.
`score` reads the final value of each "NAME = ..." line of an answer and compares it exactly.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from tenfold.core.errors import TenfoldError

NAMES = "ABCDEFGH"
WORDS = ("lamp", "stone", "river", "cat", "garden", "pencil", "cloud", "tiger", "apple", "moon")
KINDS = ("add", "reverse", "letters", "chain")  # "chain" (3-4 terms) is the hard kind


@dataclass(frozen=True)
class Part:
    name: str
    kind: str
    operands: tuple  # ints, words, or names of earlier parts
    deps: tuple[str, ...]
    difficulty: str  # "easy" or "hard"
    value: str  # the exact answer

    def statement(self) -> str:
        if self.kind in ("add", "chain"):
            return f"{self.name} = {' + '.join(map(str, self.operands))}"
        arg = self.operands[0] if _is_ref(self.operands[0]) else f'"{self.operands[0]}"'
        return f"{self.name} = {'reverse' if self.kind == 'reverse' else 'letters in'} {arg}"


def _is_ref(operand) -> bool:
    return isinstance(operand, str) and len(operand) == 1 and operand in NAMES


@dataclass
class ChainConfig:
    parts: int = 4
    max_depth: int = 2  # longest chain of dependencies between parts
    dep_prob: float = 0.6  # chance that a part uses an earlier part's result
    hard_prob: float = 0.4
    seed: int = 0

    def validate(self) -> ChainConfig:
        if not 1 <= self.parts <= len(NAMES):
            raise TenfoldError(f"parts must be in 1..{len(NAMES)}, got {self.parts}")
        if self.max_depth < 0 or not 0 <= self.dep_prob <= 1 or not 0 <= self.hard_prob <= 1:
            raise TenfoldError(f"bad chain config: {self}")
        return self


@dataclass
class ChainQuestion:
    parts: list[Part]
    cfg: ChainConfig = field(repr=False, default_factory=ChainConfig)

    @property
    def text(self) -> str:
        return "Solve each part. " + " ".join(p.statement() + "." for p in self.parts)

    def depth(self) -> int:
        d: dict[str, int] = {}
        for p in self.parts:
            d[p.name] = 1 + max((d[x] for x in p.deps), default=-1)
        return max(d.values(), default=0)

    def solution(self, name: str) -> str:
        """The expert answer line of one part, with its work (the last "= value" is the answer):

            A = 57 + 19 = 57 + 10 + 9 = 67 + 9 = 76          (add: tens, then ones)
            B = A + 8 + 25 = 76 + 8 + 25 = 84 + 25 = ...     (chain: the same, term by term: hard)
            C = reverse "lamp" = p-m-a-l = pmal               (letters spelled backwards)
            D = letters in C = letters in "pmal" = p1 m2 a3 l4 = 4

        Work that a reader can follow keeps the tiny models' arithmetic learnable and makes answers
        long next to their one-line plan, as the paper's point expansions are next to its skeleton."""
        p = next(q for q in self.parts if q.name == name)
        vals = {q.name: q.value for q in self.parts}
        ops = [vals[o] if _is_ref(o) else o for o in p.operands]
        steps = [p.statement().split(" = ", 1)[1]]
        if p.kind in ("add", "chain"):
            terms = [int(x) for x in ops]
            if any(_is_ref(o) for o in p.operands):
                steps.append(" + ".join(map(str, terms)))
            acc = terms[0]
            for i, t in enumerate(terms[1:], 2):
                rest = [str(x) for x in terms[i:]]
                tens, ones = t - t % 10, t % 10
                if tens and ones:
                    steps.append(" + ".join([str(acc), str(tens), str(ones), *rest]))
                    steps.append(" + ".join([str(acc + tens), str(ones), *rest]))
                acc += t
                steps.append(" + ".join([str(acc), *rest]))
        else:
            word = str(ops[0])
            if _is_ref(p.operands[0]):
                steps.append(f'{"reverse" if p.kind == "reverse" else "letters in"} "{word}"')
            if p.kind == "reverse":
                steps += ["-".join(reversed(word)), word[::-1]]
            else:
                steps += [" ".join(f"{c}{i}" for i, c in enumerate(word, 1)), str(len(word))]
        return f"{p.name} = " + " = ".join(steps)

    def answer(self) -> str:
        """The whole expert answer (the autoregressive baseline's target)."""
        return "\n".join(self.solution(p.name) for p in self.parts)


def generate(cfg: ChainConfig) -> ChainQuestion:
    """A random question; the same config and seed always give the same question."""
    cfg.validate()
    rng = random.Random(f"chains:{cfg.seed}:{cfg.parts}:{cfg.max_depth}")
    parts: list[Part] = []
    depth: dict[str, int] = {}
    for i in range(cfg.parts):
        name = NAMES[i]
        numeric = [
            p for p in parts if p.kind in ("add", "chain", "letters") and depth[p.name] < cfg.max_depth
        ]
        wordy = [p for p in parts if p.kind == "reverse" and depth[p.name] < cfg.max_depth]
        hard = rng.random() < cfg.hard_prob
        kind = "chain" if hard else rng.choice(("add", "reverse", "letters"))
        use_dep = rng.random() < cfg.dep_prob
        if kind in ("add", "chain"):
            n = 2 if kind == "add" else rng.randint(3, 4)
            ops: list = [rng.randint(1, 60) for _ in range(n)]
            if use_dep and numeric:
                ops[0] = rng.choice(numeric).name
        else:
            ops = [rng.choice(WORDS)]
            if use_dep and wordy:
                ops[0] = rng.choice(wordy).name
        deps = tuple(o for o in ops if _is_ref(o))
        vals = {p.name: p.value for p in parts}
        concrete = [vals[o] if _is_ref(o) else o for o in ops]
        if kind in ("add", "chain"):
            value = str(sum(int(x) for x in concrete))
        elif kind == "reverse":
            value = str(concrete[0])[::-1]
        else:
            value = str(len(str(concrete[0])))
        depth[name] = 1 + max((depth[d] for d in deps), default=-1)
        parts.append(Part(name, kind, tuple(ops), deps, "hard" if kind == "chain" else "easy", value))
    return ChainQuestion(parts, cfg)


_LINE = re.compile(r"^\s*([A-H])\s*=\s*(.+?)\s*$")


def score(question: ChainQuestion, answer: str) -> dict[str, bool]:
    """Per part: is the final value of its "NAME = ... = value" line exactly right (the last line for
    a part wins; a missing part is wrong)."""
    final: dict[str, str] = {}
    for line in answer.splitlines():
        m = _LINE.match(line)
        if m:
            final[m.group(1)] = m.group(2).split("=")[-1].strip().strip(".").strip('"')
    return {p.name: final.get(p.name) == p.value for p in question.parts}

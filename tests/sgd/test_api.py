import asyncio
import re

import pytest

from tenfold.core.backends import Completion
from tenfold.core.errors import TenfoldError
from tenfold.envs.chains import ChainConfig, generate, score
from tenfold.sgd.api import SGDConfig, answer
from tenfold.sgd.prompts import DIRECT_SYSTEM, POINT_SYSTEM, SKELETON_SYSTEM, expert_skeleton
from tenfold.sgd.skeleton import parse_skeleton


def compute(expr, known):
    """Evaluate one statement's right-hand side from known values; None if a needed value is unknown."""
    refs = re.findall(r"\b([A-H])\b", expr)
    if any(r not in known for r in refs):
        return None
    if expr.startswith("reverse "):
        arg = expr.removeprefix("reverse ").strip('"')
        return known.get(arg, arg)[::-1]
    if expr.startswith("letters in "):
        arg = expr.removeprefix("letters in ").strip('"')
        return str(len(known.get(arg, arg)))
    return str(sum(int(known.get(t, t)) for t in expr.split(" + ")))


class Reader:
    """A scripted model that knows only what its prompt says (as SoT's points do)."""

    def __init__(self, name, plan=None):
        self.model, self.plan, self.calls = name, plan, []

    async def chat(self, messages, max_tokens=64, **kw):
        system, user = messages[0]["content"], messages[-1]["content"]
        self.calls.append(system)
        statements = re.findall(r"([A-H]) = ([^.]+)\.", user.split("\nPlan:")[0])
        if system == SKELETON_SYSTEM:
            lines = []
            for i, (n, e) in enumerate(statements, 1):
                deps = ",".join(str("ABCDEFGH".index(r) + 1) for r in re.findall(r"\b([A-H])\b", e)) or "none"
                lines.append(f"{i}. {n} = {e} | deps: {deps} | {'hard' if e.count('+') >= 2 else 'easy'}")
            text = self.plan if self.plan is not None else "\n".join(lines)
        elif system == DIRECT_SYSTEM:
            known = {}
            for n, e in statements:
                known[n] = compute(e, known)
            text = "\n".join(f"{n} = {v}" for n, v in known.items())
        else:
            assert system == POINT_SYSTEM
            known = dict(
                re.findall(
                    r"([A-H]) = (?:[^;\n]* = )?([^;\n=]+?)(?=;|$)", user.split("Known: ")[1].split("\n")[0]
                )
            )
            name, expr = re.search(r"Part \d+: ([A-H]) = (.+)$", user).groups()
            text = f"{name} = {compute(expr.strip(), known) or '?'}"
        return Completion(text, "stop", len(user), len(text))

    async def aclose(self):
        pass


def question():
    for seed in range(100):  # one with dependent and independent parts, easy and hard
        q = generate(ChainConfig(parts=6, max_depth=2, seed=seed))
        kinds = {(bool(p.deps), p.difficulty) for p in q.parts}
        if {(True, "easy"), (False, "easy"), (True, "hard")} <= kinds:
            return q
    raise AssertionError("no suitable question")


def run(mode, **kw):
    q, large, small = question(), Reader("large"), Reader("small")
    a = asyncio.run(answer(q.text, large, small, SGDConfig(mode=mode, **kw)))
    return q, a, large, small


def test_sgd_and_ar_get_every_part_and_sot_misses_the_dependent_ones():
    for mode in ("ar", "sgd"):
        q, a, _, _ = run(mode)
        assert a.mode == mode and all(score(q, a.text).values()), (mode, a.text)
    q, a, _, _ = run("sot")
    s = score(q, a.text)
    assert all(s[p.name] for p in q.parts if not p.deps)
    assert not any(s[p.name] for p in q.parts if p.deps)


def test_easy_points_go_to_the_small_model():
    q, a, large, small = run("sgd")
    easy = sum(p.difficulty == "easy" for p in q.parts)
    assert small.calls.count(POINT_SYSTEM) == easy and large.calls.count(POINT_SYSTEM) == len(q.parts) - easy
    assert a.trace["points"] == len(q.parts) and a.trace["waves"] == q.depth() + 1
    _, _, large, small = run("sgd", route=False)
    assert small.calls == [] and large.calls.count(POINT_SYSTEM) == len(q.parts)


def test_unusable_skeleton_falls_back_to_autoregressive():
    q = question()
    large = Reader("large", plan="Sure! Here is my answer without a plan.")
    a = asyncio.run(answer(q.text, large, None, SGDConfig()))
    assert a.mode == "ar" and all(score(q, a.text).values())
    assert any("no usable skeleton" in w for w in a.warnings)


def test_expert_skeleton_parses_to_the_question_graph():
    q = question()
    sk = parse_skeleton(expert_skeleton(q))
    assert sk.warnings == [] and len(sk.points) == len(q.parts)
    for p, part in zip(sk.points, q.parts, strict=True):
        assert [q.parts[d - 1].name for d in p.deps] == list(part.deps) and p.difficulty == part.difficulty


def test_bad_mode():
    with pytest.raises(TenfoldError, match="mode"):
        SGDConfig(mode="fast").validate()

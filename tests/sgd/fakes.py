"""A scripted model for SGD tests: it reads its prompt and knows nothing else."""

import asyncio
import re

from tenfold.core.backends import Completion
from tenfold.sgd.prompts import DIRECT_SYSTEM, POINT_SYSTEM, SKELETON_SYSTEM


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
            name = re.search(r"Part \d+: ([A-H])\b", user).group(1)  # the title is the name, maybe more
            text = f"{name} = {compute(dict(statements)[name].strip(), known) or '?'}"
        return Completion(text, "stop", len(user), len(text))

    async def aclose(self):
        pass


class StreamingReader(Reader):
    """A `Reader` that streams its answers a character at a time, yielding to other tasks in between,
    and writes what happens, in order, to a `log` it may share with another model."""

    def __init__(self, name, plan=None, log=None):
        super().__init__(name, plan)
        self.log = log if log is not None else []

    async def chat(self, messages, max_tokens=64, **kw):
        if messages[0]["content"] == POINT_SYSTEM:
            self.log.append(("point", self.model, messages[-1]["content"]))
        return await super().chat(messages, max_tokens, **kw)

    async def chat_stream(self, messages, on_delta, max_tokens=64, **kw):
        c = await Reader.chat(self, messages, max_tokens, **kw)
        for ch in c.text:
            on_delta(ch)
            await asyncio.sleep(0)
        self.log.append(("done", self.model, messages[0]["content"]))
        return c

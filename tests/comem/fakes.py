"""Scripted stand-ins for the agent and memory models: they read the messages they are given, so a
policy that drops a needed fact from the agent's view makes them fail, as a real model would."""

import asyncio
import re

from tenfold.core.backends import Completion

FACT = re.compile(r"(\w+ door code \d+|fork \d+ way (?:left|right))")


class ReadingAgent:
    """Answers each room from whatever facts are visible in its prompt."""

    model = "reading-agent"

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls, self.prompt_chars = delay, 0, []

    async def chat(self, messages, **kw):
        self.calls += 1
        text = "\n".join(m["content"] for m in messages)
        self.prompt_chars.append(len(text))
        await asyncio.sleep(self.delay)
        obs = messages[-1]["content"]
        facts = FACT.findall(text)
        act = "go"
        if m := re.search(r"A (\w+) door with a keypad", obs):
            act = next(
                (f"code {f.split()[-1]}" for f in facts if f.startswith(f"{m.group(1)} door")), "code 0"
            )
        elif m := re.search(r"Fork (\d+): left or right", obs):
            act = next((f.split()[-1] for f in facts if f.startswith(f"fork {m.group(1)} ")), "left")
        elif obs.endswith("The exit."):
            act = "exit"
        return Completion(f"think: ok. act: {act}", "stop", len(text), 5)

    async def aclose(self):
        pass


class ListingMemory:
    """Keeps every fact in the transcript (a perfect, if verbose, memory)."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.delay, self.fail, self.calls, self.views = delay, fail, 0, []

    async def summarize(self, messages):
        self.calls += 1
        self.views.append(messages)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("memory server down")
        facts = FACT.findall(messages[-1]["content"])
        return "; ".join(dict.fromkeys(facts)) + "." if facts else "nothing to keep."


class ForgetfulMemory(ListingMemory):
    async def summarize(self, messages):
        await super().summarize(messages)
        return "nothing to keep."

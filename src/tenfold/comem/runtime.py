"""The agent loop with three context policies: `full`, `sync` and `comem` (k-step-off memory).

CoMem (arXiv 2605.30842, ICML 2026) takes summarisation off the agent's critical path. Its schedule,
for interval R and staleness bound k (the paper's code: R = 4, k = 1):

    for t in steps:
        if job and (job is done or t - job.started >= k): summary, cut = await job   # rarely blocks
        if t % R == 0 and no job: job = spawn(memory(history[:t]))
        reply = agent(system, task, summary, history[cut:t]); obs = env(reply)

- `full`: the agent sees the whole history every step (no memory model).
- `sync`: every R steps the agent waits while the memory model summarises history[:t]
  (OpenHands' condenser, LangChain's summarization middleware).
- `comem`: as above; the summary in use at step t covers history up to t - k' for some k' >= 1, and the
  raw turns since its cut-off fill the gap. The agent waits only for a summary more than k steps old.

Memory input: the paper gives the memory model the whole raw history each time (`memory_input=
"history"`). The default here is incremental: the previous summary plus the turns since its cut-off,
which keeps the memory model's prompt short (and trainable on CPU); see docs/comem.md.

A failing memory call never stops the agent: it keeps its previous summary (or the full history) and
the error is counted in the result.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

from tenfold.comem.context import agent_view, memory_view
from tenfold.core.backends import Backend
from tenfold.core.errors import TenfoldError

POLICIES = ("full", "sync", "comem")
MEMORY_INPUTS = ("incremental", "history")
NO_SUMMARY = "nothing to keep."


class MemoryModel(Protocol):
    """Writes a summary from the memory view (`context.memory_view`). Any backend or a trained
    checkpoint drops in through `BackendMemory`."""

    async def summarize(self, messages: list[dict]) -> str: ...


@dataclass
class BackendMemory:
    """A memory model behind a `Backend` (a `tenfold serve` URL, vLLM, or an in-process model)."""

    backend: Backend
    max_tokens: int = 96  # the paper allows 2,048 for 64-128K-token histories

    async def summarize(self, messages: list[dict]) -> str:
        c = await self.backend.chat(messages, max_tokens=self.max_tokens, temperature=0.0)
        return c.text.strip()


@dataclass
class PolicyConfig:
    policy: str = "comem"
    interval: int = 4  # R: a summary is started every R steps
    k: int = 1  # comem: wait for a pending summary only once it is k or more steps old
    agent_max_tokens: int = 48
    env_latency: float = 0.0  # seconds slept per environment step (tool execution); 0 = the game only
    memory_input: str = "incremental"  # "history": every raw turn (the paper); "incremental": see below
    # comem: adopt a summary exactly k steps after starting it, even when it is done sooner. The agent's
    # views then do not depend on how fast the memory model runs (quality measurement; the staleness
    # is the bound's worst case)
    adopt_at_k: bool = False
    # comem, the paper's optimized schedule: a summary that is ready before it is due is adopted one
    # step later, and meanwhile the agent's prefix cache is filled with the new prompt (a one-token
    # request), so the switch does not re-prefill the summary and the turns since its cut-off on the
    # critical path. Pays off only where the agent server has a prefix cache and spare time.
    prefill_ahead: bool = False

    def validate(self) -> PolicyConfig:
        if self.memory_input not in MEMORY_INPUTS:
            raise TenfoldError(f"unknown memory_input {self.memory_input!r}; choose one of {MEMORY_INPUTS}")
        if self.policy not in POLICIES:
            raise TenfoldError(f"unknown policy {self.policy!r}; choose one of {POLICIES}")
        if self.interval < 1 or self.k < 1 or self.agent_max_tokens < 1 or self.env_latency < 0:
            raise TenfoldError(
                f"interval, k and agent_max_tokens must be >= 1 and env_latency >= 0; got {asdict(self)}"
            )
        return self


@dataclass
class StepRecord:
    t: int
    seconds: float  # the whole step: waiting for memory + agent call + environment
    agent_seconds: float
    wait_seconds: float  # blocked on the memory model
    env_seconds: float  # the environment step (and env_latency)
    prompt_tokens: int
    summary_cut: int  # the summary in use covers turns [0, summary_cut)


@dataclass
class EpisodeResult:
    policy: str
    steps: int
    seconds: float
    success: bool
    score: float
    records: list[StepRecord] = field(default_factory=list)
    memory_seconds: list[float] = field(default_factory=list)  # per memory call
    memory_errors: int = 0
    prefills: int = 0  # prefill_ahead: one-token requests sent to warm the agent's cache
    summaries: list[str] = field(default_factory=list)
    summary_cuts: list[int] = field(default_factory=list)  # each adopted summary covers turns [0, cut)

    def summary(self) -> dict:
        n = max(1, len(self.records))
        return {
            "policy": self.policy,
            "steps": self.steps,
            "seconds": self.seconds,
            "success": self.success,
            "score": self.score,
            "step_mean_s": sum(r.seconds for r in self.records) / n,
            "agent_mean_s": sum(r.agent_seconds for r in self.records) / n,
            "wait_total_s": sum(r.wait_seconds for r in self.records),
            "env_mean_s": sum(r.env_seconds for r in self.records) / n,
            "prompt_tokens_mean": sum(r.prompt_tokens for r in self.records) / n,
            "memory_calls": len(self.memory_seconds),
            "memory_mean_s": sum(self.memory_seconds) / max(1, len(self.memory_seconds)),
            "memory_errors": self.memory_errors,
            "prefills": self.prefills,
        }


class Environment(Protocol):
    """A text environment: the current observation, `step(reply) -> next observation | None`."""

    def observation(self) -> str: ...

    def step(self, reply: str) -> str | None: ...


async def run_episode(
    env: Environment,
    agent: Backend,
    memory: MemoryModel | None,
    cfg: PolicyConfig,
    system: str,
    task: str,
) -> EpisodeResult:
    """Play one episode to its end under `cfg.policy`; returns latencies and the env's success/score."""
    cfg.validate()
    if cfg.policy != "full" and memory is None:
        raise TenfoldError(f"policy {cfg.policy!r} needs a memory model")
    messages: list[dict] = [{"role": "system", "content": system}, {"role": "user", "content": task}]
    res = EpisodeResult(cfg.policy, 0, 0.0, False, 0.0)
    summary, cut = None, 0
    job: asyncio.Task | None = None
    job_step = 0
    ready: tuple[str | None, int] | None = None  # prefill_ahead: adopted at the next step
    warm: asyncio.Task | None = None

    async def prefill(view: list[dict]) -> None:
        try:
            await agent.chat(view, max_tokens=1, temperature=0.0)
            res.prefills += 1
        except Exception:  # noqa: BLE001 - a failed warm-up only costs the prefill it meant to save
            pass

    async def summarize(upto: int) -> tuple[str | None, int]:
        t0 = time.perf_counter()
        try:
            if cfg.memory_input == "history":
                view = memory_view(messages, upto)  # turns < upto only
            else:
                view = memory_view(messages, upto, summary or NO_SUMMARY, cut)
            text = await memory.summarize(view)
            return text, upto
        except Exception:  # noqa: BLE001 - the agent goes on without this summary
            res.memory_errors += 1
            return None, -1
        finally:
            res.memory_seconds.append(time.perf_counter() - t0)

    def adopt(got: tuple[str | None, int]) -> None:
        nonlocal summary, cut
        if got[0] is not None:
            summary, cut = got
            res.summaries.append(got[0])
            res.summary_cuts.append(got[1])

    start = time.perf_counter()
    obs, t = env.observation(), 0
    try:
        while obs is not None:
            t0 = time.perf_counter()
            messages.append({"role": "user", "content": obs})
            wait = 0.0
            if cfg.policy == "sync" and t > 0 and t % cfg.interval == 0:
                w = time.perf_counter()
                adopt(await summarize(t))
                wait = time.perf_counter() - w
            elif cfg.policy == "comem":
                if ready is not None:
                    adopt(ready)
                    ready = None
                due = t - job_step >= cfg.k
                if job is not None and (due or (job.done() and not cfg.adopt_at_k)):
                    w = time.perf_counter()
                    got = await job
                    wait = time.perf_counter() - w
                    job = None
                    if cfg.prefill_ahead and got[0] is not None and not due:
                        ready = got
                        warm = asyncio.create_task(prefill(agent_view(messages, got[0], got[1])))
                    else:
                        adopt(got)
                if t > 0 and t % cfg.interval == 0 and job is None:
                    job, job_step = asyncio.create_task(summarize(t)), t
            view = agent_view(messages, summary, cut)
            a = time.perf_counter()
            reply = await agent.chat(view, max_tokens=cfg.agent_max_tokens, temperature=0.0)
            agent_s = time.perf_counter() - a
            messages.append({"role": "assistant", "content": reply.text})
            e = time.perf_counter()
            obs = env.step(reply.text)
            if cfg.env_latency:
                await asyncio.sleep(cfg.env_latency)
            now = time.perf_counter()
            res.records.append(StepRecord(t, now - t0, agent_s, wait, now - e, reply.prompt_tokens, cut))
            t += 1
    finally:
        for task in (job, warm):
            if task is not None:
                task.cancel()
    res.seconds = time.perf_counter() - start
    res.steps = t
    res.success = bool(getattr(env, "success", False))
    res.score = float(getattr(env, "score", 0.0))
    return res

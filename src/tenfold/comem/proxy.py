"""`tenfold comem proxy`: CoMem as an OpenAI-compatible proxy any agent framework can point at.

The client keeps sending its whole conversation, as agent frameworks do. The proxy recognises a
conversation by its leading messages: a request continues the conversation whose previous request is
its longest prefix (model name included), so parallel sessions with the same system prompt and task
stay apart. It counts the conversation's turns, runs the memory model in the background every R turns (the k-step-off schedule of
`runtime.py`), and forwards to the agent server the head + latest summary + the raw turns since that
summary's cut-off. Responses, streaming included, pass through unchanged.

Failure is never worse than no proxy: if the memory server is down or errors, if a conversation's
earlier turns were edited (so the summary no longer describes them), or if anything else goes wrong
while compressing, the request is forwarded with the full history.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from tenfold.comem.context import agent_view, body_before, memory_view, split_head, turn_starts
from tenfold.comem.runtime import MEMORY_INPUTS, NO_SUMMARY, MemoryModel
from tenfold.core.errors import TenfoldError
from tenfold.core.http import openai_error

log = logging.getLogger("tenfold.comem.proxy")


@dataclass
class ProxyConfig:
    agent_url: str  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8001/v1
    interval: int = 4  # R
    k: int = 1
    max_sessions: int = 1024
    memory_timeout: float = 120.0  # a summary that takes longer is abandoned (full history is sent)
    memory_input: str = "incremental"  # or "history" (every raw turn, the paper); see runtime.py

    def __post_init__(self):
        if self.memory_input not in MEMORY_INPUTS:
            raise TenfoldError(f"memory_input must be one of {MEMORY_INPUTS}, got {self.memory_input!r}")
        if self.interval < 1 or self.k < 1 or self.max_sessions < 1 or self.memory_timeout <= 0:
            raise TenfoldError(
                "interval, k and max_sessions must be >= 1 and memory_timeout > 0; got "
                f"{self.interval}, {self.k}, {self.max_sessions}, {self.memory_timeout}"
            )


@dataclass
class _Session:
    summary: str | None = None
    cut: int = 0
    covered: str = ""  # hash of the turns the summary covers (detects edited histories)
    job: asyncio.Task | None = None
    job_step: int = 0


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class CoMemProxy:
    def __init__(self, cfg: ProxyConfig, memory: MemoryModel):
        self.cfg, self.memory = cfg, memory
        self.sessions: OrderedDict[tuple[int, str], _Session] = (
            OrderedDict()
        )  # (length, digest) of last request
        self.stats = {"requests": 0, "compressed": 0, "memory_calls": 0, "memory_errors": 0, "fallbacks": 0}
        self.client = httpx.AsyncClient(base_url=cfg.agent_url.rstrip("/"), timeout=None)

    async def aclose(self) -> None:
        """Cancel pending summaries and close the clients (on the proxy's own event loop)."""
        for s in self.sessions.values():
            if s.job is not None:
                s.job.cancel()
        await self.client.aclose()
        backend = getattr(self.memory, "backend", None)
        if backend is not None and hasattr(backend, "aclose"):
            await backend.aclose()

    def _session(self, model, messages: list[dict], head_len: int) -> _Session:
        """The conversation this request continues: the one whose last request is the longest prefix
        of this one (identical system prompts and tasks in parallel sessions stay apart as soon as
        their turns differ). The session is re-keyed by this request."""
        chain = [_digest(model)]
        for m in messages:
            chain.append(_digest([chain[-1], m]))
        s = None
        for n in range(len(messages) - 1, head_len - 1, -1):
            s = self.sessions.pop((n, chain[n]), None)
            if s is not None:
                break
        if s is None:
            s = _Session()
        self.sessions[(len(messages), chain[-1])] = s
        while len(self.sessions) > self.cfg.max_sessions:
            _, old = self.sessions.popitem(last=False)
            if old.job is not None:
                old.job.cancel()
        return s

    async def _summarize(self, s: _Session, messages: list[dict], cut: int) -> tuple[str | None, int, str]:
        self.stats["memory_calls"] += 1
        _, body = split_head(messages)
        covered = _digest(body_before(body, cut))
        if self.cfg.memory_input == "history" or s.summary is None:
            view = memory_view(messages, cut, None if self.cfg.memory_input == "history" else NO_SUMMARY)
        else:
            view = memory_view(messages, cut, s.summary, s.cut)
        try:
            text = await asyncio.wait_for(self.memory.summarize(view), self.cfg.memory_timeout)
            return text, cut, covered
        except Exception as e:  # noqa: BLE001 - the conversation goes on with the full history
            self.stats["memory_errors"] += 1
            log.warning("memory model failed (%s: %s); forwarding full history", type(e).__name__, e)
            return None, 0, ""

    async def compress(self, body: dict) -> list[dict]:
        """The message list to forward for this request (the original one on any problem)."""
        messages = body["messages"]
        head, rest = split_head(messages)
        s = self._session(body.get("model"), messages, len(head))
        t = max(0, len(turn_starts(rest)) - 1)  # the turn being answered
        if s.job is not None and (s.job.done() or t - s.job_step >= self.cfg.k or t < s.job_step):
            got = await s.job
            s.job = None
            if got[0] is not None:
                s.summary, s.cut, s.covered = got
        if t > 0 and t % self.cfg.interval == 0 and s.job is None:
            s.job, s.job_step = asyncio.create_task(self._summarize(s, messages, t)), t
        if s.summary is None or s.cut <= 0 or s.cut > t:
            return messages
        if _digest(body_before(rest, s.cut)) != s.covered:  # history edited or branched
            self.stats["fallbacks"] += 1
            s.summary, s.cut = None, 0
            return messages
        self.stats["compressed"] += 1
        return agent_view(messages, s.summary, s.cut)

    async def chat(self, request: Request) -> Response:
        self.stats["requests"] += 1
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return openai_error(400, "request body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return openai_error(400, "a chat completion needs a 'messages' list")
        try:
            forwarded = {**body, "messages": await self.compress(body)}
        except Exception as e:  # noqa: BLE001 - never worse than no proxy
            self.stats["fallbacks"] += 1
            log.warning("compression failed (%s: %s); forwarding as is", type(e).__name__, e)
            forwarded = body
        return await self._forward("/chat/completions", forwarded, request)

    async def _forward(self, path: str, body: dict, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization",)}
        if body.get("stream"):
            req = self.client.build_request("POST", path, json=body, headers=headers)
            try:
                upstream = await self.client.send(req, stream=True)
            except httpx.HTTPError as e:
                return openai_error(502, f"agent server unreachable: {e}", type_="upstream_error")

            async def relay():
                try:
                    async for chunk in upstream.aiter_raw():
                        yield chunk
                finally:
                    await upstream.aclose()

            return StreamingResponse(
                relay(),
                status_code=upstream.status_code,
                media_type=upstream.headers.get("content-type", "text/event-stream"),
            )
        try:
            r = await self.client.post(path, json=body, headers=headers)
        except httpx.HTTPError as e:
            return openai_error(502, f"agent server unreachable: {e}", type_="upstream_error")
        return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))

    async def passthrough(self, request: Request, path: str) -> Response:
        if request.method == "GET":
            try:
                r = await self.client.get(path)
            except httpx.HTTPError as e:
                return openai_error(502, f"agent server unreachable: {e}", type_="upstream_error")
            return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return openai_error(400, "request body is not valid JSON")
        return await self._forward(path, body, request)


def create_proxy_app(cfg: ProxyConfig, memory: MemoryModel) -> FastAPI:
    proxy = CoMemProxy(cfg, memory)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await proxy.aclose()

    app = FastAPI(title="tenfold comem proxy", lifespan=lifespan)
    app.state.proxy = proxy

    @app.get("/health")
    async def health():
        return {"status": "ok", **proxy.stats, "sessions": len(proxy.sessions)}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await proxy.chat(request)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await proxy.passthrough(request, "/completions")

    @app.get("/v1/models")
    async def models(request: Request):
        return await proxy.passthrough(request, "/models")

    return app

"""`tenfold comem proxy`: CoMem as an OpenAI-compatible proxy any agent framework can point at.

The client keeps sending its whole conversation, as agent frameworks do. The proxy recognises a
conversation by its leading messages: a request continues the conversation whose previous request is
its longest prefix (model name included), so parallel sessions with the same system prompt and task
stay apart. It counts the conversation's turns, runs the memory model in the background every R turns
(the k-step-off schedule of `runtime.py`), and forwards to the agent server the head + latest summary
+ the raw turns since that summary's cut-off. Responses, streaming included, pass through unchanged.

Failure is never worse than no proxy: if the memory server is down, hung (`memory_timeout`) or errors,
if a conversation's earlier turns were edited (so the summary no longer describes them), or if anything
else goes wrong while compressing, the request is forwarded with the full history. Once a memory call
has failed, pending summaries are adopted when they finish but never waited for, until one succeeds:
a hung memory server costs one turn at most `memory_timeout`, not one such wait every R turns.

Every error the proxy itself answers is in the OpenAI shape: 400 for a malformed request (invalid
UTF-8, lone surrogates, deep nesting, NaN; `core.http.parse_json_body`), 502 when the agent server is
unreachable or fails, 504 when it does not answer within `agent_timeout`, 500 for a bug. An agent
that fails mid-stream ends the stream with an error event and `data: [DONE]`. `/health` probes both
upstreams: 200 "ok", 200 "degraded" (memory down: full histories), 503 "unavailable" (agent down).
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
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tenfold.comem.context import agent_view, body_before, memory_view, split_head, turn_starts
from tenfold.comem.runtime import MEMORY_INPUTS, NO_SUMMARY, MemoryModel
from tenfold.core.errors import TenfoldError
from tenfold.core.http import (
    APIError,
    Guard,
    error_body,
    install_openai_errors,
    openai_error,
    parse_json_body,
    read_body,
    sse_error,
)

log = logging.getLogger("tenfold.comem.proxy")

# /health answers within ~1.5 s even when an upstream hangs: below the 2 s that ServerProcess (and
# most load balancers) give a health check, above a busy server's time to list its models.
HEALTH_PROBE_TIMEOUT = 1.5
AGENT_CONNECT_TIMEOUT = 10.0  # a server that takes longer to accept a connection is not coming


@dataclass
class ProxyConfig:
    agent_url: str  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8001/v1
    interval: int = 4  # R
    k: int = 1
    max_sessions: int = 1024
    # A summary not back within memory_timeout seconds (connect + answer) is abandoned and the turn goes
    # on with the full history. 15 s, not minutes: a summary of <= 96 tokens (--memory-max-tokens) from
    # a served model takes a few seconds even after a long prefill, so a call still running at 15 s is a
    # hung or overloaded server, and an interactive turn should not wait longer on it: the fallback only
    # costs a longer agent prompt. Raise it for long summaries (the paper allows 2,048 tokens).
    memory_timeout: float = 15.0
    memory_input: str = "incremental"  # or "history" (every raw turn, the paper); see runtime.py
    # The agent may take long to answer (a long non-streamed completion on a busy server), so this is
    # generous: the longest wait for its first byte, or between two streamed bytes. Then 504.
    agent_timeout: float = 600.0
    memory_url: str | None = None  # probed by /health; an in-process memory model has none
    # In front of the proxy, as in front of `tenfold serve` (core.http.Guard): bodies must be JSON and at
    # most this large (a whole agent conversation; 32 MiB is far beyond any context here), and Host
    # headers must name one of `allowed_hosts` when set (the CLI sets loopback when bound to loopback):
    # the proxy re-sends what it gets as JSON, so without these a web page could reach the agent through it.
    max_body_bytes: int = 32 * 2**20
    allowed_hosts: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.memory_input not in MEMORY_INPUTS:
            raise TenfoldError(f"memory_input must be one of {MEMORY_INPUTS}, got {self.memory_input!r}")
        if (
            self.interval < 1
            or self.k < 1
            or self.max_sessions < 1
            or not self.memory_timeout > 0
            or not self.agent_timeout > 0
            or self.max_body_bytes < 1
        ):
            raise TenfoldError(
                "interval, k, max_sessions and max_body_bytes must be >= 1 and memory_timeout, agent_timeout "
                f"> 0; got {self.interval}, {self.k}, {self.max_sessions}, {self.max_body_bytes}, "
                f"{self.memory_timeout}, {self.agent_timeout}"
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


def _is_timeout(exc: BaseException) -> bool:
    from openai import APITimeoutError

    return isinstance(exc, (TimeoutError, httpx.TimeoutException, APITimeoutError))


def _event_end(buf: bytes) -> int:
    """Where the last complete server-sent event in `buf` ends (0: none yet)."""
    return max(
        (i + len(sep) for sep in (b"\n\n", b"\r\n\r\n", b"\r\r") if (i := buf.rfind(sep)) >= 0), default=0
    )


class CoMemProxy:
    def __init__(self, cfg: ProxyConfig, memory: MemoryModel):
        self.cfg, self.memory = cfg, memory
        self.sessions: OrderedDict[tuple[int, str], _Session] = (
            OrderedDict()
        )  # (length, digest) of last request
        self.stats = {
            "requests": 0,
            "compressed": 0,
            "memory_calls": 0,
            "memory_errors": 0,  # failed memory calls, timeouts included
            "memory_timeouts": 0,
            "fallbacks": 0,  # requests sent uncompressed because of a failure or an edited history
            "agent_errors": 0,  # agent unreachable, timed out, or failed mid-response
        }
        self.memory_ok = True  # the last memory call succeeded (or there was none yet)
        timeout = httpx.Timeout(cfg.agent_timeout, connect=min(AGENT_CONNECT_TIMEOUT, cfg.agent_timeout))
        self.client = httpx.AsyncClient(base_url=cfg.agent_url.rstrip("/"), timeout=timeout)
        # a fresh connection per probe: a kept-alive one can outlive a server that accepts no new ones
        self.probe = httpx.AsyncClient(
            timeout=HEALTH_PROBE_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0)
        )

    async def aclose(self) -> None:
        """Cancel pending summaries and close the clients (on the proxy's own event loop)."""
        for s in self.sessions.values():
            if s.job is not None:
                s.job.cancel()
        await self.client.aclose()
        await self.probe.aclose()
        backend = getattr(self.memory, "backend", None)
        if backend is not None and hasattr(backend, "aclose"):
            await backend.aclose()

    # compression -------------------------------------------------------------------------------------
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
        except Exception as e:  # noqa: BLE001 - the conversation goes on with the full history
            self.stats["memory_errors"] += 1
            self.memory_ok = False
            if _is_timeout(e):
                self.stats["memory_timeouts"] += 1
                log.warning("memory model timed out (%g s); forwarding full history", self.cfg.memory_timeout)
            else:
                log.warning("memory model failed (%s: %s); forwarding full history", type(e).__name__, e)
            return None, 0, ""
        self.memory_ok = True
        return text, cut, covered

    async def compress(self, body: dict) -> list[dict]:
        """The message list to forward for this request (the original one on any problem)."""
        messages = body["messages"]
        head, rest = split_head(messages)
        s = self._session(body.get("model"), messages, len(head))
        t = max(0, len(turn_starts(rest)) - 1)  # the turn being answered
        missed = False  # a summary this turn should have had failed or is late
        if s.job is not None:
            due = t - s.job_step >= self.cfg.k or t < s.job_step
            if due and not s.job.done() and self.memory_ok:
                # bounded: the job gives up after memory_timeout. asyncio.wait, not await: a client
                # that goes away must not cancel the summary its conversation shares.
                await asyncio.wait({s.job})
            if s.job.done():
                got = None if s.job.cancelled() else s.job.result()
                s.job = None
                if got is not None and got[0] is not None:
                    s.summary, s.cut, s.covered = got
                else:
                    missed = True
            else:
                missed = due  # the memory server is failing: go on without waiting
        if t > 0 and t % self.cfg.interval == 0 and s.job is None:
            s.job, s.job_step = asyncio.create_task(self._summarize(s, messages, t)), t
        if s.summary is None or s.cut <= 0 or s.cut > t:
            self.stats["fallbacks"] += missed
            return messages
        if _digest(body_before(rest, s.cut)) != s.covered:  # history edited or branched
            self.stats["fallbacks"] += 1
            s.summary, s.cut = None, 0
            return messages
        self.stats["compressed"] += 1
        return agent_view(messages, s.summary, s.cut)

    # requests ----------------------------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        self.stats["requests"] += 1
        body = parse_json_body(await read_body(request, self.cfg.max_body_bytes))
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise APIError(400, "a chat completion needs a 'messages' list of objects", param="messages")
        try:
            forwarded = {**body, "messages": await self.compress(body)}
        except Exception as e:  # noqa: BLE001 - never worse than no proxy
            self.stats["fallbacks"] += 1
            log.warning("compression failed (%s: %s); forwarding as is", type(e).__name__, e)
            forwarded = body
        return await self._forward("/chat/completions", forwarded, request)

    async def passthrough(self, request: Request, path: str) -> Response:
        if request.method == "GET":
            try:
                r = await self.client.get(path, headers=self._headers(request))
            except httpx.HTTPError as e:
                return self._agent_failed(e)
            return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))
        raw = await read_body(request, self.cfg.max_body_bytes)
        return await self._forward(path, parse_json_body(raw), request)

    @staticmethod
    def _headers(request: Request) -> dict:
        return {k: v for k, v in request.headers.items() if k.lower() in ("authorization",)}

    def _agent_failed(self, e: httpx.HTTPError) -> Response:
        self.stats["agent_errors"] += 1
        if isinstance(e, httpx.TimeoutException):
            message = (
                f"agent server timed out ({type(e).__name__}, agent_timeout {self.cfg.agent_timeout:g} s)"
            )
            return openai_error(504, message, type_="upstream_error")
        if isinstance(e, httpx.ConnectError):
            return openai_error(502, f"agent server unreachable: {e}", type_="upstream_error")
        return openai_error(502, f"agent server failed: {type(e).__name__}: {e}", type_="upstream_error")

    async def _forward(self, path: str, body: dict, request: Request) -> Response:
        req = self.client.build_request("POST", path, json=body, headers=self._headers(request))
        try:
            upstream = await self.client.send(req, stream=True)
        except httpx.HTTPError as e:
            return self._agent_failed(e)
        ctype = upstream.headers.get("content-type")
        if not body.get("stream"):
            try:
                content = await upstream.aread()
            except httpx.HTTPError as e:
                return self._agent_failed(e)
            finally:
                await upstream.aclose()
            return Response(content, status_code=upstream.status_code, media_type=ctype)
        return StreamingResponse(
            self._relay(upstream), status_code=upstream.status_code, media_type=ctype or "text/event-stream"
        )

    async def _relay(self, upstream: httpx.Response):
        """The agent's stream, event by event. If the agent fails mid-stream, a half-sent event is
        dropped and the stream ends with an error event and [DONE], as `tenfold serve` ends it."""
        sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
        pending = b""
        try:
            async for chunk in upstream.aiter_bytes():
                if not sse:
                    yield chunk
                    continue
                pending += chunk
                if end := _event_end(pending):
                    yield pending[:end]
                    pending = pending[end:]
            if pending:
                yield pending
        except httpx.HTTPError as e:
            self.stats["agent_errors"] += 1
            log.warning("agent server failed mid-stream (%s: %s)", type(e).__name__, e)
            if not sse:
                raise  # the client sees a cut response, not a complete-looking truncated one
            message = f"agent server failed mid-stream: {type(e).__name__}: {e}"
            yield (sse_error(message, "upstream_error") + "data: [DONE]\n\n").encode()
        finally:
            await upstream.aclose()

    # health ------------------------------------------------------------------------------------------
    async def _probe(self, url: str) -> dict:
        """Whether an OpenAI-compatible server answers GET /models (any answer below 500: a 401 is a
        server that is up and wants a key)."""
        try:
            r = await self.probe.get(url.rstrip("/") + "/models")
        except httpx.HTTPError as e:
            return {"url": url, "ok": False, "error": f"{type(e).__name__}: {e}".rstrip(": ")}
        ok = r.status_code < 500
        return {"url": url, "ok": ok, "error": None if ok else f"HTTP {r.status_code}"}

    async def _no_probe(self) -> dict:
        return {"url": None, "ok": True, "error": None}  # an in-process memory model

    async def health(self) -> JSONResponse:
        memory_url = self.cfg.memory_url
        agent, memory = await asyncio.gather(
            self._probe(self.cfg.agent_url), self._probe(memory_url) if memory_url else self._no_probe()
        )
        if memory["ok"] and not self.memory_ok:
            memory = {**memory, "ok": False, "error": "the last summary failed or timed out"}
        out = {"upstreams": {"agent": agent, "memory": memory}, **self.stats, "sessions": len(self.sessions)}
        if not agent["ok"]:
            message = f"agent server {agent['url']} is down: {agent['error']}"
            return JSONResponse(
                {"status": "unavailable", **error_body(message, "upstream_error"), **out}, status_code=503
            )
        return JSONResponse({"status": "ok" if memory["ok"] else "degraded", **out})


def create_proxy_app(cfg: ProxyConfig, memory: MemoryModel) -> FastAPI:
    proxy = CoMemProxy(cfg, memory)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await proxy.aclose()

    app = FastAPI(title="tenfold comem proxy", lifespan=lifespan)
    app.state.proxy = proxy
    # JSON bodies only, size-limited, Host checked; an unexpected exception is a 500 in the OpenAI shape
    # that keeps the client's connection
    app.add_middleware(Guard, allowed_hosts=cfg.allowed_hosts, max_body_bytes=cfg.max_body_bytes)
    install_openai_errors(app)

    @app.get("/health")
    async def health():
        return await proxy.health()

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

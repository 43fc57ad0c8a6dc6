"""`tenfold serve`: an OpenAI-compatible HTTP server over a local model, with continuous batching.

Endpoints: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions (both with
SSE streaming). Concurrent requests are decoded together by one `Engine`. Every bad request gets a
4xx JSON body in the OpenAI error shape {"error": {"message", "type", "param", "code"}}; an
unexpected failure gets a 500 in the same shape and the server keeps running.

Extensions beyond the OpenAI API (as in vLLM): `ignore_eos` (decode exactly max_tokens tokens).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tenfold.core.engine import Engine, Handle
from tenfold.core.errors import ContextLengthError, TenfoldError
from tenfold.core.models import context_length
from tenfold.core.sampler import Prefill, SamplingParams, encode_prompt


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_="invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_


def _error(status: int, message: str, param=None, code=None, type_="invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: dict | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(
        None, ge=-(2**63), lt=2**63
    )  # what torch generators accept (n > 1 adds the choice index)
    ignore_eos: bool = False


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = 16  # the OpenAI default for completions
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=0)  # only 0 supported


def _include_usage(req: _Common) -> bool:
    return bool(req.stream_options and req.stream_options.get("include_usage"))


def create_app(
    model,
    tokenizer,
    served_name: str,
    max_batch: int = 64,
    prefill: Prefill | None = None,
    stream_interval: float = 0.0,
) -> FastAPI:
    """The FastAPI app; its `Engine` starts with the app and stops at shutdown.

    `prefill` is an optional plug-in that fills prompts' KV caches itself (see `sampler.Prefill`), e.g.
    from a prefix KV store. `stream_interval`: see `Engine` (streamed text is sent at most this often).
    """
    engine = Engine(model, tokenizer, max_batch=max_batch, prefill=prefill, stream_interval=stream_interval)
    ctx = context_length(model)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="tenfold", version="0.1.0", lifespan=lifespan)
    app.state.engine = engine

    # errors: always the OpenAI shape ---------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError):
        return _error(exc.status, exc.message, exc.param, exc.code, exc.type)

    @app.exception_handler(TenfoldError)
    async def _tenfold_error(_: Request, exc: TenfoldError):
        code = "context_length_exceeded" if isinstance(exc, ContextLengthError) else None
        return _error(400, str(exc), code=code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return _error(400, _validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), code=str(exc.status_code))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        return _error(500, f"internal error: {type(exc).__name__}: {exc}", type_="server_error")

    # endpoints -------------------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        stats = engine.stats
        return {
            "status": "ok",
            "model": served_name,
            **{k: stats[k] for k in ("running", "waiting", "aborted", "steps")},
        }

    @app.get("/v1/models")
    async def models():
        card = {
            "id": served_name,
            "object": "model",
            "created": 0,
            "owned_by": "tenfold",
            "max_model_len": ctx,
        }
        return {"object": "list", "data": [card]}

    async def parse(request: Request, cls: type[BaseModel]):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise APIError(400, f"request body must be a JSON object, got {type(body).__name__}")
        body = {k: v for k, v in body.items() if v is not None}  # OpenAI clients send null for "default"
        try:
            req = cls.model_validate(body)
        except ValidationError as exc:
            raise APIError(400, _validation_message(exc.errors())) from exc
        if req.model != served_name:
            raise APIError(
                404,
                f"The model `{req.model}` does not exist; this server serves `{served_name}`.",
                "model",
                "model_not_found",
            )
        return req

    def sampling(req: _Common, prompt_len: int, max_tokens: int | None, i: int) -> SamplingParams:
        if prompt_len >= ctx:
            raise APIError(
                400,
                f"This model's maximum context length is {ctx} tokens. However, your prompt has {prompt_len} "
                f"tokens, which leaves no room for a completion.",
                "messages" if isinstance(req, ChatRequest) else "prompt",
                "context_length_exceeded",
            )
        if max_tokens is None:
            max_tokens = ctx - prompt_len
        if max_tokens < 1:
            raise APIError(400, f"max_tokens must be at least 1, got {max_tokens}", "max_tokens")
        if prompt_len + max_tokens > ctx:
            raise APIError(
                400,
                f"This model's maximum context length is {ctx} tokens. However, you requested {prompt_len + max_tokens} "
                f"tokens ({prompt_len} in the prompt, {max_tokens} for the completion).",
                "max_tokens",
                "context_length_exceeded",
            )
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        # unseeded requests get fresh OS entropy (torch's default generator would repeat across restarts)
        seed = secrets.randbits(62) if req.seed is None else req.seed + i
        return SamplingParams(
            max_tokens, req.temperature, req.top_p, tuple(stop), seed=seed, ignore_eos=req.ignore_eos
        )

    def submit_all(req: _Common, prompts: list[list[int]], max_tokens: int | None) -> list[Handle]:
        params = [
            sampling(req, len(p), max_tokens, k) for p in prompts for k in range(req.n)
        ]  # validate all first
        ids = [p for p in prompts for _ in range(req.n)]
        handles: list[Handle] = []
        try:
            for i, (p, sp) in enumerate(zip(ids, params, strict=True)):
                handles.append(engine.submit(p, sp, index=i, stream=req.stream))
        except TenfoldError:
            engine.cancel(handles)  # one bad prompt rejects the whole request
            raise
        return handles

    def token_strings(ids: list[int]) -> list[str]:
        return [tokenizer.decode([t], skip_special_tokens=False) for t in ids]

    @app.post("/v1/completions")
    async def completions(request: Request):
        req: CompletionRequest = await parse(request, CompletionRequest)
        prompts = _prompt_list(req.prompt, tokenizer)
        handles = submit_all(req, prompts, req.max_tokens)
        rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": created, "model": served_name}
        echo = [tokenizer.decode(p) if req.echo else "" for p in prompts for _ in range(req.n)]

        if req.stream:

            def chunk(i, delta, finish):
                return {
                    **head,
                    "choices": [{"index": i, "text": delta, "logprobs": None, "finish_reason": finish}],
                }

            return _sse(handles, chunk, head, _include_usage(req), req.n, echo)

        gens = await _gather(handles)
        choices = []
        for i, g in enumerate(gens):
            lp = None
            if req.logprobs is not None:
                lp = {
                    "tokens": token_strings(g.token_ids),
                    "token_logprobs": g.logprobs,
                    "top_logprobs": None,
                    "text_offset": None,
                }
            choices.append(
                {"index": i, "text": echo[i] + g.text, "logprobs": lp, "finish_reason": g.finish_reason}
            )
        return {**head, "choices": choices, "usage": _usage(handles, gens, req.n)}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req: ChatRequest = await parse(request, ChatRequest)
        msgs = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.content}
            for m in req.messages
        ]
        prompt = tokenizer.apply_chat_template(msgs, add_generation_prompt=True)
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        handles = submit_all(req, [prompt], max_tokens)
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "chat.completion", "created": created, "model": served_name}

        if req.stream:
            chead = {**head, "object": "chat.completion.chunk"}

            def chunk(i, delta, finish):
                d = {"content": delta} if finish is None else {}
                return {
                    **chead,
                    "choices": [{"index": i, "delta": d, "logprobs": None, "finish_reason": finish}],
                }

            first = [
                {
                    **chead,
                    "choices": [
                        {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    ],
                }
                for i in range(len(handles))
            ]
            return _sse(handles, chunk, chead, _include_usage(req), req.n, None, first)

        gens = await _gather(handles)
        choices = []
        for i, g in enumerate(gens):
            lp = None
            if req.logprobs:
                toks = token_strings(g.token_ids)
                lp = {
                    "content": [
                        {
                            "token": t,
                            "logprob": v,
                            "bytes": list(tokenizer.token_bytes(tid)),
                            "top_logprobs": [],
                        }
                        for t, tid, v in zip(toks, g.token_ids, g.logprobs, strict=True)
                    ]
                }
            msg = {"role": "assistant", "content": g.text}
            choices.append({"index": i, "message": msg, "logprobs": lp, "finish_reason": g.finish_reason})
        return {**head, "choices": choices, "usage": _usage(handles, gens, req.n)}

    return app


def _validation_message(errors) -> str:
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "invalid request: " + "; ".join(parts)


def _prompt_list(prompt, tokenizer) -> list[list[int]]:
    """OpenAI allows a string, a list of strings, a token list, or a list of token lists."""
    if isinstance(prompt, str):
        return [encode_prompt(tokenizer, prompt)]
    if not prompt:
        raise APIError(400, "prompt is empty", "prompt")
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]
    return [encode_prompt(tokenizer, p) for p in prompt]


def _usage(handles: list[Handle], gens, n: int) -> dict:
    """Token usage; like OpenAI, a prompt shared by `n` choices counts once (handles are prompt-major)."""
    p = sum(len(h.seq.prompt_ids) for h in handles[::n])
    c = sum(len(g.token_ids) for g in gens)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


async def _gather(handles: list[Handle]):
    try:
        return await asyncio.gather(*(h.result() for h in handles))
    except asyncio.CancelledError:  # client disconnected
        for h in handles:
            h.cancelled = True
        raise


def _sse(handles, chunk, head, include_usage: bool, n: int, echo=None, first=None) -> StreamingResponse:
    """Stream every handle's deltas as server-sent events, interleaved as they come."""

    async def events() -> AsyncIterator[str]:
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(i: int, h: Handle):
            try:
                async for delta in h.stream():
                    await queue.put((i, delta, None))
                await queue.put((i, "", h.generation))
            except Exception as exc:  # noqa: BLE001 - reported in-band below
                await queue.put((i, None, exc))

        tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(handles)]
        try:
            for ev in first or ():
                yield f"data: {json.dumps(ev)}\n\n"
            for i, text in enumerate(echo or ()):
                if text:
                    yield f"data: {json.dumps(chunk(i, text, None))}\n\n"
            left, gens = len(handles), [None] * len(handles)
            while left:
                i, delta, extra = await queue.get()
                if delta is None:  # an error after the stream began: report it in-band
                    err = {
                        "error": {
                            "message": f"generation failed: {extra}",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                    yield f"data: {json.dumps(err)}\n\n"
                    left -= 1
                elif extra is not None:
                    gens[i] = extra
                    yield f"data: {json.dumps(chunk(i, delta, extra.finish_reason))}\n\n"
                    left -= 1
                elif delta:
                    yield f"data: {json.dumps(chunk(i, delta, None))}\n\n"
            if include_usage and all(g is not None for g in gens):
                yield f"data: {json.dumps({**head, 'choices': [], 'usage': _usage(handles, gens, n)})}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # the client may have gone away: free the decode slots
            for h in handles:
                h.cancelled = True
            for t in tasks:
                t.cancel()

    return StreamingResponse(events(), media_type="text/event-stream")


class ServerThread:
    """Run the app with uvicorn on a loopback port in a background thread (benchmarks, notebooks).

    `with ServerThread(app) as srv: srv.base_url` -> "http://127.0.0.1:PORT/v1".
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        sock = self.server.servers[0].sockets[0]
        self.host, self.port = sock.getsockname()[:2]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    max_batch: int = 64,
    served_name: str | None = None,
    make_prefill: Callable | None = None,
    stream_interval: float = 0.0,
) -> None:
    """Load `model` (preset or local checkpoint) and serve it until interrupted.

    `make_prefill(model)`, when given, builds the engine's prefill plug-in once the model is loaded.
    """
    import uvicorn

    from tenfold.core.models import load_model, model_name

    lm, tok = load_model(model, device)
    prefill = make_prefill(lm) if make_prefill is not None else None
    app = create_app(
        lm,
        tok,
        served_name or model_name(model),
        max_batch=max_batch,
        prefill=prefill,
        stream_interval=stream_interval,
    )
    uvicorn.run(app, host=host, port=port, log_level="info")


class ServerProcess:
    """`tenfold serve` in a subprocess (one torch thread), optionally pinned to one CPU core.

    `with ServerProcess("tiny", "--prefix-cache-gb", "1", cpu=0) as srv: srv.base_url`. The server's
    log goes to a file (a chatty server never blocks on a full pipe); it is shown if the server dies.
    `command` runs another `tenfold` sub-command that takes `--port` and answers `/health` instead
    (e.g. `command=("comem", "proxy", "--agent-url", url, ...)`); `model` is then ignored.
    """

    def __init__(
        self,
        model: str | None,
        *args: str,
        cpu: int | None = None,
        startup_timeout: float = 120.0,
        command: Sequence[str] | None = None,
    ):
        self.model, self.args, self.cpu, self.startup_timeout = model, args, cpu, startup_timeout
        self.command = tuple(command) if command is not None else None

    def __enter__(self) -> ServerProcess:
        import os
        import socket
        import subprocess
        import sys
        import tempfile

        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        with tempfile.NamedTemporaryFile(prefix="tenfold-serve-", suffix=".log", delete=False) as f:
            self.log_path = f.name
        sub = self.command or ("serve", "--model", str(self.model), "--threads", "1")
        cmd = [sys.executable, "-m", "tenfold", *sub, "--port", str(self.port), *self.args]
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        pin = self.cpu is not None and len(cpus) > 1
        core = sorted(cpus)[self.cpu % len(cpus)] if pin else None
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
                preexec_fn=(lambda: os.sched_setaffinity(0, {core})) if pin else None,
            )
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise TenfoldError(f"{self._name} exited ({self.proc.returncode}): {self._log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise TenfoldError(
                    f"{self._name} not healthy after {self.startup_timeout:.0f} s: {self._log_tail()}"
                )
            time.sleep(0.1)

    @property
    def _name(self) -> str:
        return "tenfold " + " ".join(self.command[:2] if self.command else ("serve",))

    def _log_tail(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def __exit__(self, *exc) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

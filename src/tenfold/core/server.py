"""`tenfold serve`: an OpenAI-compatible HTTP server over a local model, with continuous batching.

Endpoints: GET /health, GET /metrics (Prometheus text), GET /v1/models, POST /v1/completions, POST
/v1/chat/completions (both with SSE streaming). Concurrent requests are decoded together by one
`Engine`. Request bodies are typed (`openai_schema`) and published in /openapi.json.

One request never hurts another: bad input is a 4xx in the OpenAI error shape {"error": {"message",
"type", "param", "code"}} and an unexpected failure a 500 in that shape, for that request only; a
sequence that fails inside the engine fails alone. Work is bounded per request (`ServerConfig`): body
size, sequences per request (prompts x n), a default `max_tokens` for chat. A request whose client
disconnects stops decoding at the next step, streamed or not. Tokenising runs off the event loop, so
`/health` answers while a large prompt is prepared. Access: `api_key` (Bearer, as vLLM), POST bodies
must be `application/json`, and a server bound to loopback only answers Host headers naming loopback.

Extensions beyond the OpenAI API (as in vLLM): `ignore_eos` (decode exactly max_tokens tokens).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from tenfold.core.engine import Engine, Handle
from tenfold.core.errors import ContextLengthError, TenfoldError
from tenfold.core.http import (
    LOOPBACK_HOSTS,
    APIError,
    Guard,
    error_body,
    install_openai_errors,
    openai_error,
    parse_json_body,
    read_body,
)
from tenfold.core.models import context_length
from tenfold.core.openai_schema import ChatRequest, CompletionRequest, _Common
from tenfold.core.sampler import Prefill, SamplingParams, encode_prompt


@dataclass
class ServerConfig:
    """Limits and access control of `tenfold serve` (CLI flags of the same names)."""

    api_key: str | None = None  # /v1/* needs `Authorization: Bearer <key>`
    allowed_hosts: tuple[str, ...] | None = None  # Host headers answered; None: any (serve() sets loopback)
    max_body_bytes: int = 8 * 2**20  # a 32K-token prompt is ~0.3 MB of JSON even as token ids
    max_seqs_per_request: int = 256  # prompts x n
    default_max_tokens: int = 1024  # chat without max_tokens: this or what the context leaves, if less
    shutdown_timeout: float = 10.0  # SIGTERM: running requests get this long, then are cut

    def __post_init__(self):
        if self.api_key is not None and not self.api_key:
            raise TenfoldError("api_key must not be empty (leave it unset for no key)")
        for name in ("max_body_bytes", "max_seqs_per_request", "default_max_tokens"):
            if getattr(self, name) < 1:
                raise TenfoldError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.shutdown_timeout < 0:
            raise TenfoldError(f"shutdown_timeout must be >= 0 seconds, got {self.shutdown_timeout}")


class Metrics:
    """Counters for `/metrics` (Prometheus text format), updated on the event loop."""

    def __init__(self):
        self.responses: Counter[tuple[str, int]] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.disconnects = 0

    def on_response(self, path: str, status: int) -> None:
        known = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")
        self.responses[(path if path in known else "other", status)] += 1

    def render(self, engine: Engine, extra: dict[str, float]) -> str:
        lines = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.extend([f"# HELP tenfold_{name} {help_}", f"# TYPE tenfold_{name} {kind}"])
            lines.extend(f"tenfold_{name}{labels} {value:g}" for labels, value in samples)

        metric(
            "http_responses_total",
            "counter",
            "HTTP responses by path and status (499: the client left first)",
            [(f'{{path="{p}",status="{s}"}}', n) for (p, s), n in sorted(self.responses.items())],
        )
        errors = sum(n for (_, s), n in self.responses.items() if s >= 500)
        metric("http_server_errors_total", "counter", "5xx responses", [("", errors)])
        metric(
            "prompt_tokens_total", "counter", "prompt tokens of accepted requests", [("", self.prompt_tokens)]
        )
        metric("generation_tokens_total", "counter", "tokens generated", [("", engine.stats["tokens"])])
        metric(
            "requests_disconnected_total",
            "counter",
            "non-streamed requests whose client left first",
            [("", self.disconnects)],
        )
        stats = engine.stats
        metric("sequences_running", "gauge", "sequences in the decode batch", [("", stats["running"])])
        metric("sequences_waiting", "gauge", "sequences queued for the batch", [("", stats["waiting"])])
        metric(
            "sequences_aborted_total", "counter", "sequences stopped (client gone)", [("", stats["aborted"])]
        )
        metric("sequences_failed_total", "counter", "sequences ended by an error", [("", stats["failed"])])
        metric("engine_steps_total", "counter", "decode steps", [("", stats["steps"])])
        for name, value in sorted(extra.items()):
            metric(
                name,
                "gauge" if not name.endswith("_total") else "counter",
                name.replace("_", " "),
                [("", value)],
            )
        return "\n".join(lines) + "\n"


class _ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def create_app(
    model,
    tokenizer,
    served_name: str,
    max_batch: int = 64,
    prefill: Prefill | None = None,
    stream_interval: float = 0.0,
    config: ServerConfig | None = None,
) -> FastAPI:
    """The FastAPI app; its `Engine` starts with the app and stops at shutdown.

    `prefill` is an optional plug-in that fills prompts' KV caches itself (see `sampler.Prefill`), e.g.
    from a prefix KV store; if it has a `metrics()` method (name -> number), those go to /metrics.
    `stream_interval`: see `Engine` (streamed text is sent at most this often). `config`: limits and
    access control (`ServerConfig`).
    """
    cfg = config or ServerConfig()
    engine = Engine(model, tokenizer, max_batch=max_batch, prefill=prefill, stream_interval=stream_interval)
    ctx, vocab = context_length(model), model.config.vocab_size
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="tenfold", version="0.1.0", lifespan=lifespan)
    app.state.engine, app.state.metrics = engine, metrics
    app.add_middleware(
        Guard,
        api_key=cfg.api_key,
        allowed_hosts=cfg.allowed_hosts,
        max_body_bytes=cfg.max_body_bytes,
        on_response=metrics.on_response,
    )

    # errors: always the OpenAI shape (unexpected ones: see Guard) -------------------------------------
    install_openai_errors(app)

    @app.exception_handler(TenfoldError)
    async def _tenfold_error(_: Request, exc: TenfoldError):
        code = "context_length_exceeded" if isinstance(exc, ContextLengthError) else None
        return openai_error(400, str(exc), code=code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return openai_error(400, _validation_message(exc.errors()))

    @app.exception_handler(_ClientGone)
    async def _gone(_: Request, exc: _ClientGone):
        metrics.disconnects += 1
        return Response(status_code=499)  # nobody reads it; the status is for the access log and metrics

    # endpoints -------------------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        stats = engine.stats
        return {
            "status": "ok",
            "model": served_name,
            **{k: stats[k] for k in ("running", "waiting", "aborted", "failed", "steps")},
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus():
        extra = {}
        if callable(getattr(prefill, "metrics", None)):
            extra = {f"prefill_{k}": float(v) for k, v in prefill.metrics().items()}
        return PlainTextResponse(metrics.render(engine, extra), media_type="text/plain; version=0.0.4")

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
        raw = await read_body(request, cfg.max_body_bytes)
        body = parse_json_body(raw) if len(raw) < 2**16 else await asyncio.to_thread(parse_json_body, raw)
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
        req.check_supported()
        return req

    def sampling(req: _Common, prompt_len: int, max_tokens: int | None, i: int, top: int) -> SamplingParams:
        if prompt_len >= ctx:
            raise APIError(
                400,
                f"This model's maximum context length is {ctx} tokens. However, your prompt has {prompt_len} "
                f"tokens, which leaves no room for a completion.",
                "messages" if isinstance(req, ChatRequest) else "prompt",
                "context_length_exceeded",
            )
        if max_tokens is None:  # bounded: a forgotten max_tokens must not mean the whole context
            max_tokens = min(cfg.default_max_tokens, ctx - prompt_len)
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
            max_tokens,
            req.temperature,
            req.top_p,
            tuple(stop),
            seed=seed,
            ignore_eos=req.ignore_eos,
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            logit_bias=req.bias_ids(vocab),
            top_logprobs=top,
        )

    def check_size(req: _Common, prompts: int) -> None:
        if prompts * req.n > cfg.max_seqs_per_request:
            raise APIError(
                400,
                f"this request asks for {prompts} prompts x n={req.n} = {prompts * req.n} sequences; "
                f"this server takes at most {cfg.max_seqs_per_request} per request",
                "n" if prompts == 1 else "prompt",
            )

    def submit_all(req: _Common, prompts: list[list[int]], max_tokens: int | None, top: int) -> list[Handle]:
        params = [sampling(req, len(p), max_tokens, k, top) for p in prompts for k in range(req.n)]
        ids = [p for p in prompts for _ in range(req.n)]
        handles: list[Handle] = []
        try:
            for i, (p, sp) in enumerate(zip(ids, params, strict=True)):
                handles.append(engine.submit(p, sp, index=i, stream=req.stream))
        except TenfoldError:
            engine.cancel(handles)  # one bad prompt rejects the whole request
            raise
        metrics.prompt_tokens += sum(len(p) for p in prompts)
        return handles

    async def answer(request: Request, handles: list[Handle]):
        """Every handle's result; stops their decoding if the client disconnects first."""
        results = asyncio.ensure_future(asyncio.gather(*(h.result() for h in handles)))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({results, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not results.done():
            engine.cancel(handles)
            results.cancel()
            raise _ClientGone()
        try:
            gens = results.result()
        except Exception as exc:  # a sequence failed in the engine: this request only
            engine.cancel(handles)
            raise APIError(500, f"generation failed: {exc}", type_="server_error") from exc
        return gens

    def token_string(tid: int) -> str:
        """A token as text; a token that is no text alone (one byte of a UTF-8 character) as its bytes,
        `bytes:\\xe4`, so that distinct tokens stay distinct keys of `top_logprobs`."""
        text = tokenizer.decode([tid], skip_special_tokens=False)
        if "\ufffd" in text:
            return "bytes:" + "".join(f"\\x{b:02x}" for b in tokenizer.token_bytes(tid))
        return text

    def token_strings(ids: list[int]) -> list[str]:
        return [token_string(t) for t in ids]

    @app.post("/v1/completions")
    async def completions(request: Request):
        req: CompletionRequest = await parse(request, CompletionRequest)
        if isinstance(req.prompt, list):
            check_size(req, 1 if req.prompt and isinstance(req.prompt[0], int) else len(req.prompt))
        prompts = await asyncio.to_thread(_prompt_list, req.prompt, tokenizer)
        handles = submit_all(req, prompts, req.max_tokens, req.logprobs or 0)
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

        gens = await answer(request, handles)
        choices = []
        for i, g in enumerate(gens):
            lp = None
            if req.logprobs is not None:
                toks = token_strings(g.token_ids)
                # where each token starts in the returned text (a partial character counts as none)
                offsets = [len(echo[i]) + len(tokenizer.decode(g.token_ids[:k])) for k in range(len(toks))]
                top = None
                if req.logprobs:
                    top = [{token_string(t): v for t, v in step} for step in g.top_logprobs or []]
                lp = {
                    "tokens": toks,
                    "token_logprobs": g.logprobs,
                    "top_logprobs": top,
                    "text_offset": offsets,
                }
            choices.append(
                {"index": i, "text": echo[i] + g.text, "logprobs": lp, "finish_reason": g.finish_reason}
            )
        return {**head, "choices": choices, "usage": _usage(handles, gens, req.n)}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req: ChatRequest = await parse(request, ChatRequest)
        check_size(req, 1)
        msgs = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages
        ]
        prompt = await asyncio.to_thread(tokenizer.apply_chat_template, msgs, True)
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        top = req.top_logprobs or 0 if req.logprobs else 0
        handles = submit_all(req, [prompt], max_tokens, top)
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

        gens = await answer(request, handles)
        choices = []
        for i, g in enumerate(gens):
            lp = None
            if req.logprobs:

                def entry(tid: int, v: float) -> dict:
                    return {
                        "token": tokenizer.decode([tid], skip_special_tokens=False),
                        "logprob": v,
                        "bytes": list(tokenizer.token_bytes(tid)),
                    }

                tops = g.top_logprobs or [[] for _ in g.token_ids]
                lp = {
                    "content": [
                        {**entry(tid, v), "top_logprobs": [entry(t, w) for t, w in alts]}
                        for tid, v, alts in zip(g.token_ids, g.logprobs, tops, strict=True)
                    ]
                }
            msg = {"role": "assistant", "content": g.text}
            choices.append({"index": i, "message": msg, "logprobs": lp, "finish_reason": g.finish_reason})
        return {**head, "choices": choices, "usage": _usage(handles, gens, req.n)}

    _publish_request_schemas(app, {"/v1/completions": CompletionRequest, "/v1/chat/completions": ChatRequest})
    return app


def _publish_request_schemas(app: FastAPI, bodies: dict[str, type[BaseModel]]) -> None:
    """/openapi.json with the typed request bodies (the endpoints parse bodies themselves, strictly)."""

    def build() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for path, model in bodies.items():
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(js.pop("$defs", {}))
                components[model.__name__] = js
                ref = {"$ref": f"#/components/schemas/{model.__name__}"}
                schema["paths"][path]["post"]["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref}},
                }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _include_usage(req: _Common) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


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
                    yield f"data: {json.dumps(error_body(f'generation failed: {extra}', 'server_error'))}\n\n"
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
    config: ServerConfig | None = None,
) -> None:
    """Load `model` (preset or local checkpoint) and serve it until interrupted.

    `make_prefill(model)`, when given, builds the engine's prefill plug-in once the model is loaded.
    Bound to loopback (the default), the server answers only Host headers that name loopback or one of
    `config.allowed_hosts`; bound elsewhere, only `config.allowed_hosts` when given, else any. SIGTERM/SIGINT: no new connections; running requests get
    `config.shutdown_timeout` seconds, then are cut and the process exits.
    """
    import uvicorn

    from tenfold.core.models import load_model, model_name

    cfg = config or ServerConfig()
    if host.strip("[]") in LOOPBACK_HOSTS:  # loopback names always, plus any the user allows
        cfg = replace(cfg, allowed_hosts=(*LOOPBACK_HOSTS, *(cfg.allowed_hosts or ())))
    lm, tok = load_model(model, device)
    prefill = make_prefill(lm) if make_prefill is not None else None
    app = create_app(
        lm,
        tok,
        served_name or model_name(model),
        max_batch=max_batch,
        prefill=prefill,
        stream_interval=stream_interval,
        config=cfg,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=cfg.shutdown_timeout,
    )


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

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

Extensions beyond the OpenAI API: `ignore_eos` (as in vLLM: decode exactly max_tokens tokens), and
`thinking_cutoff` ({"alpha", "eps", "patience", "budget", "cut", "min_position", "end_outside",
"reset_at_tags"}, any subset, or null):
T2PO's thinking intervention (`tenfold.core.thinking`) on this request's sequences only. Each choice of
such a request (and the last streamed chunk of each choice) then carries `"tenfold": {"thinking":
{"cut": "stagnation" | "budget" | null, "cut_at", "ended", "thinking_tokens", "turn_score"}}`; a
sequence the cutoff ended outside thinking has finish_reason "hook".

Layout: this module is the app factory and the endpoints; `server_requests` turns a request into
engine work (typed body, prompt ids, SamplingParams), `server_responses` turns generations into
response bodies and SSE streams, `server_metrics` holds `/metrics`, and `server_harness` runs the app
(`serve`, `ServerThread`, `ServerProcess`, re-exported here).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from tenfold.core.engine import Engine, Handle
from tenfold.core.errors import ContextLengthError, TenfoldError
from tenfold.core.http import APIError, Guard, install_openai_errors, openai_error
from tenfold.core.models import context_length
from tenfold.core.openai_schema import ChatRequest, CompletionRequest, _Common
from tenfold.core.sampler import Prefill
from tenfold.core.server_harness import ServerProcess, ServerThread, serve
from tenfold.core.server_metrics import Metrics
from tenfold.core.server_requests import (
    chat_messages,
    check_size,
    parse_request,
    prompt_list,
    sampling_params,
    thinking_hook,
    validation_message,
)
from tenfold.core.server_responses import (
    chat_choice,
    chat_chunk,
    chat_stream_start,
    completion_choice,
    completion_chunk,
    include_usage,
    response_head,
    sse,
    usage,
)
from tenfold.core.thinking import ThinkingHook

__all__ = ["Metrics", "ServerConfig", "ServerProcess", "ServerThread", "create_app", "serve"]


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
    metrics = Metrics()
    ctx, vocab = context_length(model), model.config.vocab_size
    routes = _Routes(engine, tokenizer, served_name, cfg, metrics, prefill, ctx, vocab)

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
    _install_error_handlers(app, metrics)
    app.get("/health")(routes.health)
    app.get("/metrics", response_class=PlainTextResponse)(routes.prometheus)
    app.get("/v1/models")(routes.models)
    app.post("/v1/completions")(routes.completions)
    app.post("/v1/chat/completions")(routes.chat)
    _publish_request_schemas(app, {"/v1/completions": CompletionRequest, "/v1/chat/completions": ChatRequest})
    return app


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Errors are always in the OpenAI shape (unexpected ones: see `Guard`)."""
    install_openai_errors(app)

    @app.exception_handler(TenfoldError)
    async def _tenfold_error(_: Request, exc: TenfoldError):
        code = "context_length_exceeded" if isinstance(exc, ContextLengthError) else None
        return openai_error(400, str(exc), code=code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return openai_error(400, validation_message(exc.errors()))

    @app.exception_handler(_ClientGone)
    async def _gone(_: Request, exc: _ClientGone):
        metrics.disconnects += 1
        return Response(status_code=499)  # nobody reads it; the status is for the access log and metrics


@dataclass
class _Routes:
    """The endpoints over one engine. Method names are the OpenAPI operation names, and the endpoints
    have no return annotations on purpose: FastAPI would take one for a response model."""

    engine: Engine
    tokenizer: object
    served_name: str
    cfg: ServerConfig
    metrics: Metrics
    prefill: Prefill | None
    ctx: int  # the model's context length
    vocab: int

    async def health(self):
        stats = self.engine.stats
        return {
            "status": "ok",
            "model": self.served_name,
            **{k: stats[k] for k in ("running", "waiting", "aborted", "failed", "steps")},
        }

    async def prometheus(self):
        extra = {}
        if callable(getattr(self.prefill, "metrics", None)):
            extra = {f"prefill_{k}": float(v) for k, v in self.prefill.metrics().items()}
        text = self.metrics.render(self.engine, extra)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def models(self):
        card = {
            "id": self.served_name,
            "object": "model",
            "created": 0,
            "owned_by": "tenfold",
            "max_model_len": self.ctx,
        }
        return {"object": "list", "data": [card]}

    async def completions(self, request: Request):
        req: CompletionRequest = await self._parse(request, CompletionRequest)
        if isinstance(req.prompt, list):
            prompts = 1 if req.prompt and isinstance(req.prompt[0], int) else len(req.prompt)
            check_size(req, prompts, self.cfg.max_seqs_per_request)
        prompts = await asyncio.to_thread(prompt_list, req.prompt, self.tokenizer)
        thinking = thinking_hook(req, self.tokenizer, self.vocab)
        handles = self._submit(req, prompts, req.max_tokens, req.logprobs or 0, thinking)
        head = response_head("cmpl", "text_completion", self.served_name)
        echo = [self.tokenizer.decode(p) if req.echo else "" for p in prompts for _ in range(req.n)]
        if req.stream:
            chunk = _with_thinking(completion_chunk(head), thinking)
            return sse(handles, chunk, head, include_usage(req), req.n, echo)
        gens = await self._answer(request, handles)
        choices = [completion_choice(self.tokenizer, i, g, echo[i], req.logprobs) for i, g in enumerate(gens)]
        return {**head, "choices": _add_thinking(choices, thinking), "usage": usage(handles, gens, req.n)}

    async def chat(self, request: Request):
        req: ChatRequest = await self._parse(request, ChatRequest)
        check_size(req, 1, self.cfg.max_seqs_per_request)
        prompt = await asyncio.to_thread(self.tokenizer.apply_chat_template, chat_messages(req), True)
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        top = req.top_logprobs or 0 if req.logprobs else 0
        thinking = thinking_hook(req, self.tokenizer, self.vocab)
        handles = self._submit(req, [prompt], max_tokens, top, thinking)
        head = response_head("chatcmpl", "chat.completion", self.served_name)
        if req.stream:
            chead = {**head, "object": "chat.completion.chunk"}
            first = chat_stream_start(chead, len(handles))
            chunk = _with_thinking(chat_chunk(chead), thinking)
            return sse(handles, chunk, chead, include_usage(req), req.n, None, first)
        gens = await self._answer(request, handles)
        choices = [chat_choice(self.tokenizer, i, g, req.logprobs) for i, g in enumerate(gens)]
        return {**head, "choices": _add_thinking(choices, thinking), "usage": usage(handles, gens, req.n)}

    # helpers ---------------------------------------------------------------------------------------
    async def _parse(self, request: Request, cls: type[BaseModel]):
        return await parse_request(request, cls, self.served_name, self.cfg.max_body_bytes)

    def _submit(
        self,
        req: _Common,
        prompts: list[list[int]],
        max_tokens: int | None,
        top: int,
        thinking: ThinkingHook | None = None,
    ) -> list[Handle]:
        """Submit n choices per prompt (prompt-major); all or nothing: one bad prompt rejects the request.
        `thinking`: the request's thinking cutoff, run on its sequences only (choice i is index i)."""
        params = [
            sampling_params(
                req,
                len(p),
                max_tokens,
                k,
                top,
                context=self.ctx,
                vocab=self.vocab,
                default_max_tokens=self.cfg.default_max_tokens,
            )
            for p in prompts
            for k in range(req.n)
        ]
        ids = [p for p in prompts for _ in range(req.n)]
        handles: list[Handle] = []
        try:
            for i, (p, sp) in enumerate(zip(ids, params, strict=True)):
                hook = thinking.step if thinking is not None else None
                handles.append(self.engine.submit(p, sp, index=i, stream=req.stream, hook=hook))
        except TenfoldError:
            self.engine.cancel(handles)  # one bad prompt rejects the whole request
            raise
        self.metrics.prompt_tokens += sum(len(p) for p in prompts)
        return handles

    async def _answer(self, request: Request, handles: list[Handle]):
        """Every handle's result; stops their decoding if the client disconnects first."""
        results = asyncio.ensure_future(asyncio.gather(*(h.result() for h in handles)))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({results, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not results.done():
            self.engine.cancel(handles)
            results.cancel()
            raise _ClientGone()
        try:
            gens = results.result()
        except Exception as exc:  # a sequence failed in the engine: this request only
            self.engine.cancel(handles)
            raise APIError(500, f"generation failed: {exc}", type_="server_error") from exc
        return gens


def _add_thinking(choices: list[dict], thinking: ThinkingHook | None) -> list[dict]:
    """Each choice with its thinking cutoff's report (the `tenfold` extension), when the request had one."""
    if thinking is not None:
        for c in choices:
            c["tenfold"] = {"thinking": thinking.report(c["index"])}
    return choices


def _with_thinking(chunk, thinking: ThinkingHook | None):
    """A streamed chunk maker whose last chunk of each choice carries the thinking report."""
    if thinking is None:
        return chunk

    def wrapped(i, delta, finish):
        ev = chunk(i, delta, finish)
        if finish is not None:
            _add_thinking(ev["choices"], thinking)
        return ev

    return wrapped


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


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

"""One async interface to a language model, in-process or behind an OpenAI-compatible URL.

Systems talk only to a `Backend`: `LocalBackend` runs a tenfold model (preset or local checkpoint) in
this process with continuous batching, so concurrent `await backend.complete(...)` calls are decoded
together; `OpenAIBackend` talks to any OpenAI-compatible server (`tenfold serve`, vLLM, SGLang,
llama.cpp's server) through the official `openai` client.

Both also stream a chat (`chat_stream`: text deltas to a callback as they are decoded, then the whole
`Completion`); `stream_chat(backend, ...)` does that with any backend, falling back to one delta at the end
for a backend that cannot stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tenfold.core.engine import Engine
from tenfold.core.models import load_model, model_name
from tenfold.core.sampler import SamplingParams, encode_prompt


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] | None = None  # None when the backend does not expose ids
    logprobs: list[float] | None = None  # per generated token, when asked for


@runtime_checkable
class Backend(Protocol):
    model: str

    async def complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        logprobs: bool = False,
    ) -> Completion: ...

    async def chat(
        self,
        messages: Sequence[dict],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        logprobs: bool = False,
    ) -> Completion: ...

    async def aclose(self) -> None: ...


class LocalBackend:
    """An in-process model behind the `Backend` interface (starts its decode thread lazily)."""

    def __init__(
        self,
        model: str = "tiny",
        device: str | None = None,
        max_batch: int = 64,
        *,
        loaded=None,
        prefill=None,
        prefix_cache_bytes: int = 0,
    ):
        """`prefill`: an engine prefill plug-in; `prefix_cache_bytes > 0`: automatic prefix caching in
        memory (`core.prefix_cache`), as vLLM's, for multi-turn prompts that extend earlier ones."""
        self.model = model_name(model)
        self.lm, self.tokenizer = loaded if loaded is not None else load_model(model, device)
        if prefill is None and prefix_cache_bytes > 0:
            from tenfold.core.prefix_cache import PrefixCachePrefill

            prefill = PrefixCachePrefill(self.lm, prefix_cache_bytes)
        self.prefill = prefill
        self.engine = Engine(self.lm, self.tokenizer, max_batch=max_batch, prefill=prefill)

    async def _run(
        self, prompt_ids: list[int], max_tokens, temperature, top_p, stop, seed, logprobs, on_delta=None
    ) -> Completion:
        """Decode one prompt; with `on_delta`, hand it each piece of text as it is decoded."""
        params = SamplingParams(max_tokens, temperature, top_p, tuple(stop or ()), seed=seed)
        handle = self.engine.start().submit(prompt_ids, params, stream=on_delta is not None)
        if on_delta is None:
            gen = await handle.result()
        else:
            async for delta in handle.stream():
                on_delta(delta)
            gen = handle.generation
        return Completion(
            gen.text,
            gen.finish_reason,
            len(prompt_ids),
            len(gen.token_ids),
            gen.token_ids,
            gen.logprobs if logprobs else None,
        )

    async def complete(
        self, prompt, *, max_tokens=64, temperature=0.0, top_p=1.0, stop=None, seed=None, logprobs=False
    ):
        ids = encode_prompt(self.tokenizer, prompt)
        return await self._run(ids, max_tokens, temperature, top_p, stop, seed, logprobs)

    async def chat(
        self, messages, *, max_tokens=64, temperature=0.0, top_p=1.0, stop=None, seed=None, logprobs=False
    ):
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return await self._run(ids, max_tokens, temperature, top_p, stop, seed, logprobs)

    async def chat_stream(
        self,
        messages,
        on_delta: Callable[[str], None],
        *,
        max_tokens=64,
        temperature=0.0,
        top_p=1.0,
        stop=None,
        seed=None,
        logprobs=False,
    ) -> Completion:
        """`chat`, calling `on_delta(text)` with each piece of text as it is decoded."""
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return await self._run(ids, max_tokens, temperature, top_p, stop, seed, logprobs, on_delta)

    async def aclose(self) -> None:
        self.engine.stop()


class OpenAIBackend:
    """Any OpenAI-compatible server. `base_url` like "http://127.0.0.1:8000/v1"."""

    def __init__(
        self, base_url: str, model: str | None = None, api_key: str = "EMPTY", timeout: float = 600.0
    ):
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=2)
        self.model = model or ""

    async def _model(self) -> str:
        if not self.model:  # a single-model server: use whatever it serves
            models = await self.client.models.list()
            self.model = models.data[0].id
        return self.model

    async def complete(
        self, prompt, *, max_tokens=64, temperature=0.0, top_p=1.0, stop=None, seed=None, logprobs=False
    ):
        r = await self.client.completions.create(
            model=await self._model(),
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            **_given(stop=list(stop) if stop else None, seed=seed, logprobs=1 if logprobs else None),
        )
        c = r.choices[0]
        lps = list(c.logprobs.token_logprobs) if logprobs and c.logprobs else None
        return Completion(
            c.text, c.finish_reason, r.usage.prompt_tokens, r.usage.completion_tokens, None, lps
        )

    async def chat(
        self, messages, *, max_tokens=64, temperature=0.0, top_p=1.0, stop=None, seed=None, logprobs=False
    ):
        # The messages go in `extra_body`, past the SDK's client-side request transform: that walk
        # re-validates every message against the typed params on each call, ~30 ms for 160 messages
        # on a slow core (it grows with the conversation; openai-python#3616, litellm#29769), for a
        # body that comes out the same. The placeholder satisfies the SDK's required argument.
        r = await self.client.chat.completions.create(
            model=await self._model(),
            messages=[],
            extra_body={"messages": [dict(m) for m in messages]},
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            **_given(stop=list(stop) if stop else None, seed=seed, logprobs=True if logprobs else None),
        )
        c = r.choices[0]
        lps = (
            [t.logprob for t in c.logprobs.content]
            if logprobs and c.logprobs and c.logprobs.content
            else None
        )
        return Completion(
            c.message.content or "",
            c.finish_reason,
            r.usage.prompt_tokens,
            r.usage.completion_tokens,
            None,
            lps,
        )

    async def chat_stream(
        self,
        messages,
        on_delta: Callable[[str], None],
        *,
        max_tokens=64,
        temperature=0.0,
        top_p=1.0,
        stop=None,
        seed=None,
        logprobs=False,
    ) -> Completion:
        """`chat` as server-sent events, calling `on_delta(text)` per chunk. The token count comes from
        the server's usage chunk when it sends one (`stream_options.include_usage`), else from the
        number of chunks with text (one per decoded token on servers that stream every token)."""
        stream = await self.client.chat.completions.create(
            model=await self._model(),
            messages=[],
            extra_body={"messages": [dict(m) for m in messages]},  # see chat()
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stream=True,
            stream_options={"include_usage": True},
            **_given(stop=list(stop) if stop else None, seed=seed, logprobs=True if logprobs else None),
        )
        parts: list[str] = []
        lps: list[float] = []
        finish, usage, chunks = "stop", None, 0
        async with stream:  # closes the connection if the caller is cancelled (the server frees the slot)
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for c in chunk.choices:
                    if c.delta is not None and c.delta.content:
                        parts.append(c.delta.content)
                        chunks += 1
                        on_delta(c.delta.content)
                    if logprobs and c.logprobs is not None and c.logprobs.content:
                        lps.extend(t.logprob for t in c.logprobs.content)
                    if c.finish_reason:
                        finish = c.finish_reason
        return Completion(
            "".join(parts),
            finish,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else chunks,
            None,
            lps if logprobs and lps else None,
        )

    async def aclose(self) -> None:
        await self.client.close()


async def stream_chat(backend, messages, on_delta: Callable[[str], None], **kw) -> Completion:
    """`backend.chat(messages, **kw)`, calling `on_delta(text)` as text arrives: per decoded piece when
    the backend can stream (`chat_stream`), else once with the whole text when it is done."""
    if hasattr(backend, "chat_stream"):
        return await backend.chat_stream(messages, on_delta, **kw)
    c = await backend.chat(messages, **kw)
    if c.text:
        on_delta(c.text)
    return c


def _given(**kw) -> dict:
    """Only the options that are set: some servers reject explicit nulls."""
    return {k: v for k, v in kw.items() if v is not None}


def make_backend(spec: str, **kw) -> LocalBackend | OpenAIBackend:
    """`http(s)://...` gives an OpenAIBackend; anything else is a preset name or local checkpoint path."""
    if spec.startswith(("http://", "https://")):
        return OpenAIBackend(spec, **kw)
    return LocalBackend(spec, **kw)

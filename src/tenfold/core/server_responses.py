"""From finished (or streaming) generations to OpenAI response bodies: choices, logprobs, usage, SSE.

Completions and chat report logprobs differently, as OpenAI does: the legacy completions API gives
token strings, text offsets and `top_logprobs` as {token string: logprob}, chat gives entries with the
token, its bytes and a list of alternatives. A streamed response is server-sent events, one chunk per
text delta of any choice as it comes, then optionally usage, then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from tenfold.core.engine import Handle
from tenfold.core.http import sse_error
from tenfold.core.openai_schema import _Common


def response_head(id_prefix: str, obj: str, served_name: str) -> dict:
    """The fields every response (and every chunk of a stream) starts with."""
    rid, created = f"{id_prefix}-{uuid.uuid4().hex[:24]}", int(time.time())
    return {"id": rid, "object": obj, "created": created, "model": served_name}


def usage(handles: list[Handle], gens, n: int) -> dict:
    """Token usage; like OpenAI, a prompt shared by `n` choices counts once (handles are prompt-major)."""
    p = sum(len(h.seq.prompt_ids) for h in handles[::n])
    c = sum(len(g.token_ids) for g in gens)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def include_usage(req: _Common) -> bool:
    """Whether a stream ends with a usage chunk (`stream_options.include_usage`)."""
    return bool(req.stream_options and req.stream_options.include_usage)


# completions ---------------------------------------------------------------------------------------
def token_string(tokenizer, tid: int) -> str:
    """A token as text; a token that is no text alone (one byte of a UTF-8 character) as its bytes,
    `bytes:\\xe4`, so that distinct tokens stay distinct keys of `top_logprobs`."""
    text = tokenizer.decode([tid], skip_special_tokens=False)
    if "\ufffd" in text:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in tokenizer.token_bytes(tid))
    return text


def completion_choice(tokenizer, i: int, g, echo: str, logprobs: int | None) -> dict:
    """Choice `i` of a completion: the echoed prompt (if asked) and the text, with the legacy logprobs
    when `logprobs` is not None (and `logprobs` alternatives per token when it is > 0)."""
    lp = None
    if logprobs is not None:
        toks = [token_string(tokenizer, t) for t in g.token_ids]
        # where each token starts in the returned text (a partial character counts as none)
        offsets = [len(echo) + len(tokenizer.decode(g.token_ids[:k])) for k in range(len(toks))]
        top = None
        if logprobs:
            top = [{token_string(tokenizer, t): v for t, v in step} for step in g.top_logprobs or []]
        lp = {"tokens": toks, "token_logprobs": g.logprobs, "top_logprobs": top, "text_offset": offsets}
    return {"index": i, "text": echo + g.text, "logprobs": lp, "finish_reason": g.finish_reason}


def completion_chunk(head: dict):
    """`chunk(i, delta, finish)` -> one streamed completion event."""

    def chunk(i, delta, finish):
        return {**head, "choices": [{"index": i, "text": delta, "logprobs": None, "finish_reason": finish}]}

    return chunk


# chat ----------------------------------------------------------------------------------------------
def chat_choice(tokenizer, i: int, g, logprobs: bool) -> dict:
    """Choice `i` of a chat completion: the assistant message, with chat-style logprobs if asked."""
    lp = None
    if logprobs:

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
    return {"index": i, "message": msg, "logprobs": lp, "finish_reason": g.finish_reason}


def chat_chunk(head: dict):
    """`chunk(i, delta, finish)` -> one streamed chat event (the final one has an empty delta)."""

    def chunk(i, delta, finish):
        d = {"content": delta} if finish is None else {}
        return {**head, "choices": [{"index": i, "delta": d, "logprobs": None, "finish_reason": finish}]}

    return chunk


def chat_stream_start(head: dict, choices: int) -> list[dict]:
    """The first event of every streamed chat choice: the assistant role, no text yet."""
    return [
        {
            **head,
            "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
        for i in range(choices)
    ]


# streaming -----------------------------------------------------------------------------------------
def sse(handles, chunk, head, with_usage: bool, n: int, echo=None, first=None) -> StreamingResponse:
    """Stream every handle's deltas as server-sent events, interleaved as they come.

    `first`: events sent before any text; `echo[i]`: text sent first for choice i (completions' echo);
    `with_usage`: end with a usage chunk (counted with `n` choices per prompt).
    An error after the stream began can no longer change the status, so it is reported in-band. When
    the stream ends for any reason (the client may have gone), the handles' decode slots are freed."""

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
                    yield sse_error(f"generation failed: {extra}", "server_error")
                    left -= 1
                elif extra is not None:
                    gens[i] = extra
                    yield f"data: {json.dumps(chunk(i, delta, extra.finish_reason))}\n\n"
                    left -= 1
                elif delta:
                    yield f"data: {json.dumps(chunk(i, delta, None))}\n\n"
            if with_usage and all(g is not None for g in gens):
                yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage(handles, gens, n)})}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # the client may have gone away: free the decode slots
            for h in handles:
                h.cancelled = True
            for t in tasks:
                t.cancel()

    return StreamingResponse(events(), media_type="text/event-stream")

"""From an OpenAI request to engine work: the typed body, the prompts' token ids, their SamplingParams.

Every client mistake found here is a 4xx `APIError` in the OpenAI shape (with OpenAI's `param` and
`code` where OpenAI sets them) raised before anything reaches the engine, so a bad request never costs
a decode slot.
"""

from __future__ import annotations

import asyncio
import secrets

from fastapi import Request
from pydantic import BaseModel, ValidationError

from tenfold.core.errors import TenfoldError
from tenfold.core.http import APIError, parse_json_body, read_body
from tenfold.core.openai_schema import ChatRequest, _Common
from tenfold.core.sampler import SamplingParams, encode_prompt
from tenfold.core.thinking import ThinkingCutoff, ThinkingHook


async def parse_request(request: Request, cls: type[BaseModel], served_name: str, max_body_bytes: int):
    """The body of `request` as a `cls` (`CompletionRequest`, `ChatRequest`), checked against what this
    server supports; a body for another model is a 404 `model_not_found`, as OpenAI answers."""
    raw = await read_body(request, max_body_bytes)
    body = parse_json_body(raw) if len(raw) < 2**16 else await asyncio.to_thread(parse_json_body, raw)
    body = {k: v for k, v in body.items() if v is not None}  # OpenAI clients send null for "default"
    try:
        req = cls.model_validate(body)
    except ValidationError as exc:
        raise APIError(400, validation_message(exc.errors())) from exc
    if req.model != served_name:
        raise APIError(
            404,
            f"The model `{req.model}` does not exist; this server serves `{served_name}`.",
            "model",
            "model_not_found",
        )
    req.check_supported()
    return req


def validation_message(errors) -> str:
    """Pydantic's errors as one line: the first three, each `field: what is wrong`."""
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "invalid request: " + "; ".join(parts)


def prompt_list(prompt, tokenizer) -> list[list[int]]:
    """OpenAI allows a string, a list of strings, a token list, or a list of token lists."""
    if isinstance(prompt, str):
        return [encode_prompt(tokenizer, prompt)]
    if not prompt:
        raise APIError(400, "prompt is empty", "prompt")
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]
    return [encode_prompt(tokenizer, p) for p in prompt]


def chat_messages(req: ChatRequest) -> list[dict]:
    """The messages as the chat template takes them (OpenAI's `developer` role is a system message)."""
    return [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages
    ]


def check_size(req: _Common, prompts: int, max_seqs: int) -> None:
    """Refuse a request for more than `max_seqs` sequences (prompts x n) before any prompt is tokenised."""
    if prompts * req.n > max_seqs:
        raise APIError(
            400,
            f"this request asks for {prompts} prompts x n={req.n} = {prompts * req.n} sequences; "
            f"this server takes at most {max_seqs} per request",
            "n" if prompts == 1 else "prompt",
        )


def sampling_params(
    req: _Common,
    prompt_len: int,
    max_tokens: int | None,
    index: int,
    top_logprobs: int,
    *,
    context: int,
    vocab: int,
    default_max_tokens: int,
) -> SamplingParams:
    """The SamplingParams of choice `index` of `req` for a prompt of `prompt_len` tokens.

    The prompt and its completion must fit the model's `context` (OpenAI's `context_length_exceeded`);
    no `max_tokens` means `default_max_tokens` or what the context leaves, if less. A seeded request
    gives choice i the seed `seed + i`, so the n choices differ and each one is reproducible."""
    if prompt_len >= context:
        raise APIError(
            400,
            f"This model's maximum context length is {context} tokens. However, your prompt has {prompt_len} "
            f"tokens, which leaves no room for a completion.",
            "messages" if isinstance(req, ChatRequest) else "prompt",
            "context_length_exceeded",
        )
    if max_tokens is None:  # bounded: a forgotten max_tokens must not mean the whole context
        max_tokens = min(default_max_tokens, context - prompt_len)
    if prompt_len + max_tokens > context:
        raise APIError(
            400,
            f"This model's maximum context length is {context} tokens. However, you requested {prompt_len + max_tokens} "
            f"tokens ({prompt_len} in the prompt, {max_tokens} for the completion).",
            "max_tokens",
            "context_length_exceeded",
        )
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    # unseeded requests get fresh OS entropy (torch's default generator would repeat across restarts)
    seed = secrets.randbits(62) if req.seed is None else req.seed + index
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
        top_logprobs=top_logprobs,
    )


def thinking_hook(req: _Common, tokenizer, vocab: int) -> ThinkingHook | None:
    """The request's `thinking_cutoff` as one hook for all its sequences (keyed by choice index), or None."""
    if req.thinking_cutoff is None:
        return None
    try:
        hook = ThinkingHook(tokenizer, ThinkingCutoff(**req.thinking_cutoff.model_dump()))
    except TenfoldError as exc:
        raise APIError(400, str(exc), "thinking_cutoff") from exc
    if max(hook.close_ids) >= vocab:
        raise APIError(400, "the close tag's tokens are outside the model's vocabulary", "thinking_cutoff")
    return hook

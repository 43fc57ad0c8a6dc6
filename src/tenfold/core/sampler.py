"""Batched prefill and decode with the Hugging Face KV cache, sampling, logprobs and a per-step hook.

`generate` is the one-call entry point: prompts in, `Generation`s out, in batches that stay full as
sequences finish (continuous batching). It is built from three parts, all importable from here:

- `sampling`: `SamplingParams`, the per-sequence state (`SeqState`, `StepState` for hooks, the
  `Generation` result) and the choice of the next token (greedy, temperature/top-p, penalties,
  logit bias, one generator per sequence so that a seed reproduces whatever the batch).
- `decode_batch`: `DecodeBatch`, the running left-padded batch with one KV cache, which sequences
  join and leave between steps; the server's engine drives one directly.
- `kv_layers`: `BufferLayer`, the KV-cache layer that appends in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from tenfold.core.decode_batch import DecodeBatch
from tenfold.core.errors import TenfoldError
from tenfold.core.sampling import (
    MAX_TOP_LOGPROBS,
    MIN_TEMPERATURE,
    Generation,
    Hook,
    Prefill,
    SamplingParams,
    SeqState,
    StepState,
    _choose,  # noqa: F401 - tests reach the token choice through this module
    encode_prompt,
    new_sequence,
)

__all__ = [
    "MAX_TOP_LOGPROBS",
    "MIN_TEMPERATURE",
    "DecodeBatch",
    "Generation",
    "Hook",
    "Prefill",
    "SamplingParams",
    "SeqState",
    "StepState",
    "encode_prompt",
    "generate",
    "new_sequence",
]


def generate(
    model,
    tokenizer,
    prompts: Sequence[str | Sequence[int]],
    params: SamplingParams | Sequence[SamplingParams] | None = None,
    hook: Hook | None = None,
    batch_size: int = 64,
    use_cache: bool = True,
    share_prefix: bool = True,
) -> list[Generation]:
    """Generate for each prompt (a string, or token ids used verbatim); results in prompt order.

    Prompts are decoded in batches of up to `batch_size`; as sequences finish, waiting prompts join
    the running batch, so the batch stays full. A prompt start common to the batch is stored and read
    once (`share_prefix`, see `tenfold.core.shared_prefix`).
    """
    if isinstance(prompts, str):
        raise TenfoldError("prompts must be a list of strings or token-id lists, not a single string")
    params = params or SamplingParams()
    plist = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
    if len(plist) != len(prompts):
        raise TenfoldError(f"got {len(plist)} SamplingParams for {len(prompts)} prompts")
    batch = DecodeBatch(model, tokenizer, hook=hook, use_cache=use_cache, share_prefix=share_prefix)
    waiting = [batch.new_sequence(i, encode_prompt(tokenizer, p), plist[i]) for i, p in enumerate(prompts)]
    waiting.reverse()
    results: list[Generation | None] = [None] * len(prompts)
    while waiting or batch.seqs:
        room = batch_size - len(batch.seqs)
        if waiting and room > 0 and (batch.can_merge or not batch.seqs):
            batch.add([waiting.pop() for _ in range(min(room, len(waiting)))])
        for s in batch.step():
            results[s.index] = s.result()
    return results  # type: ignore[return-value]

"""What to sample and how: `SamplingParams`, the state of one sequence being decoded, and the choice
of its next token.

Logprobs and entropy are those of the model's raw next-token distribution (before temperature,
top-p, penalties and logit bias), the quantities RL losses and uncertainty hooks need.

A sequence fails alone: an error while choosing its token (say, a distribution that cannot be sampled)
ends that sequence with `finish_reason == "error"` and `error` set, and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from tenfold.core.errors import ContextLengthError, TenfoldError
from tenfold.core.models import context_length
from tenfold.core.tokenizer import IncrementalDecoder

# Temperatures below this are greedy: dividing logits by 1e-300 overflows to inf and the softmax to NaN
# (vLLM uses the same floor). Top-p always keeps the most likely token, so a tiny top-p is greedy too.
MIN_TEMPERATURE = 1e-5
MAX_TOP_LOGPROBS = 20  # as the OpenAI chat API


@dataclass
class SamplingParams:
    """How to pick tokens for one sequence. `temperature < MIN_TEMPERATURE` means greedy.

    `frequency_penalty` / `presence_penalty` (OpenAI's, in [-2, 2]) lower the logit of a token by
    `frequency_penalty * count + presence_penalty * (count > 0)`, count = times it was generated so far;
    `logit_bias` adds a value in [-100, 100] to a token's logit. `top_logprobs`: also report the k most
    likely tokens at every step (raw logprobs, like `Generation.logprobs`)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: Sequence[str] = ()
    stop_token_ids: Sequence[int] | None = None  # None: the tokenizer's end-of-text/end-of-turn ids
    seed: int | None = None
    ignore_eos: bool = False
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    top_logprobs: int = 0

    def validate(self, vocab_size: int | None = None) -> SamplingParams:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise TenfoldError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        for name, lo, hi in (
            ("temperature", 0.0, 100.0),
            ("top_p", 0.0, 1.0),
            ("frequency_penalty", -2.0, 2.0),
            ("presence_penalty", -2.0, 2.0),
        ):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                raise TenfoldError(f"{name} must be a number in [{lo:g}, {hi:g}], got {v!r}")
        if self.top_p <= 0.0:
            raise TenfoldError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.seed is not None and not -(2**63) <= self.seed < 2**64:
            raise TenfoldError(f"seed must be in [-2**63, 2**64), got {self.seed}")
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise TenfoldError(f"stop must be non-empty strings, got {list(self.stop)!r}")
        if not isinstance(self.top_logprobs, int) or not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise TenfoldError(
                f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs!r}"
            )
        for tok, bias in (self.logit_bias or {}).items():
            if not isinstance(tok, int) or tok < 0 or (vocab_size is not None and tok >= vocab_size):
                raise TenfoldError(f"logit_bias token ids must be in [0, {vocab_size}), got {tok!r}")
            if not isinstance(bias, (int, float)) or not -100.0 <= bias <= 100.0:
                raise TenfoldError(f"logit_bias values must be in [-100, 100], got {bias!r} for token {tok}")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature < MIN_TEMPERATURE

    @property
    def adjusts_logits(self) -> bool:
        return bool(self.frequency_penalty or self.presence_penalty or self.logit_bias)


@dataclass
class Generation:
    """The result for one prompt."""

    index: int
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str  # "stop" (stop token or string), "length", "hook", or "error"
    top_logprobs: list[list[tuple[int, float]]] | None = None  # per token: k (token id, logprob), best first
    error: BaseException | None = None  # why the sequence failed (finish_reason "error")

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class SeqState:
    """A sequence being decoded (internal state, visible to hooks as `state.seqs[i]`)."""

    index: int
    prompt_ids: list[int]
    params: SamplingParams
    detok: IncrementalDecoder
    stop_ids: frozenset[int]
    generator: torch.Generator | None = None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""  # visible text (cut at a stop string)
    finish_reason: str | None = None
    cut_at_stop: bool = False  # text was cut at a stop string
    emitted: int = 0  # chars of `text` already handed out by `take_delta`
    user: object = None  # owner's handle (the server's request), untouched here
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)  # generated token -> times (for penalties)
    error: BaseException | None = None

    def take_delta(self) -> str:
        """New visible text since the last call, holding back a possible stop-string prefix."""
        end = len(self.text)
        if self.finish_reason is None and self.params.stop:
            end -= max(len(s) for s in self.params.stop) - 1
        if end <= self.emitted:
            return ""
        out = self.text[self.emitted : end]
        self.emitted = end
        return out

    def result(self) -> Generation:
        return Generation(
            self.index,
            self.prompt_ids,
            self.token_ids,
            self.text,
            self.logprobs,
            self.finish_reason or "length",
            self.top_logprobs if self.params.top_logprobs else None,
            self.error,
        )


@dataclass
class StepState:
    """What a hook sees at one decode step: raw logits and entropy per active sequence.

    Row i is `seqs[i]`; `seqs[i].index` is its prompt's index and `len(seqs[i].token_ids)` the number of
    tokens it has emitted so far (`step` counts the batch's steps, which differs once sequences join
    mid-run). `force(i, token)` makes sequence i emit `token` this step; `stop(i)` ends sequence i now
    (no token is emitted; finish_reason "hook").
    """

    step: int
    seqs: list[SeqState]
    logits: torch.Tensor  # (n, vocab) float32, raw model logits
    entropy: torch.Tensor  # (n,) nats
    forced: dict[int, int] = field(default_factory=dict)
    stopped: set[int] = field(default_factory=set)

    def force(self, i: int, token_id: int) -> None:
        if not 0 <= token_id < self.logits.shape[-1]:
            raise TenfoldError(f"forced token {token_id} outside the vocabulary [0, {self.logits.shape[-1]})")
        self.forced[i] = int(token_id)

    def stop(self, i: int) -> None:
        self.stopped.add(i)


Hook = Callable[[StepState], None]
# A prefill plug-in: given a prompt's token ids, either fill its KV cache itself and return
# (a DynamicCache for batch 1, the next-token logits), or return None to leave it to the batch.
Prefill = Callable[[list[int]], "tuple[DynamicCache, torch.Tensor] | None"]


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _adjust(logits: torch.Tensor, s: SeqState) -> torch.Tensor:
    """One sequence's logits after OpenAI's frequency/presence penalties and its logit bias."""
    p, out = s.params, logits.clone()
    if s.counts and (p.frequency_penalty or p.presence_penalty):
        ids = torch.tensor(list(s.counts), device=logits.device)
        n = torch.tensor(list(s.counts.values()), dtype=logits.dtype, device=logits.device)
        out[ids] -= p.frequency_penalty * n + p.presence_penalty
    if p.logit_bias:
        ids = torch.tensor(list(p.logit_bias), device=logits.device)
        out[ids] += torch.tensor(list(p.logit_bias.values()), dtype=logits.dtype, device=logits.device)
    return out


def _choose(logits: torch.Tensor, seqs: list[SeqState], forced: dict[int, int]) -> list[int | Exception]:
    """The next token of every row of `logits` (raw, (n, vocab) float32): forced, greedy, or sampled
    with the row's temperature and top-p from the row's own generator; an Exception for a row that
    cannot be sampled (that sequence fails alone).

    The distributions of all sampled rows are built in one batched pass (penalties and logit bias first,
    row by row, for the few rows that have them); only the draw itself is per row, because each sequence
    owns its generator (what makes a request's `seed` reproducible whatever it is batched with). Done row
    by row, the softmax/sort/cumsum of a small model's decode step cost as much as the forward pass.
    """
    failed: dict[int, Exception] = {}
    adjusted = [i for i, s in enumerate(seqs) if i not in forced and s.params.adjusts_logits]
    if adjusted:
        logits = logits.clone()
        for i in adjusted:
            try:
                logits[i] = _adjust(logits[i], seqs[i])
            except Exception as exc:  # noqa: BLE001 - this sequence fails alone; the batch goes on
                failed[i] = exc
    out: list[int | Exception] = logits.argmax(-1).tolist()
    out_of_band = {**forced, **failed}
    for i, t in out_of_band.items():
        out[i] = t
    rows = [i for i, s in enumerate(seqs) if i not in out_of_band and not s.params.greedy]
    if not rows:
        return out
    temps = torch.tensor([seqs[i].params.temperature for i in rows], dtype=logits.dtype, device=logits.device)
    probs = torch.softmax(logits[rows] / temps[:, None], dim=-1)
    top_p = [seqs[i].params.top_p for i in rows]
    if min(top_p) < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # rows without top-p keep every token (cumsum can reach 1.0 in float32 before the tail does)
        bound = torch.tensor([p if p < 1.0 else float("inf") for p in top_p], device=probs.device)[:, None]
        keep = (sorted_p.cumsum(-1) - sorted_p) < bound
        keep[:, 0] = True  # the most likely token, even when top_p rounds to 0 in float32
        probs = torch.zeros_like(probs).scatter(1, order, sorted_p * keep)
    ok = (torch.isfinite(probs).all(-1) & (probs.sum(-1) > 0)).tolist()
    for j, i in enumerate(rows):
        if ok[j]:
            out[i] = int(torch.multinomial(probs[j], 1, generator=seqs[i].generator))
        else:
            out[i] = TenfoldError("the next-token distribution is not finite (NaN/inf logits); cannot sample")
    return out


def new_sequence(model, tokenizer, index: int, prompt_ids: Sequence[int], params: SamplingParams) -> SeqState:
    """Validate a request and make its decode state; raises TenfoldError/ContextLengthError on bad input."""
    params.validate(model.config.vocab_size)
    prompt_ids = [int(t) for t in prompt_ids]
    if not prompt_ids:
        raise TenfoldError("prompt is empty: give at least one token")
    vocab, context = model.config.vocab_size, context_length(model)
    if min(prompt_ids) < 0 or max(prompt_ids) >= vocab:
        raise TenfoldError(
            f"prompt token ids must be in [0, {vocab}), got min {min(prompt_ids)} max {max(prompt_ids)}"
        )
    if len(prompt_ids) >= context:
        raise ContextLengthError(
            f"prompt has {len(prompt_ids)} tokens; the model's context is {context}, so a prompt may have at most {context - 1}"
        )
    if params.ignore_eos:
        stop_ids = frozenset()
    else:
        stop_ids = frozenset(
            params.stop_token_ids if params.stop_token_ids is not None else tokenizer.stop_ids
        )
    gen = None
    if not params.greedy:
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,)))
        gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    return SeqState(index, prompt_ids, params, IncrementalDecoder(tokenizer), stop_ids, gen)


def encode_prompt(tokenizer, prompt: str | Sequence[int]) -> list[int]:
    """Token ids of a completion prompt: a string gets the BOS token (when the tokenizer has one)."""
    if isinstance(prompt, str):
        bos = [tokenizer.bos_id] if getattr(tokenizer, "bos_id", None) is not None else []
        return bos + tokenizer.encode(prompt)
    return [int(t) for t in prompt]

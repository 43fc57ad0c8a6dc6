"""Batched prefill and decode with the Hugging Face KV cache, sampling, logprobs and a per-step hook.

`DecodeBatch` is the engine: it holds the active sequences of one batch, left-padded, with one
`DynamicCache` whose rows are the sequences. Sequences can join a running batch (`add`: their prompts
are prefilled, then their cache rows are left-padded and concatenated with the running ones) and leave
it when finished (their rows are dropped), which is what continuous batching in the server needs.
`generate` is the one-call convenience on top.

Why left padding is exact: every sequence carries its own position ids, and pad columns are masked
out of attention, so a real token never sees a pad token; RoPE is applied before keys are cached,
so padding a cache on the left does not move any real key. A sequence's output therefore does not
depend on what it is batched with (up to float round-off in the matmuls).

Logprobs and entropy are those of the model's raw next-token distribution (before temperature,
top-p, penalties and logit bias), the quantities RL losses and uncertainty hooks need.

A sequence fails alone: an error while choosing its token (say, a distribution that cannot be sampled)
ends that sequence with `finish_reason == "error"` and `error` set, and the batch goes on. An error in
the batch's shared forward pass is the caller's to handle; `DecodeBatch.rebuild` re-prefills a set of
running sequences from their tokens so far, which lets the engine find and drop the one that fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tenfold.core import shared_prefix
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


class GrowingLayer(DynamicLayer):
    """One layer's K/V in a buffer with spare room after the valid positions.

    `DynamicLayer` grows by concatenation, which copies the whole cache of every row at every decode
    step: on a CPU that copy was two thirds of a batched decode step. Here a step writes its column in
    place; when the room runs out, the buffer grows by half its length (amortised O(1) per token).
    `keys`/`values` are views of the valid positions, as the model's attention expects.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.device, self.is_initialized = keys.device, True
        self._allocate(keys, values, self._capacity(keys.shape[-2]))

    @staticmethod
    def _capacity(length: int) -> int:
        return length + max(64, length // 2)

    def _allocate(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        n = keys.shape[-2]
        kbuf = keys.new_empty(*keys.shape[:2], capacity, keys.shape[-1])
        vbuf = values.new_empty(*values.shape[:2], capacity, values.shape[-1])
        kbuf[:, :, :n], vbuf[:, :, :n] = keys, values
        self.kbuf, self.vbuf, self.length = kbuf, vbuf, n
        self.keys, self.values = kbuf[:, :, :n], vbuf[:, :, :n]

    def lazy_initialization(self, key_states, value_states) -> None:  # built from tensors instead
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self.kbuf.shape[-2]:
            self._allocate(self.keys, self.values, self._capacity(end))
        self.kbuf[:, :, self.length : end] = key_states
        self.vbuf[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.kbuf[:, :, :end], self.vbuf[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        self.length -= abs(tokens_to_remove)
        self.keys, self.values = self.kbuf[:, :, : self.length], self.vbuf[:, :, : self.length]

    def reset(self) -> None:
        self.crop(self.length)


def _growing(layer):
    """`layer` as a GrowingLayer (a copy of its valid K/V); other layer kinds are left as they are."""
    if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
        return GrowingLayer(layer.keys, layer.values)
    return layer


def _pad_left(t: torch.Tensor, width: int, dim: int, value=0) -> torch.Tensor:
    if width == 0:
        return t
    shape = list(t.shape)
    shape[dim] = width
    return torch.cat([t.new_full(shape, value), t], dim=dim)


class DecodeBatch:
    """A running batch of sequences sharing one left-padded KV cache (see module docstring).

    Usage: `add(prompts, params)`; then `step()` until `not batch.seqs`; each `step()` emits one token
    per active sequence and returns the sequences that finished in that step.
    """

    def __init__(
        self,
        model,
        tokenizer,
        hook: Hook | None = None,
        use_cache: bool = True,
        prefill: Prefill | None = None,
        share_prefix: bool = True,
    ):
        self.model, self.tok, self.hook, self.use_cache = model, tokenizer, hook, use_cache
        self.prefill = prefill if use_cache else None
        # One copy of the prompt prefix all rows share (module `shared_prefix`); not with a prefill
        # plug-in, whose caches cover whole prompts.
        self.share = share_prefix and use_cache and self.prefill is None and shared_prefix.enable(model)
        self.prefix_ids: list[int] = []  # tokens of the shared prefix (its K/V in `prefix_kv`)
        self.prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.device = next(model.parameters()).device
        self.context = context_length(model)
        self.seqs: list[SeqState] = []
        self.ids = torch.empty(0, 0, dtype=torch.long, device=self.device)  # (B, L) tokens incl. pads
        self.mask = torch.empty(0, 0, dtype=torch.long, device=self.device)  # (B, L) 1 = real token
        self.next_pos = torch.empty(0, dtype=torch.long, device=self.device)  # (B,) next position id
        self.cache: DynamicCache | None = None
        self.pending: torch.Tensor | None = None  # (B, vocab) logits for each sequence's next token
        self.steps = 0

    # joining ---------------------------------------------------------------------------------------
    def new_sequence(self, index: int, prompt_ids: Sequence[int], params: SamplingParams) -> SeqState:
        return new_sequence(self.model, self.tok, index, prompt_ids, params)

    def rebuild(self, seqs: Sequence[SeqState]) -> DecodeBatch:
        """A new batch like this one holding `seqs` (running sequences from any batch), prefilled from
        their prompts and the tokens they have emitted so far, so they continue exactly where they were.
        Used to recover from a failed step: the failed batch's cache may be half-updated."""
        fresh = DecodeBatch(self.model, self.tok, self.hook, self.use_cache, self.prefill, self.share)
        fresh.steps = self.steps
        if seqs:
            fresh.add(seqs)
        return fresh

    def abort(self, seqs: Sequence[SeqState]) -> None:
        """Remove `seqs` from the batch now (finish_reason "abort")."""
        gone = {id(s) for s in seqs}
        for s in self.seqs:
            if id(s) in gone:
                s.finish_reason = "abort"
        keep = [i for i, s in enumerate(self.seqs) if id(s) not in gone]
        if len(keep) < len(self.seqs):
            self._select(keep)

    @torch.no_grad()
    def add(self, seqs: Sequence[SeqState]) -> None:
        """Prefill `seqs` and merge them into the running batch.

        With a `prefill` plug-in (e.g. a prefix KV store), each sequence is first offered to it; those it
        fills (it returns a cache and the next-token logits) join as they are, the rest are prefilled here
        in one batched forward pass.
        """
        if self.prefill is not None:
            rest = []
            for s in seqs:
                got = self.prefill(s.prompt_ids) if not s.token_ids else None
                if got is None:
                    rest.append(s)
                    continue
                cache, logits = got
                ids = torch.tensor([s.prompt_ids], dtype=torch.long, device=self.device)
                self._merge([s], ids, torch.ones_like(ids), cache, logits.reshape(1, -1).float())
            seqs = rest
        if not seqs:
            return
        rows = [s.prompt_ids + s.token_ids for s in seqs]  # tokens so far: a rebuilt sequence has some
        start = self._share(rows) if self.share else 0
        width = max(len(r) for r in rows) - start
        ids = torch.full((len(seqs), width), self.tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, row in enumerate(rows):
            own = row[start:]
            ids[r, width - len(own) :] = torch.tensor(own)
            mask[r, width - len(own) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = DynamicCache(config=self.model.config) if self.use_cache else None
        pos = start + (mask.cumsum(-1) - 1).clamp(min=0)
        if self.prefix_kv is None:
            logits = self._forward(ids, mask, pos, cache)
        else:  # causal within each row's own tokens (left-padded); the prefix is visible to all
            causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
            logits = self._forward(ids, causal & mask.bool()[:, None, None, :], pos, cache)
        self._merge(seqs, ids, mask, cache, logits, start + mask.sum(-1))

    # the shared prefix -----------------------------------------------------------------------------
    MIN_SHARED = 16  # a shorter common prefix is not worth the split attention
    # Fewer rows than this decode faster with plain SDPA over per-row copies (measured on the 1.1M SGD
    # model, 300 shared tokens: 2 rows 2.36 vs 2.57 ms per step unshared vs shared; 3 rows even; 6 rows
    # 3.94 vs 3.29): the split attention's extra small products cost more than the copies it saves.
    MIN_ROWS = 3

    def _share(self, prompts: list[list[int]]) -> int:
        """Make the shared prefix the longest one that the running rows and `prompts` have in common
        (each prompt keeps at least its last token to itself: its logits come from the row's forward).
        Returns its length, the column at which the new prompts' own tokens start.

        Fewer than `MIN_ROWS` rows share nothing; the prefix appears when enough rows with the same start
        are running, shrinks as rows with other starts join, and is given back to the rows when fewer
        than `MIN_ROWS` are left (`_select`)."""
        heads = [p[:-1] for p in prompts]
        if self.seqs and self.prefix_ids:
            keep = shared_prefix.common_prefix([self.prefix_ids, *heads])
            self._shrink_prefix(keep if keep >= self.MIN_SHARED else 0)
            return len(self.prefix_ids)
        if len(self.seqs) + len(prompts) < self.MIN_ROWS:
            return 0
        if self.seqs:
            keep = shared_prefix.common_prefix([s.prompt_ids + s.token_ids for s in self.seqs] + heads)
            if keep >= self.MIN_SHARED:
                self._grow_prefix(keep)
            return len(self.prefix_ids)
        keep = shared_prefix.common_prefix(heads)
        if keep >= self.MIN_SHARED:
            ids = torch.tensor([prompts[0][:keep]], dtype=torch.long, device=self.device)
            cache = DynamicCache(config=self.model.config)
            self._forward(ids, torch.ones_like(ids), torch.arange(keep, device=self.device)[None], cache)
            self.prefix_ids = list(prompts[0][:keep])
            self.prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
        return len(self.prefix_ids)

    def _shrink_prefix(self, keep: int) -> None:
        """Move the prefix columns from `keep` on into every running row (order of cached columns does
        not matter to decoding: see `shared_prefix`)."""
        drop = len(self.prefix_ids) - keep
        if drop <= 0:
            return
        b = len(self.seqs)
        tail_ids = torch.tensor([self.prefix_ids[keep:]], dtype=torch.long, device=self.device)
        self.ids = torch.cat([tail_ids.expand(b, -1), self.ids], 1)
        self.mask = torch.cat([torch.ones_like(self.ids[:, :drop]), self.mask], 1)
        self.cache.layers = [
            GrowingLayer(
                torch.cat([pk[:, :, keep:].expand(b, -1, -1, -1), layer.keys], 2),
                torch.cat([pv[:, :, keep:].expand(b, -1, -1, -1), layer.values], 2),
            )
            for (pk, pv), layer in zip(self.prefix_kv, self.cache.layers, strict=True)
        ]
        self.prefix_ids = self.prefix_ids[:keep]
        self.prefix_kv = [(pk[:, :, :keep], pv[:, :, :keep]) for pk, pv in self.prefix_kv] if keep else None

    def _grow_prefix(self, keep: int) -> None:
        """Take the first `keep` tokens, which every running row starts with, out of the rows into one
        shared copy (the batch had no shared prefix)."""
        real = self.mask.bool()
        b, w = real.shape
        taken = real & (real.cumsum(1) <= keep)  # each row's first `keep` real columns
        cols = (~taken).nonzero()[:, 1].view(b, w - keep)  # the columns each row keeps, in order
        first = taken[0].nonzero()[:, 0]
        prefix_kv, layers = [], []
        for layer in self.cache.layers:
            k, v = layer.keys, layer.values
            prefix_kv.append((k[:1, :, first].clone(), v[:1, :, first].clone()))
            layers.append(
                GrowingLayer(
                    k.gather(2, cols[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])),
                    v.gather(2, cols[:, None, :, None].expand(-1, v.shape[1], -1, v.shape[3])),
                )
            )
        self.cache.layers = layers
        self.ids, self.mask = self.ids.gather(1, cols), self.mask.gather(1, cols)
        self.prefix_ids = (self.seqs[0].prompt_ids + self.seqs[0].token_ids)[:keep]
        self.prefix_kv = prefix_kv

    def _merge(self, seqs, ids: torch.Tensor, mask: torch.Tensor, cache, logits: torch.Tensor, next_pos=None):
        """Join prefilled rows (left-padded `ids`/`mask`, their cache and next-token logits) to the batch."""
        width = ids.shape[1]
        next_pos = mask.sum(-1) if next_pos is None else next_pos
        if not self.seqs:
            if cache is not None:  # a copy, so a prefill plug-in's stored tensors are never written to
                cache.layers = [_growing(layer) for layer in cache.layers]
            self.seqs, self.ids, self.mask, self.cache = list(seqs), ids, mask, cache
            self.next_pos, self.pending = next_pos, logits
            return
        if not self.can_merge:
            raise TenfoldError(
                "this model's cache layers cannot be merged into a running batch; wait until it drains"
            )
        # Left-pad the narrower of (running, new) so both have the same number of columns, then stack rows.
        old_w, new_w = self.ids.shape[1], width
        w = max(old_w, new_w)
        self.ids = torch.cat(
            [
                _pad_left(self.ids, w - old_w, 1, self.tok.pad_id),
                _pad_left(ids, w - new_w, 1, self.tok.pad_id),
            ]
        )
        self.mask = torch.cat([_pad_left(self.mask, w - old_w, 1), _pad_left(mask, w - new_w, 1)])
        if self.use_cache:
            self.cache.layers = [
                GrowingLayer(
                    torch.cat([_pad_left(old.keys, w - old_w, 2), _pad_left(new.keys, w - new_w, 2)]),
                    torch.cat([_pad_left(old.values, w - old_w, 2), _pad_left(new.values, w - new_w, 2)]),
                )
                for old, new in zip(self.cache.layers, cache.layers, strict=True)
            ]
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.pending = torch.cat([self.pending, logits])
        self.seqs.extend(seqs)

    @property
    def can_merge(self) -> bool:
        return self.cache is None or all(
            type(layer) in (DynamicLayer, GrowingLayer) for layer in self.cache.layers
        )

    # decoding --------------------------------------------------------------------------------------
    def _forward(self, ids, mask, pos, cache) -> torch.Tensor:
        extra = {"prefix_kv": self.prefix_kv} if self.prefix_kv is not None else {}
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            cache=cache,
            use_cache=cache is not None,
            logits_to_keep=1,
            **extra,
        )
        return out.logits[:, -1, :].float()

    @torch.no_grad()
    def step(self) -> list[SeqState]:
        """Emit one token for every active sequence; return the sequences that finished."""
        if not self.seqs:
            return []
        logits = self.pending
        state = None
        if self.hook is not None:
            state = StepState(self.steps, self.seqs, logits, _entropy(logits))
            self.hook(state)
        tokens: list[int] = []
        for s, t in zip(self.seqs, _choose(logits, self.seqs, state.forced if state else {}), strict=True):
            if isinstance(t, Exception):
                s.finish_reason, s.error = "error", t
                t = self.tok.pad_id
            tokens.append(t)
        chosen = torch.tensor(tokens, device=logits.device)[:, None]
        logp_all = torch.log_softmax(logits, dim=-1)
        logps = logp_all.gather(1, chosen)[:, 0].tolist()  # one device sync
        k = max(s.params.top_logprobs for s in self.seqs)
        top = None
        if k:
            vals, idx = logp_all.topk(k, dim=-1)
            top = list(zip(idx.tolist(), vals.tolist(), strict=True))
        for i, s in enumerate(self.seqs):
            if s.finish_reason == "error":
                continue
            if state is not None and i in state.stopped:
                s.finish_reason = "hook"
            else:
                if s.params.top_logprobs:
                    ids, vals = top[i]
                    s.top_logprobs.append(list(zip(ids, vals, strict=True))[: s.params.top_logprobs])
                self._append(s, tokens[i], logps[i])
        self.steps += 1
        keep = [i for i, s in enumerate(self.seqs) if s.finish_reason is None]
        done = [s for s in self.seqs if s.finish_reason is not None]
        for s in done:
            if not s.cut_at_stop and s.finish_reason != "error":  # hand out held-back partial UTF-8 bytes
                s.detok.flush()
                s.text = s.detok.text
        if len(keep) < len(self.seqs):
            self._select(keep)
        if self.seqs:
            new = torch.tensor([[tokens[i]] for i in keep], dtype=torch.long, device=self.device)
            self._advance(new)
        return done

    def _append(self, s: SeqState, tok: int, logprob: float) -> None:
        if tok in s.stop_ids:
            s.token_ids.append(tok)
            s.logprobs.append(logprob)
            s.finish_reason = "stop"
            return
        s.token_ids.append(tok)
        s.logprobs.append(logprob)
        if s.params.frequency_penalty or s.params.presence_penalty:
            s.counts[tok] = s.counts.get(tok, 0) + 1
        before = len(s.detok.text)
        s.detok.push(tok)
        s.text = s.detok.text
        for stop in s.params.stop:
            at = s.text.find(stop, max(0, before - len(stop) + 1))
            if at >= 0:
                s.text = s.text[:at]
                s.finish_reason = "stop"
                s.cut_at_stop = True
                return
        if (
            len(s.token_ids) >= s.params.max_new_tokens
            or len(s.prompt_ids) + len(s.token_ids) >= self.context
        ):
            s.finish_reason = "length"

    def _select(self, keep: list[int]) -> None:
        """Drop finished rows, then drop leading columns that are padding in every remaining row."""
        self.seqs = [self.seqs[i] for i in keep]
        if not keep:
            self.ids = self.ids[:0]
            self.mask = self.mask[:0]
            self.next_pos = self.next_pos[:0]
            self.cache, self.pending = None, None
            self.prefix_ids, self.prefix_kv = [], None
            return
        idx = torch.tensor(keep, device=self.device)
        self.ids, self.mask = self.ids[idx], self.mask[idx]
        self.next_pos, self.pending = self.next_pos[idx], self.pending[idx]
        cut = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # all-pad prefix length
        self.ids, self.mask = self.ids[:, cut:], self.mask[:, cut:]
        if self.cache is not None:
            self.cache.layers = [
                GrowingLayer(layer.keys[idx, :, cut:], layer.values[idx, :, cut:])
                for layer in self.cache.layers
            ]
        if len(keep) < self.MIN_ROWS and self.prefix_ids:  # few rows left: plain SDPA is faster
            self._shrink_prefix(0)

    def _advance(self, new: torch.Tensor) -> None:
        ones = torch.ones_like(new)
        self.ids = torch.cat([self.ids, new], 1)
        self.mask = torch.cat([self.mask, ones], 1)
        if self.use_cache:
            mask = self.mask if self.prefix_kv is None else self.mask.bool()[:, None, None, :]
            self.pending = self._forward(new, mask, self.next_pos[:, None], self.cache)
        else:  # recompute the whole prefix every step (the no-cache baseline)
            self.pending = self._forward(self.ids, self.mask, (self.mask.cumsum(-1) - 1).clamp(min=0), None)
        self.next_pos = self.next_pos + 1


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

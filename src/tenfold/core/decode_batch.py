"""`DecodeBatch`: the running batch of sequences that prefill and decode together, with one KV cache.

It holds the active sequences of one batch, left-padded, with one `DynamicCache` whose rows are the
sequences (its layers are `kv_layers.BufferLayer`s, which append in place). Sequences can join a
running batch (`add`: their prompts are prefilled, then their KV rows are left-padded and concatenated
with the running ones) and leave it when finished (their rows are dropped), which is what continuous
batching in the server needs.

Why left padding is exact: every sequence carries its own position ids, and pad columns are masked
out of attention, so a real token never sees a pad token; RoPE is applied before keys are cached,
so padding a KV cache on the left does not move any real key. A sequence's output therefore does not
depend on what it is batched with (up to float round-off in the matmuls).

A prompt start that enough rows have in common is stored and read once (`shared_prefix`): the batch
keeps its tokens in `prefix_ids` and its K/V in `prefix_kv`, outside the rows' KV cache.

An error in the batch's shared forward pass is the caller's to handle; `rebuild` re-prefills a set of
running sequences from their tokens so far, which lets the engine find and drop the one that fails.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tenfold.core import shared_prefix
from tenfold.core.errors import TenfoldError
from tenfold.core.kv_layers import BufferLayer
from tenfold.core.models import context_length
from tenfold.core.sampling import (
    Hook,
    Prefill,
    SamplingParams,
    SeqState,
    StepState,
    _choose,
    _entropy,
    new_sequence,
)


def _growing(layer):
    """`layer` as a growable BufferLayer (a copy of its valid K/V); other layer kinds are left as they are."""
    if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
        return BufferLayer.holding(layer.keys, layer.values)
    return layer


def _pad_left(t: torch.Tensor, width: int, dim: int, value=0) -> torch.Tensor:
    if width == 0:
        return t
    shape = list(t.shape)
    shape[dim] = width
    return torch.cat([t.new_full(shape, value), t], dim=dim)


class DecodeBatch:
    """A running batch of sequences sharing one left-padded KV cache (see module docstring).

    Usage: `add([batch.new_sequence(i, prompt_ids, params), ...])`; then `step()` until `not batch.seqs`;
    each `step()` emits one token per active sequence and returns the sequences that finished in that step.
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
        # plug-in, whose KV caches cover whole prompts.
        self.share = share_prefix and use_cache and self.prefill is None and shared_prefix.enable(model)
        self.prefix_ids: list[int] = []  # tokens of the shared prefix (its K/V in `prefix_kv`)
        self.prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.device = next(model.parameters()).device
        self.context = context_length(model)
        self.seqs: list[SeqState] = []
        self.ids = torch.empty(0, 0, dtype=torch.long, device=self.device)  # (B, L) tokens incl. pads
        self.mask = torch.empty(0, 0, dtype=torch.long, device=self.device)  # (B, L) 1 = real token
        self.next_pos = torch.empty(0, dtype=torch.long, device=self.device)  # (B,) next position id
        self.kv: DynamicCache | None = None  # the rows' KV cache (None: no rows yet, or use_cache=False)
        self.pending: torch.Tensor | None = None  # (B, vocab) logits for each sequence's next token
        self.steps = 0

    # joining ---------------------------------------------------------------------------------------
    def new_sequence(self, index: int, prompt_ids: Sequence[int], params: SamplingParams) -> SeqState:
        return new_sequence(self.model, self.tok, index, prompt_ids, params)

    def rebuild(self, seqs: Sequence[SeqState]) -> DecodeBatch:
        """A new batch like this one holding `seqs` (running sequences from any batch), prefilled from
        their prompts and the tokens they have emitted so far, so they continue exactly where they were.
        Used to recover from a failed step: the failed batch's KV cache may be half-updated."""
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
        fills (it returns a KV cache and the next-token logits) join as they are, the rest are prefilled
        here in one batched forward pass.
        """
        if self.prefill is not None:
            rest = []
            for s in seqs:
                got = self.prefill(s.prompt_ids) if not s.token_ids else None
                if got is None:
                    rest.append(s)
                    continue
                kv, logits = got
                ids = torch.tensor([s.prompt_ids], dtype=torch.long, device=self.device)
                self._merge([s], ids, torch.ones_like(ids), kv, logits.reshape(1, -1).float())
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
        kv = DynamicCache(config=self.model.config) if self.use_cache else None
        pos = start + (mask.cumsum(-1) - 1).clamp(min=0)
        if self.prefix_kv is None:
            logits = self._forward(ids, mask, pos, kv)
        else:  # causal within each row's own tokens (left-padded); the prefix is visible to all
            causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
            logits = self._forward(ids, causal & mask.bool()[:, None, None, :], pos, kv)
        self._merge(seqs, ids, mask, kv, logits, start + mask.sum(-1))

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
            kv = DynamicCache(config=self.model.config)
            self._forward(ids, torch.ones_like(ids), torch.arange(keep, device=self.device)[None], kv)
            self.prefix_ids = list(prompts[0][:keep])
            self.prefix_kv = [(layer.keys, layer.values) for layer in kv.layers]
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
        self.kv.layers = [
            BufferLayer.holding(
                torch.cat([pk[:, :, keep:].expand(b, -1, -1, -1), layer.keys], 2),
                torch.cat([pv[:, :, keep:].expand(b, -1, -1, -1), layer.values], 2),
            )
            for (pk, pv), layer in zip(self.prefix_kv, self.kv.layers, strict=True)
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
        for layer in self.kv.layers:
            k, v = layer.keys, layer.values
            prefix_kv.append((k[:1, :, first].clone(), v[:1, :, first].clone()))
            layers.append(
                BufferLayer.holding(
                    k.gather(2, cols[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])),
                    v.gather(2, cols[:, None, :, None].expand(-1, v.shape[1], -1, v.shape[3])),
                )
            )
        self.kv.layers = layers
        self.ids, self.mask = self.ids.gather(1, cols), self.mask.gather(1, cols)
        self.prefix_ids = (self.seqs[0].prompt_ids + self.seqs[0].token_ids)[:keep]
        self.prefix_kv = prefix_kv

    def _merge(self, seqs, ids: torch.Tensor, mask: torch.Tensor, kv, logits: torch.Tensor, next_pos=None):
        """Join prefilled rows (left-padded `ids`/`mask`, their KV cache and next-token logits) to the batch."""
        width = ids.shape[1]
        next_pos = mask.sum(-1) if next_pos is None else next_pos
        if not self.seqs:
            if kv is not None:  # a copy, so a prefill plug-in's stored tensors are never written to
                kv.layers = [_growing(layer) for layer in kv.layers]
            self.seqs, self.ids, self.mask, self.kv = list(seqs), ids, mask, kv
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
            self.kv.layers = [
                BufferLayer.holding(
                    torch.cat([_pad_left(old.keys, w - old_w, 2), _pad_left(new.keys, w - new_w, 2)]),
                    torch.cat([_pad_left(old.values, w - old_w, 2), _pad_left(new.values, w - new_w, 2)]),
                )
                for old, new in zip(self.kv.layers, kv.layers, strict=True)
            ]
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.pending = torch.cat([self.pending, logits])
        self.seqs.extend(seqs)

    @property
    def can_merge(self) -> bool:
        """Whether sequences can join now: the running rows' KV layers are ones this batch re-pads and
        concatenates (plain `DynamicLayer`s and its own growable buffers)."""
        return self.kv is None or all(
            type(layer) is DynamicLayer or (type(layer) is BufferLayer and layer.growable)
            for layer in self.kv.layers
        )

    # decoding --------------------------------------------------------------------------------------
    def _forward(self, ids, mask, pos, kv) -> torch.Tensor:
        extra = {"prefix_kv": self.prefix_kv} if self.prefix_kv is not None else {}
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            cache=kv,
            use_cache=kv is not None,
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
            self.kv, self.pending = None, None
            self.prefix_ids, self.prefix_kv = [], None
            return
        idx = torch.tensor(keep, device=self.device)
        self.ids, self.mask = self.ids[idx], self.mask[idx]
        self.next_pos, self.pending = self.next_pos[idx], self.pending[idx]
        cut = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # all-pad prefix length
        self.ids, self.mask = self.ids[:, cut:], self.mask[:, cut:]
        if self.kv is not None:
            self.kv.layers = [
                BufferLayer.holding(layer.keys[idx, :, cut:], layer.values[idx, :, cut:])
                for layer in self.kv.layers
            ]
        if len(keep) < self.MIN_ROWS and self.prefix_ids:  # few rows left: plain SDPA is faster
            self._shrink_prefix(0)

    def _advance(self, new: torch.Tensor) -> None:
        ones = torch.ones_like(new)
        self.ids = torch.cat([self.ids, new], 1)
        self.mask = torch.cat([self.mask, ones], 1)
        if self.use_cache:
            mask = self.mask if self.prefix_kv is None else self.mask.bool()[:, None, None, :]
            self.pending = self._forward(new, mask, self.next_pos[:, None], self.kv)
        else:  # recompute the whole prefix every step (the no-cache baseline)
            self.pending = self._forward(self.ids, self.mask, (self.mask.cumsum(-1) - 1).clamp(min=0), None)
        self.next_pos = self.next_pos + 1

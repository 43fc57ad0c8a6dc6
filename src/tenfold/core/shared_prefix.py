"""Attention over a prompt prefix that every row of a batch shares, read once per step.

Batched requests often start the same way: a system prompt, or, in Skeleton Graph Decoding, the
question and plan that every point's prompt repeats. A plain batched KV cache stores that prefix once
per row, and every decode step reads all the copies; on a CPU that memory traffic, not arithmetic, is
what makes a batched step slower than a single-sequence one. Here the batch keeps one copy of the
shared prefix's K/V and each row's own suffix. Attention is split the way shared-prefix kernels split
it (Hydragen, Juravsky et al. 2024; cascade inference in FlashInfer): the queries of all rows are
stacked into one matrix product against the shared keys, each row attends to its own suffix, and one
softmax over the concatenated scores joins the two, so the result is exact attention over
prefix + suffix (up to float round-off).

Decoding never needs the cached columns in position order (every cached key is in a query's past and
RoPE was applied before caching), so the prefix can live apart from the rows, and columns that leave
the prefix can be appended to the rows in any order.

`enable(model)` routes the model's attention through `attention` below, which is plain SDPA unless a
forward call passes `prefix_kv` (one `(keys, values)` pair per layer, batch size 1).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "tenfold_shared_prefix"
# Model types whose attention calls the pluggable attention interface after `cache.update` and takes
# extra forward kwargs through to it (checked for these; others keep their own attention).
SUPPORTED = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen3"})


def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, prefix_kv=None, **kwargs):
    """Attention over [shared prefix] + [each row's own keys]; SDPA when no prefix is passed.

    query (B, H, Q, D); key/value (B, Hkv, S, D), the rows' own columns; attention_mask (B, 1, Q, S)
    bool, True where a query may see a row column (the prefix is visible to every query).
    """
    if prefix_kv is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    pk, pv = prefix_kv[module.layer_idx]
    b, h, q, d = query.shape
    groups = h // key.shape[1]
    if groups > 1:  # grouped-query attention: each KV head serves `groups` query heads
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
        pk, pv = pk.repeat_interleave(groups, 1), pv.repeat_interleave(groups, 1)
    scale = scaling if scaling is not None else d**-0.5
    p = pk.shape[-2]
    stacked = query.transpose(0, 1).reshape(1, h, b * q, d)  # all rows' queries against one prefix
    s_prefix = (stacked @ pk.transpose(-1, -2)).reshape(h, b, q, p).transpose(0, 1)
    s_own = (query @ key.transpose(-1, -2)).masked_fill(~attention_mask, float("-inf"))
    probs = (torch.cat([s_prefix, s_own], -1) * scale).float().softmax(-1).to(query.dtype)
    p_prefix = probs[..., :p].transpose(0, 1).reshape(1, h, b * q, p)
    out = (p_prefix @ pv).reshape(h, b, q, -1).transpose(0, 1) + probs[..., p:] @ value
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def supported(model) -> bool:
    cfg = model.config
    return getattr(cfg, "model_type", None) in SUPPORTED and cfg._attn_implementation in ("sdpa", NAME)


def enable(model) -> bool:
    """Route `model`'s attention through `attention` (identical to SDPA without `prefix_kv`); False when
    the model is not one this is checked for, which then decodes without sharing."""
    if not supported(model):
        return False
    model.config._attn_implementation = NAME
    return True


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common prefix of token lists."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for other in seqs[1:]:
        i = 0
        while i < n and other[i] == first[i]:
            i += 1
        n = i
    return n

"""Automatic prefix caching in memory: reuse the KV of the longest prompt prefix seen before.

What vLLM's automatic prefix caching does for a multi-turn agent: step t's prompt is step t-1's prompt
plus one reply and one observation, so only those new tokens need a forward pass. `PrefixCachePrefill`
is an engine prefill plug-in (`sampler.Prefill`): for each new prompt it finds the cached prompt with
the longest common token prefix, starts from a view of that prompt's KV (no copy: the cache layers grow
by concatenation, so the stored tensors are never written), runs the model on the remaining tokens,
and stores the result. An entry that is a prefix of the new prompt is replaced by it, so one
conversation holds one entry. Entries are evicted least-recently-used beyond `max_bytes`.

Use it with `tenfold serve --prefix-cache-gb N`, `create_app(..., prefill=)` or `LocalBackend(prefill=)`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from tenfold.core.errors import TenfoldError


@dataclass
class _Entry:
    ids: np.ndarray
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, (1, kv_heads, len(ids), head_dim)
    nbytes: int


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two 1-D integer arrays."""
    m = min(len(a), len(b))
    diff = np.flatnonzero(a[:m] != b[:m])
    return int(diff[0]) if len(diff) else m


class PrefixCachePrefill:
    """Callable `prompt_ids -> (DynamicCache, next-token logits)` that reuses cached prefixes."""

    def __init__(self, model, max_bytes: int = 1 << 30, min_reuse: int = 1):
        if max_bytes <= 0:
            raise TenfoldError(f"prefix cache size must be positive, got {max_bytes} bytes")
        self.model, self.max_bytes, self.min_reuse = model, max_bytes, max(1, min_reuse)
        self.device = next(model.parameters()).device
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_id = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.reused_tokens = self.computed_tokens = 0

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict:
        return {
            "entries": len(self),
            "bytes": self.nbytes,
            "hits": self.hits,
            "misses": self.misses,
            "reused_tokens": self.reused_tokens,
            "computed_tokens": self.computed_tokens,
        }

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _lookup(self, ids: np.ndarray) -> tuple[int | None, int]:
        best, best_len = None, 0
        for key, e in self._entries.items():
            n = min(common_prefix(e.ids, ids), len(ids) - 1)  # leave at least one token to compute
            if n > best_len:
                best, best_len = key, n
        return best, best_len

    @torch.no_grad()
    def __call__(self, prompt_ids: list[int]):
        ids = np.asarray(prompt_ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) == 0:
            raise TenfoldError("prefix cache got an empty prompt")
        with self._lock:
            key, n = self._lookup(ids)
            if n < self.min_reuse:
                key, n = None, 0
            base = self._entries[key] if key is not None else None
            if key is not None:
                self._entries.move_to_end(key)
        cache = DynamicCache(config=self.model.config)
        if base is not None:
            if not cache.layers:
                cache.layers = [DynamicLayer() for _ in base.kv]
            for layer, (k, v) in zip(cache.layers, base.kv, strict=True):
                layer.lazy_initialization(k[:, :, :n], v[:, :, :n])
                layer.keys, layer.values = k[:, :, :n], v[:, :, :n]
        x = torch.as_tensor(ids[n:], device=self.device).reshape(1, -1)
        pos = torch.arange(n, len(ids), device=self.device).reshape(1, -1)
        out = self.model(input_ids=x, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1)
        logits = out.logits[0, -1].float()
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        entry = _Entry(ids, kv, sum(k.nbytes + v.nbytes for k, v in kv))
        with self._lock:
            self.hits += base is not None
            self.misses += base is None
            self.reused_tokens += n
            self.computed_tokens += len(ids) - n
            old = self._entries.get(key) if key is not None else None
            if old is not None and len(old.ids) <= len(ids) and common_prefix(old.ids, ids) == len(old.ids):
                del self._entries[key]  # the new prompt extends it: keep only the longer one
            self._entries[self._next_id] = entry
            self._next_id += 1
            while self.nbytes > self.max_bytes and len(self._entries) > 1:
                self._entries.popitem(last=False)
        return cache, logits

    def metrics(self) -> dict[str, float]:
        """Counters for the server's /metrics (`tenfold_prefill_<name>`)."""
        s = self.stats()
        return {
            "prefix_cache_entries": s["entries"],
            "prefix_cache_bytes": s["bytes"],
            "prefix_cache_hits_total": s["hits"],
            "prefix_cache_misses_total": s["misses"],
            "prefix_cache_reused_tokens_total": s["reused_tokens"],
            "prefix_cache_computed_tokens_total": s["computed_tokens"],
        }

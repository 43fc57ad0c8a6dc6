"""A preallocated KV cache for one prompt that compute and I/O fill in place, from opposite ends.

(The prompt's K/V in memory while it is prefilled; the chunks on disk are `store.KVStore`.)
Hugging Face's `DynamicCache` grows by concatenation, so a chunked prefill copies the whole KV cache
at every chunk (quadratic copying) and loaded chunks would need one more concatenation at the meeting
point. `PrefixCache` allocates each layer's K/V for the whole prompt once (core's `BufferLayer`): the
model's forward writes chunk i at its positions and attends to a view of the valid head; the I/O worker
copies loaded chunks straight into their final positions. Joining head and tail is then free: the
valid length jumps to the end of the loaded tail.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from tenfold.core.kv_layers import BufferLayer


class PrefixCache(Cache):
    """A `transformers` KV cache of `layers` fixed BufferLayers for one sequence of up to `capacity` tokens."""

    def __init__(self, layers: int, capacity: int, kv_heads: int, head_dim: int, dtype, device):
        super().__init__(
            layers=[BufferLayer.empty(capacity, kv_heads, head_dim, dtype, device) for _ in range(layers)]
        )
        self.capacity = capacity

    @classmethod
    def for_model(cls, model, capacity: int) -> PrefixCache:
        c = model.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        p = next(model.parameters())
        return cls(c.num_hidden_layers, capacity, c.num_key_value_heads, head_dim, p.dtype, p.device)

    def set_length(self, length: int) -> None:
        for layer in self.layers:
            layer.set_length(length)

    def write(
        self, start: int, kv: list[tuple[torch.Tensor, torch.Tensor]], non_blocking: bool = False
    ) -> None:
        """Copy per-layer (K, V) of shape (kv_heads, n, head_dim) into positions start..start+n."""
        if len(kv) != len(self.layers):
            raise ValueError(f"{len(kv)} layers of K/V for a cache of {len(self.layers)} layers")
        dst, src = [], []
        for layer, (k, v) in zip(self.layers, kv, strict=True):
            n = k.shape[-2]
            dst += [layer.kbuf[0, :, start : start + n], layer.vbuf[0, :, start : start + n]]
            src += [k, v]
        # one call for all layers: the GIL is released once, not 2L times, which matters when the
        # I/O worker writes while the compute worker runs the model (Cake)
        torch._foreach_copy_(dst, src, non_blocking=non_blocking)

    def chunk(self, start: int, end: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views of positions start..end of every layer, each (kv_heads, end-start, head_dim)."""
        return [(layer.kbuf[0, :, start:end], layer.vbuf[0, :, start:end]) for layer in self.layers]

    def to_dynamic(self, config=None) -> DynamicCache:
        """A plain DynamicCache over the valid positions, sharing this cache's memory (no copy); it is
        what a running decode batch can merge. Its first append copies, so this cache stays intact."""
        out = DynamicCache(config=config)
        if not out.layers:
            out.layers = [DynamicLayer() for _ in self.layers]
        for mine, theirs in zip(self.layers, out.layers, strict=True):
            theirs.lazy_initialization(mine.keys, mine.values)
            theirs.keys, theirs.values = mine.keys, mine.values
        return out

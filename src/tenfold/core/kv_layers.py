"""A KV-cache layer that appends in place: one layer type for the decode batch and for Cake's prefix KV.

transformers' `DynamicLayer` appends by concatenation, which copies the layer's whole K/V at every
append: at every step of a decode batch (on a CPU that copy was two thirds of a batched decode step)
and at every chunk of a chunked prefill (quadratic copying). `BufferLayer` keeps K/V in a buffer with
room after the valid positions; an append writes its positions in place, and `keys`/`values` are views
of the valid positions, as the model's attention expects.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class BufferLayer(DynamicLayer):
    """One layer's K/V, (rows, kv_heads, positions, head_dim), in buffers `kbuf`/`vbuf` of `capacity`
    positions of which the first `length` are valid.

    Two ways to make one:
    - `BufferLayer.holding(keys, values)`: a copy of `keys`/`values` with room to grow (a decode
      batch's rows, `DecodeBatch`). When the room runs out the buffer grows by half its length
      (amortised O(1) per token).
    - `BufferLayer.empty(capacity, ...)`: room for one sequence of `capacity` positions, allocated
      once (Cake's `PrefixCache`). The buffers never move, so an I/O worker can copy loaded K/V
      straight into them (`set_length` then makes them valid); appending past `capacity` is an error.
    """

    def __init__(self, kbuf: torch.Tensor, vbuf: torch.Tensor, length: int = 0, growable: bool = False):
        super().__init__()
        self.device, self.is_initialized = kbuf.device, True
        self.kbuf, self.vbuf, self.growable = kbuf, vbuf, growable
        self.set_length(length)

    @classmethod
    def holding(cls, keys: torch.Tensor, values: torch.Tensor) -> BufferLayer:
        """A growable buffer holding a copy of `keys`/`values` (the caller's tensors are never written)."""
        n = keys.shape[-2]
        return cls(*_copy_into_new(keys, values, _room_for(n)), n, growable=True)

    @classmethod
    def empty(cls, capacity: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device) -> BufferLayer:
        """A fixed buffer for one sequence of up to `capacity` positions, none valid yet."""
        kbuf = torch.empty(1, kv_heads, capacity, head_dim, dtype=dtype, device=torch.device(device))
        return cls(kbuf, torch.empty_like(kbuf))

    @property
    def capacity(self) -> int:
        return self.kbuf.shape[-2]

    def set_length(self, length: int) -> None:
        """Make the first `length` positions the valid ones (what was written there is kept)."""
        if not 0 <= length <= self.capacity:
            raise ValueError(f"length {length} outside 0..{self.capacity}")
        self.length = length
        self.keys, self.values = self.kbuf[:, :, :length], self.vbuf[:, :, :length]

    def lazy_initialization(self, key_states, value_states) -> None:  # built from tensors instead
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows, end = key_states.shape[0], self.length + key_states.shape[-2]
        if rows != self.kbuf.shape[0] or (end > self.capacity and not self.growable):
            raise ValueError(
                f"this KV buffer holds {self.kbuf.shape[0]} sequence(s) of {self.capacity} positions; "
                f"asked for {rows} of {end}"
            )
        if end > self.capacity:
            self.kbuf, self.vbuf = _copy_into_new(self.keys, self.values, _room_for(end))
        self.kbuf[:, :, self.length : end] = key_states
        self.vbuf[:, :, self.length : end] = value_states
        self.set_length(end)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        self.set_length(self.length - abs(tokens_to_remove))

    def reset(self) -> None:
        self.set_length(0)


def _room_for(length: int) -> int:
    """The capacity given to a growable buffer that must hold `length` positions."""
    return length + max(64, length // 2)


def _copy_into_new(
    keys: torch.Tensor, values: torch.Tensor, capacity: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """New buffers of `capacity` positions (same rows, heads, dtype and device) starting with `keys`/`values`."""
    n = keys.shape[-2]
    kbuf = keys.new_empty(*keys.shape[:2], capacity, keys.shape[-1])
    vbuf = values.new_empty(*values.shape[:2], capacity, values.shape[-1])
    kbuf[:, :, :n], vbuf[:, :, :n] = keys, values
    return kbuf, vbuf

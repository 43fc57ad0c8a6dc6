"""Cake: bidirectional KV-cache loading for long-prefix prefill (Jin et al., ICML 2025).

from tenfold.cake import CakeLoader, KVStore
loader = CakeLoader(model, KVStore("kv/"))
r = loader.prefill(prompt_ids, mode="cake")   # r.cache, r.first_token, r.split_chunk, r.ttft
"""

from tenfold.cake.kvcache import PrefixCache
from tenfold.cake.loader import MODES, CakeLoader, PrefillResult, ideal_split, model_fingerprint
from tenfold.cake.store import ChunkSpec, KVStore, Throttle, prefix_keys

__all__ = [
    "MODES",
    "CakeLoader",
    "ChunkSpec",
    "KVStore",
    "PrefillResult",
    "PrefixCache",
    "Throttle",
    "ideal_split",
    "model_fingerprint",
    "prefix_keys",
]

"""Cake: bidirectional KV-cache loading for long-prefix prefill (Jin et al., ICML 2025).

from tenfold.cake import CakeLoader, KVStore
loader = CakeLoader(model, KVStore("kv/"))
r = loader.prefill(prompt_ids, mode="cake")   # r.cache, r.first_token, r.split_chunk, r.ttft
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.cake.kvcache": ["PrefixCache"],
        "tenfold.cake.loader": ["MODES", "CakeLoader", "PrefillResult", "ideal_split", "model_fingerprint"],
        "tenfold.cake.store": ["ChunkSpec", "KVStore", "Throttle", "prefix_keys"],
    },
)

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

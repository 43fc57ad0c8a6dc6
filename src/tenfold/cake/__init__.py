"""Cake: bidirectional KV-cache loading for long-prefix prefill ("Compute Or Load KV Cache? Why Not
Both?", Jin et al., ICML 2025; arXiv 2410.03065): the prefix's KV is computed from the front while it
is loaded from storage from the back, and the two meet where their speeds balance.

    from tenfold.cake import CakeLoader, KVStore
    loader = CakeLoader(model, KVStore("kv/"))
    r = loader.prefill(prompt_ids, mode="cake")   # r.cache, r.first_token, r.split_chunk, r.ttft

Entry points: `tenfold.cake.api` (`run`, `bench`); CLI `tenfold cake`.
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

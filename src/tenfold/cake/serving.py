"""`tenfold serve --kv-store DIR`: the server's prefill plug-in that reuses stored prefix KV via Cake.

Every prompt with at least one full chunk goes through `CakeLoader.prefill(mode="cake")`: stored
chunks of its prefix are loaded from the back while the head is computed, and the chunks it had to
compute are written to the store in the background, so the next request sharing the prefix finds
them. This is what vLLM + LMCache users run, with Cake's loader in place of LMCache's load-then-compute.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from tenfold.cake.loader import DEFAULT_CHUNK_TOKENS, CakeLoader
from tenfold.cake.store import KVStore

log = logging.getLogger("tenfold.cake")


class StorePrefill:
    """Callable `prompt_ids -> (DynamicCache, logits) | None` for `tenfold.core.engine.Engine`."""

    def __init__(
        self,
        model,
        store_dir,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        max_bytes: int | None = None,
        mode: str = "cake",
        bandwidth_gbps: float | None = None,
    ):
        store = KVStore(store_dir, max_bytes=max_bytes)
        store.throttle.set_gbps(bandwidth_gbps)
        self.loader = CakeLoader(model, store, chunk_tokens, background_save=True)
        self.mode = mode
        self.recent: deque[dict] = deque(maxlen=64)  # what the last requests loaded and computed
        self._lock = threading.Lock()

    def __call__(self, prompt_ids: list[int]):
        if len(prompt_ids) <= self.loader.chunk_tokens:
            return None  # no full chunk to store or reuse: the batch prefills it with the others
        r = self.loader.prefill(prompt_ids, self.mode, save=True)
        info = {
            "tokens": r.n_tokens,
            "loaded_chunks": len(r.loaded),
            "computed_chunks": len(r.computed),
            "split_chunk": r.split_chunk,
            "prefill_s": round(r.ttft, 4),
            "corrupt_chunks": len(r.corrupt),
        }
        with self._lock:
            self.recent.append(info)
        log.info("cake prefill %s", info)
        return r.cache.to_dynamic(self.loader.model.config), r.logits

    def metrics(self) -> dict[str, float]:
        """Counters for the server's /metrics (`tenfold_prefill_<name>`)."""
        st = self.loader.store.stats
        return {
            "kv_store_hits_total": st.hits,
            "kv_store_misses_total": st.misses,
            "kv_store_corrupt_chunks_dropped_total": st.corrupt,
            "kv_store_bytes_read_total": st.bytes_read,
            "kv_store_puts_total": st.puts,
            "kv_store_evictions_total": st.evictions,
            "kv_store_stale_tmp_removed_total": st.stale_tmp_removed,
            "kv_store_write_errors_total": st.write_errors,
        }

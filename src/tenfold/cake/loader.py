"""Three ways to fill a long prompt's KV cache, behind one interface: `CakeLoader.prefill(ids, mode)`.

- `compute_only`: chunked prefill of the whole prompt (vLLM's chunked prefill).
- `io_only`: load the longest stored prefix from the store, then prefill the rest (LMCache).
- `cake` (Jin et al., "Compute Or Load KV Cache? Why Not Both?", ICML 2025, Algorithm 1): a compute
  worker prefills chunks forward from chunk 0 while an I/O worker loads stored chunks backward from
  the last one. After each chunk the compute worker checks whether its next chunk is already loaded;
  if so they have met: head (computed) and tail (loaded) form the prefix, and the uncached suffix is
  prefilled. Nothing is profiled, so the meeting point follows the storage and compute speed of the
  moment, including changes mid-request.

Beyond the paper (which has no fallback and loses to I/O-only by up to 20% when compute is scarce):
the meeting test also runs inside a chunk. A forward pre-hook on every leaf module of every decoder
layer (projections, norms) lets the I/O worker take over the chunk the compute worker is working on
the moment that chunk is loaded, so neither side waits for the other to finish a chunk (at most for
one matmul). In the extreme cases this makes Cake
degrade to the better baseline instead of losing to it: with instant storage the I/O worker loads
everything, including chunk 0, and compute is abandoned; with very slow storage compute does it all.

The time per request is `ttft`: from the call to the first token's logits (planning, hashing and the
store lookups included). Saving newly computed chunks happens after, optionally in the background.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from tenfold.cake.kvcache import PrefixCache
from tenfold.cake.store import ChunkSpec, KVStore, prefix_keys
from tenfold.core.errors import ContextLengthError, TenfoldError
from tenfold.core.models import context_length

log = logging.getLogger("tenfold.cake.loader")

MODES = ("compute_only", "io_only", "cake")
DEFAULT_CHUNK_TOKENS = 256  # LMCache's chunk; the paper's compute step is 512 and its I/O unit 128


def model_fingerprint(model) -> str:
    """A hash of the model's config, dtype and a strided sample of every weight (256 values each).

    Two models with different weights (a fine-tune, another seed) get different fingerprints, so
    their KV chunks never mix; hashing a sample keeps this fast for multi-GB checkpoints.
    """
    h = hashlib.sha256(type(model).__name__.encode())
    h.update(model.config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 256)].float().cpu()
            h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()[:32]


def _decoder_layers(model):
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList) and len(obj) > 0:
            return obj
    return None


class _Preempted(Exception):
    """Raised inside the model's forward when the I/O worker has delivered the chunk being computed."""


@dataclass
class PrefillResult:
    """The filled KV cache, the first token, and how the prompt was split between compute and I/O."""

    cache: PrefixCache
    logits: torch.Tensor  # (vocab,) float32: the distribution of the first generated token
    first_token: int  # greedy choice from `logits`
    mode: str
    n_tokens: int
    chunk_tokens: int
    n_chunks: int  # full chunks eligible for the store (the last prompt token is never stored)
    split_chunk: int  # compute did chunks [0, split_chunk); loaded chunks start here
    tail_end: int  # chunks [tail_end, n_chunks) and the remainder were prefilled after the meeting
    computed: list[int] = field(default_factory=list)
    loaded: list[int] = field(default_factory=list)
    compute_times: dict[int, float] = field(default_factory=dict)  # chunk -> seconds
    load_times: dict[int, float] = field(default_factory=dict)  # chunk -> seconds (paced)
    suffix_seconds: float = 0.0  # everything prefilled after the meeting point
    query_seconds: float = 0.0  # of which the final, never-stored partial chunk
    ttft: float = 0.0
    corrupt: list[int] = field(default_factory=list)  # chunks that failed to load (recomputed)
    preempted: bool = False  # the I/O worker took over a chunk mid-compute
    saved: int = 0  # chunks written (or queued for writing) to the store


class _Meeting:
    """State shared by the compute worker (the caller's thread) and the I/O worker."""

    def __init__(self, low: int):
        self.lock = threading.Lock()
        self.low = low  # lowest chunk loaded into the cache (tail is [low, tail_end))
        self.computed = 0  # chunks [0, computed) are computed
        self.computing: int | None = None
        self.staged: list | None = None  # a chunk loaded while compute was working on it
        self.preempt = False
        self.stop = threading.Event()


class CakeLoader:
    """Fills one prompt's KV cache by computing, loading, or both (Cake), from a `KVStore`.

    Works with any Hugging Face causal LM whose cache layers follow `DynamicLayer` (Llama, Mistral,
    Qwen, Mixtral, ...): our presets or a local checkpoint. `store=None` gives compute-only prefill.
    """

    def __init__(
        self,
        model,
        store: KVStore | None,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        fingerprint: str | None = None,
        preempt: bool = True,
        background_save: bool = False,
    ):
        if chunk_tokens <= 0:
            raise TenfoldError(f"chunk_tokens must be a positive number of tokens, got {chunk_tokens}")
        self.model, self.store, self.chunk_tokens = model.eval(), store, chunk_tokens
        self.device = next(model.parameters()).device
        self.fingerprint = fingerprint or model_fingerprint(model)
        self.context = context_length(model)
        self.spec = self._spec(model)
        layers = _decoder_layers(model) if preempt else None
        # preemption points: every leaf module (projections, norms) of every decoder layer, so the
        # compute worker notices a handover within one matmul rather than one whole layer
        self._preempt_points = (
            None
            if layers is None
            else [m for layer in layers for m in layer.modules() if next(m.children(), None) is None]
        )
        self._side_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._writes: queue.Queue | None = None
        if background_save:
            self._writes = queue.Queue()
            threading.Thread(target=self._writer, name="cake-writer", daemon=True).start()

    def _spec(self, model) -> ChunkSpec:
        c = model.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        dtype = next(model.parameters()).dtype
        return ChunkSpec(c.num_hidden_layers, c.num_key_value_heads, self.chunk_tokens, head_dim, dtype)

    # planning ----------------------------------------------------------------------------------------
    def keys(self, ids: list[int]) -> list[str]:
        """Store keys of the prompt's storable chunks: full chunks before the last token."""
        return prefix_keys(self.fingerprint, ids, self.chunk_tokens, (len(ids) - 1) // self.chunk_tokens)

    def stored(self, ids: list[int]) -> list[bool]:
        if self.store is None:
            return [False] * ((len(ids) - 1) // self.chunk_tokens)
        return [self.store.contains(k) for k in self.keys(ids)]

    # the three loaders -------------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, prompt_ids, mode: str = "cake", save: bool = True) -> PrefillResult:
        """Fill the KV cache of `prompt_ids` with `mode`; store its new chunks when `save`."""
        t0 = time.perf_counter()
        if mode not in MODES:
            raise TenfoldError(f"unknown prefill mode {mode!r}; choose one of {MODES}")
        ids = [int(t) for t in prompt_ids]
        if not ids:
            raise TenfoldError("prompt is empty: give at least one token")
        if len(ids) >= self.context:
            raise ContextLengthError(
                f"prompt of {len(ids)} tokens does not fit the model's context of {self.context} tokens"
            )
        C = self.chunk_tokens
        keys = self.keys(ids)
        n = len(keys)
        present = (
            [False] * n
            if self.store is None or mode == "compute_only"
            else [self.store.contains(k) for k in keys]
        )
        cache = PrefixCache.for_model(self.model, len(ids))
        res = PrefillResult(cache, torch.empty(0), -1, mode, len(ids), C, n, 0, 0)

        if mode == "io_only":
            p = 0
            while p < n and present[p]:
                t = time.perf_counter()
                kv = self._get(keys, p)
                if kv is None or not self._write_loaded(cache, keys, p, kv):
                    res.corrupt.append(p)
                    break  # computed from here on
                res.load_times[p] = time.perf_counter() - t
                res.loaded.append(p)
                p += 1
            res.split_chunk = res.tail_end = p
        elif mode == "cake":
            self._meet(ids, keys, present, cache, res)
        # the uncached remainder, prefilled on top of head + tail, in compute-sized steps
        cache.set_length(res.tail_end * C)
        start = res.tail_end * C
        ts = time.perf_counter()
        while start < len(ids):
            end = min(start + C, len(ids))
            tc = time.perf_counter()
            logits = self._forward(cache, ids[start:end])
            if end <= n * C:  # a storable chunk (the rest is the final partial chunk)
                res.computed.append(start // C)
                res.compute_times[start // C] = time.perf_counter() - tc
            else:
                res.query_seconds += time.perf_counter() - tc
            start = end
        res.suffix_seconds = time.perf_counter() - ts
        res.logits = logits
        res.first_token = int(logits.argmax())
        res.ttft = time.perf_counter() - t0
        if save and self.store is not None:
            res.saved = self._save(cache, keys, present, res)
        return res

    def _forward(self, cache: PrefixCache, ids: list[int]) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=x, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].float()

    def _write(self, cache: PrefixCache, start: int, kv) -> None:
        if self._side_stream is None:
            cache.write(start, kv)
            return
        # GPU: stage in pinned memory, copy on a side stream so the compute stream keeps running
        with torch.cuda.stream(self._side_stream):
            cache.write(start, [(k.pin_memory(), v.pin_memory()) for k, v in kv], non_blocking=True)
        self._side_stream.synchronize()

    def _get(self, keys: list[str], i: int, cancel: threading.Event | None = None):
        """Stored chunk i, or None when it is missing or cannot be loaded for any reason (the store
        already turns corrupt files into misses; this also covers its unexpected errors)."""
        try:
            return self.store.get(keys[i], self.spec, cancel=cancel)
        except Exception as exc:  # noqa: BLE001 - a chunk that cannot be loaded is computed instead
            log.warning("KV chunk %d (%s) could not be loaded, computing it: %r", i, keys[i], exc)
            return None

    def _write_loaded(self, cache: PrefixCache, keys: list[str], i: int, kv) -> bool:
        """Copy loaded chunk i into the cache; False if that failed (compute then overwrites it)."""
        try:
            self._write(cache, i * self.chunk_tokens, kv)
        except Exception as exc:  # noqa: BLE001
            log.warning(
                "KV chunk %d (%s) could not be copied into the cache, computing it: %r", i, keys[i], exc
            )
            return False
        return True

    def _meet(self, ids, keys, present, cache: PrefixCache, res: PrefillResult) -> None:
        """Algorithm 1: compute forward from chunk 0 here, load backward in a worker, stop where they meet."""
        C, n = self.chunk_tokens, len(keys)
        tail_end = n
        while tail_end > 0 and not present[tail_end - 1]:
            tail_end -= 1  # chunks after the last stored one are part of the uncached suffix
        res.tail_end = tail_end
        m = _Meeting(low=tail_end)
        first = tail_end
        while first > 0 and present[first - 1]:
            first -= 1  # the I/O worker covers the contiguous stored run [first, tail_end)
        worker = threading.Thread(
            target=self._load_backward, args=(keys, first, cache, m, res), name="cake-io", daemon=True
        )
        hooks = []
        if self._preempt_points is not None:

            def check(_module, _args):
                if m.preempt:
                    raise _Preempted

            hooks = [point.register_forward_pre_hook(check) for point in self._preempt_points]
        worker.start()
        try:
            i = 0
            while True:
                with m.lock:
                    if i >= m.low:
                        break  # met: chunk i onwards is loaded
                    m.computing = i
                t = time.perf_counter()
                cache.set_length(i * C)
                try:
                    self._forward(cache, ids[i * C : (i + 1) * C])
                except _Preempted:
                    with m.lock:
                        staged, m.staged, m.preempt, m.computing = m.staged, None, False, None
                    if not self._write_loaded(cache, keys, i, staged):
                        res.corrupt.append(i)
                        continue  # compute chunk i after all (the I/O worker has stopped)
                    with m.lock:
                        m.low = i
                    res.loaded.append(i)
                    res.preempted = True
                    break
                with m.lock:
                    m.computing, m.computed = None, i + 1
                    m.staged, m.preempt = None, False  # a handover that arrived after the chunk was done
                res.compute_times[i] = time.perf_counter() - t
                res.computed.append(i)
                i += 1
        finally:
            m.stop.set()  # the worker writes nothing after this; it may still finish a read in the background
            if self.store is not None:
                self.store.throttle.wake()  # cut its paced wait short
            for h in hooks:
                h.remove()
        res.split_chunk = i
        res.loaded.sort()

    def _load_backward(self, keys, first: int, cache: PrefixCache, m: _Meeting, res: PrefillResult) -> None:
        """The I/O worker. It never dies of an error: a chunk it cannot load ends its run, and compute
        covers that chunk and everything below it (m.low only moves past chunks fully written)."""
        try:
            self._load_run(keys, first, cache, m, res)
        except Exception as exc:  # noqa: BLE001 - defensive: the request must still be answered
            log.warning("the KV loader stopped on an unexpected error; computing the rest: %r", exc)

    def _load_run(self, keys, first: int, cache: PrefixCache, m: _Meeting, res: PrefillResult) -> None:
        for j in range(m.low - 1, first - 1, -1):
            with m.lock:
                if m.stop.is_set() or j < m.computed:
                    return
            t = time.perf_counter()
            kv = self._get(keys, j, cancel=m.stop)
            if m.stop.is_set():
                return
            if kv is None:
                res.corrupt.append(j)  # compute will cover it (and everything below)
                return
            with m.lock:
                if m.stop.is_set() or j < m.computed:
                    return
                res.load_times[j] = time.perf_counter() - t
                if m.computing == j:  # compute is inside this chunk: hand it over and stop
                    m.staged, m.preempt = kv, True
                    return
                if not self._write_loaded(cache, keys, j, kv):
                    res.corrupt.append(j)
                    return
                m.low = j
                res.loaded.append(j)

    # saving ------------------------------------------------------------------------------------------
    def _save(self, cache: PrefixCache, keys, present, res: PrefillResult) -> int:
        C, todo = self.chunk_tokens, []
        for i, key in enumerate(keys):
            if not self.store.contains(key):
                todo.append((key, [(k.clone(), v.clone()) for k, v in cache.chunk(i * C, (i + 1) * C)]))
        if self._writes is not None:
            for item in todo:
                self._writes.put(item)
            return len(todo)
        return sum(self._put(key, kv) for key, kv in todo)

    def _put(self, key: str, kv) -> bool:
        try:
            return self.store.put(key, kv)
        except Exception as exc:  # noqa: BLE001 - a failed write only costs a future recompute
            log.warning("could not store KV chunk %s: %r", key, exc)
            return False

    def _writer(self) -> None:
        while True:
            key, kv = self._writes.get()
            try:
                self._put(key, kv)
            finally:
                self._writes.task_done()

    def flush(self) -> None:
        """Wait until background writes have reached the store."""
        if self._writes is not None:
            self._writes.join()


def ideal_split(compute_times: list[float], load_time: float | list[float]) -> tuple[int, float]:
    """The analytic optimum of Cake's split (paper, Sec. 3): the m minimising
    max(sum_{i<m} f(i), sum_{i>=m} g(i)) over m = 0..n, with f the per-chunk compute time and g the
    per-chunk load time (a constant for flat storage). Returns (m*, that max); add the suffix time
    for the ideal TTFT."""
    n = len(compute_times)
    g = [load_time] * n if isinstance(load_time, int | float) else list(load_time)
    if len(g) != n:
        raise TenfoldError(f"{len(g)} load times for {n} chunks")
    best_m, best, head, tail = 0, float("inf"), 0.0, sum(g)
    for m in range(n + 1):
        cost = max(head, tail)
        if cost < best:
            best_m, best = m, cost
        if m < n:
            head += compute_times[m]
            tail -= g[m]
    return best_m, best

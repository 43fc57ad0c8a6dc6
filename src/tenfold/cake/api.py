"""What a Cake user calls: answer a prompt with its prefix's KV loaded backwards from a store while the
head is computed forwards (`run`), and benchmark the loaders (`bench`). The pieces underneath are
public too: `CakeLoader(model, KVStore(dir)).prefill(ids, mode)` in `tenfold.cake.loader`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tenfold.cake.bench import BenchConfig, bench_serving, run_bench
from tenfold.cake.loader import MODES, CakeLoader, PrefillResult
from tenfold.cake.store import KVStore
from tenfold.core.benchkit import isolated
from tenfold.core.errors import TenfoldError


@dataclass
class Answer:
    text: str
    prefill: PrefillResult  # how the prompt's KV was filled: chunks loaded, computed, the split, TTFT


def run(
    prompt: str,
    store: str | Path,
    model: str = "small",
    mode: str = "cake",
    max_tokens: int = 32,
    chunk_tokens: int = 256,
    bandwidth_gbps: float | None = None,
    max_gb: float | None = None,
    device: str | None = None,
) -> Answer:
    """Prefill `prompt` reusing the stored KV of its prefix (`mode`: cake, io_only or compute_only),
    store the chunks that were new, then generate `max_tokens` greedily."""
    from tenfold.core.models import load_model
    from tenfold.core.sampler import DecodeBatch, SamplingParams, encode_prompt

    if mode not in MODES:
        raise TenfoldError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    lm, tok = load_model(model, device)
    kv = KVStore(store, max_bytes=int(max_gb * 2**30) if max_gb else None)
    kv.throttle.set_gbps(bandwidth_gbps)
    loader = CakeLoader(lm, kv, chunk_tokens)
    filled: dict[str, PrefillResult] = {}

    def prefill(prompt_ids):
        r = loader.prefill(prompt_ids, mode)
        filled["r"] = r
        return r.cache.to_dynamic(lm.config), r.logits

    batch = DecodeBatch(lm, tok, prefill=prefill)
    seq = batch.new_sequence(0, encode_prompt(tok, prompt), SamplingParams(max_new_tokens=max_tokens))
    batch.add([seq])
    while batch.seqs:
        batch.step()
    return Answer(seq.text, filled["r"])


def bench(cfg: BenchConfig, quiet: bool = False, threads: int = 1, serving: bool = False) -> dict:
    """TTFT of compute-only, I/O-only and Cake over the bandwidth sweep, in a fresh process with
    `threads` CPU threads; with `serving`, also `tenfold serve --kv-store` on a repeated prefix."""
    result = isolated(run_bench, cfg.validate(), quiet, threads=threads)
    if serving:
        result["serving"] = isolated(bench_serving, cfg.model, cfg.serving_tokens, cfg.serving_requests)
    return result


__all__ = ["MODES", "Answer", "BenchConfig", "CakeLoader", "KVStore", "PrefillResult", "bench", "run"]

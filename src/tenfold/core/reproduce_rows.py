"""The `core` reproduction: what the shared LM core must deliver for every system built on it."""

from __future__ import annotations

from tenfold.core.bench import (
    bench_batched_decode,
    bench_kv_cache,
    bench_serving,
    bench_shared_prefix,
    plot_results,
)
from tenfold.core.benchkit import isolated, write_json
from tenfold.core.reproduce import Context, Row, register


@register(
    "core",
    "shared LM core: KV-cached decoding, batched decoding, one copy of a shared prefix, batched serving",
)
def reproduce(ctx: Context) -> list[Row]:
    # each benchmark in a fresh process, so none inherits another's thread-pool state (see bench.py)
    if ctx.quick:
        kv = isolated(bench_kv_cache, "small", prompt_len=64, new_tokens=96)
        dec = isolated(bench_batched_decode, "small", n=16, prompt_len=64, new_tokens=48)
        srv = isolated(bench_serving, "small", n=16, prompt_len=64, max_tokens=64)
        pre = isolated(bench_shared_prefix, "small", n=8, prefix_len=512, new_tokens=48)
    else:
        kv = isolated(bench_kv_cache, "base", prompt_len=256, new_tokens=256)
        dec = isolated(bench_batched_decode, "base", n=16, prompt_len=128, new_tokens=128)
        srv = isolated(bench_serving, "small", n=16, prompt_len=128, max_tokens=128)
        pre = isolated(bench_shared_prefix, "base", n=16, prefix_len=1024, new_tokens=128)
    results = [kv, dec, srv, pre]
    write_json(results, ctx.out_dir / "core_bench.json")
    plot_results(results, ctx.plot_path("throughput"))

    def detail(r, extra=""):
        tps = ", ".join(f"{a.arm} {a.tokens_per_s:.0f} tok/s" for a in r.arms)
        return f"{r.setup['model']}, {r.setup['threads']} CPU thread(s); {tps}{extra}"

    return [
        Row(
            "KV cache speeds up decoding",
            "standard KV caching",
            "kv_cache_speedup",
            kv.ratio,
            2.0,
            detail=detail(
                kv, f"; {kv.setup['prompt_bytes']}-byte prompt, {kv.setup['new_tokens']} new tokens"
            ),
        ),
        Row(
            "batched decode of 16 prompts beats one at a time",
            "continuous batching",
            "batched_decode_speedup",
            dec.ratio,
            3.0,
            detail=detail(dec),
        ),
        Row(
            "16 concurrent requests served batched vs sequentially",
            "issue #2: >= 3x on small",
            "serving_throughput_ratio",
            srv.ratio,
            3.0,
            detail=detail(srv, f"; peak batch {srv.setup['peak_batch']}"),
        ),
        Row(
            "a batch whose prompts share a prefix keeps one copy of its K/V",
            "shared-prefix attention (Hydragen-style split softmax)",
            "shared_prefix_speedup",
            pre.ratio,
            1.5,
            detail=detail(
                pre,
                f"; {pre.setup['requests']} prompts sharing {pre.setup['prefix_bytes']} bytes, "
                f"{pre.setup['new_tokens']} new tokens each, prefill included",
            ),
        ),
    ]

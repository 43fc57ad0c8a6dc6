"""Measure a device profile on the machine at hand (the paper's profiler, reduced to the cost model's
three numbers): dense matmul throughput, causal attention-core throughput at a sequence length, and
a copy bandwidth standing in for the link (a same-machine upper bound; give `link_gbps` by hand for a
real network)."""

from __future__ import annotations

import platform
import time

from tenfold.hetermoe.costmodel import DeviceProfile


def _time(fn, sync, reps: int) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_profile(
    name: str | None = None, seq: int = 1024, generation: int = 1, reps: int = 5
) -> DeviceProfile:
    import torch

    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    dtype = torch.float16 if cuda else torch.float32
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    n = 4096 if cuda else 1024
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    matmul = 2 * n**3 / _time(lambda: a @ b, sync, reps) / 1e12
    heads, hd = 8, 64
    q, k, v = (torch.randn(1, heads, seq, hd, device=dev, dtype=dtype) for _ in range(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    core_flops = 2 * seq * seq * heads * hd  # the cost model's 2·s·h per token, over s tokens
    core = core_flops / _time(lambda: sdpa(q, k, v, is_causal=True), sync, reps) / 1e12
    buf = torch.empty(64 * 1024 * 1024 // 4, device=dev)
    dst = torch.empty_like(buf)
    gbps = buf.numel() * 4 / _time(lambda: dst.copy_(buf), sync, reps) / 1e9
    mem = torch.cuda.get_device_properties(0).total_memory / 1e9 if cuda else 16.0
    label = name or (torch.cuda.get_device_name(0) if cuda else f"cpu-{platform.machine()}")
    return DeviceProfile(label, matmul, core, gbps, mem, generation=generation).validate()

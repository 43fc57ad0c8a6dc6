"""Core benchmarks: KV cache vs none, batched vs sequential decode, batched vs sequential serving.

Each benchmark runs all of its arms in one process on the same inputs and reports tokens/s per arm
and their ratio; a warm-up run precedes the timed ones. Timings are for comparison inside one run
only; machines are shared and noisy.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tenfold.core.models import load_model
from tenfold.core.sampler import SamplingParams, generate


@dataclass
class ArmResult:
    arm: str
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BenchResult:
    name: str
    arms: list[ArmResult]
    ratio: float  # tokens/s of the first arm over the second
    setup: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        for a, src in zip(d["arms"], self.arms, strict=True):
            a["tokens_per_s"] = src.tokens_per_s
        return d


def _prompts(n: int, length: int, seed: int = 0) -> list[str]:
    """Deterministic, varied prompts of about `length` bytes (lengths differ so padding is exercised)."""
    rng = random.Random(seed)
    words = "the a model cache token batch decode serve request layer prefix stream query key value".split()
    out = []
    for i in range(n):
        target = max(4, int(length * (0.6 + 0.8 * i / max(1, n - 1))))
        s = ""
        while len(s) < target:
            s += rng.choice(words) + " "
        out.append(s[:target])
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_kv_cache(
    model: str = "small", prompt_len: int = 64, new_tokens: int = 96, batch: int = 1, repeats: int = 1
) -> BenchResult:
    """Decode throughput with the KV cache vs recomputing the whole prefix at every step."""
    lm, tok = load_model(model)
    prompts = _prompts(batch, prompt_len)
    params = SamplingParams(max_new_tokens=new_tokens, ignore_eos=True)
    generate(lm, tok, prompts, SamplingParams(max_new_tokens=4, ignore_eos=True))  # warm-up
    arms = []
    for arm, use_cache in (("kv_cache", True), ("no_cache", False)):
        secs = min(
            _timed(lambda uc=use_cache: generate(lm, tok, prompts, params, use_cache=uc))
            for _ in range(repeats)
        )
        arms.append(ArmResult(arm, batch * new_tokens, secs))
    setup = {
        "model": model,
        "prompt_bytes": prompt_len,
        "new_tokens": new_tokens,
        "batch": batch,
        "threads": torch.get_num_threads(),
    }
    return BenchResult("kv_cache", arms, arms[0].tokens_per_s / arms[1].tokens_per_s, setup)


def bench_batched_decode(
    model: str = "small", n: int = 16, prompt_len: int = 64, new_tokens: int = 64
) -> BenchResult:
    """Sampler throughput: n prompts decoded as one batch vs one after another (greedy, fixed length)."""
    lm, tok = load_model(model)
    prompts = _prompts(n, prompt_len)
    params = SamplingParams(max_new_tokens=new_tokens, ignore_eos=True)
    generate(lm, tok, prompts[:2], SamplingParams(max_new_tokens=4, ignore_eos=True))
    batched = _timed(lambda: generate(lm, tok, prompts, params, batch_size=n))
    sequential = _timed(lambda: [generate(lm, tok, [p], params) for p in prompts])
    arms = [
        ArmResult("batched", n * new_tokens, batched),
        ArmResult("sequential", n * new_tokens, sequential),
    ]
    setup = {"model": model, "requests": n, "prompt_bytes": prompt_len, "new_tokens": new_tokens}
    return BenchResult("batched_decode", arms, arms[0].tokens_per_s / arms[1].tokens_per_s, setup)


def bench_serving(
    model: str = "small", n: int = 16, prompt_len: int = 64, max_tokens: int = 64
) -> BenchResult:
    """HTTP serving throughput: n concurrent requests (batched by the engine) vs the same n sent one at a time.

    A real `tenfold serve` app on a loopback port, driven by the official `openai` async client.
    """
    from openai import AsyncOpenAI

    from tenfold.core.server import ServerThread, create_app

    lm, tok = load_model(model)
    prompts = _prompts(n, prompt_len)

    async def one(client, p) -> int:
        r = await client.completions.create(
            model=model, prompt=p, max_tokens=max_tokens, temperature=0.0, extra_body={"ignore_eos": True}
        )
        return r.usage.completion_tokens

    async def run() -> tuple[ArmResult, ArmResult, int]:
        async with AsyncOpenAI(base_url=srv.base_url, api_key="x", timeout=600) as client:
            await one(client, prompts[0])  # warm-up
            t0 = time.perf_counter()
            toks = await asyncio.gather(*(one(client, p) for p in prompts))
            conc = ArmResult("concurrent", sum(toks), time.perf_counter() - t0)
            peak = app.state.engine.stats["max_batch_seen"]
            t0 = time.perf_counter()
            toks = [await one(client, p) for p in prompts]
            seq = ArmResult("sequential", sum(toks), time.perf_counter() - t0)
        return conc, seq, peak

    app = create_app(lm, tok, model)
    with ServerThread(app) as srv:
        conc, seq, peak = asyncio.run(run())
    setup = {
        "model": model,
        "requests": n,
        "prompt_bytes": prompt_len,
        "max_tokens": max_tokens,
        "peak_batch": peak,
    }
    return BenchResult("serving", [conc, seq], conc.tokens_per_s / seq.tokens_per_s, setup)


def plot_results(
    results: list[BenchResult], path: str | Path, title: str = "tenfold core throughput"
) -> Path:
    """One panel per benchmark: tokens/s of each arm, ratio in the panel title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.4), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        names = [a.arm for a in r.arms]
        vals = [a.tokens_per_s for a in r.arms]
        bars = ax.bar(names, vals, color=["tab:blue", "tab:gray"][: len(vals)])
        ax.bar_label(bars, fmt="%.0f")
        ax.set_title(f"{r.name}: {r.ratio:.2f}x")
        ax.set_ylabel("tokens / s")
        ax.margins(y=0.15)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_json(results: list[BenchResult], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.to_dict() for r in results], indent=2))
    return path

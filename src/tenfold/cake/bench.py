"""`tenfold cake bench`: TTFT of compute-only, I/O-only and Cake, side by side, over a bandwidth sweep.

For every (prompt length, bandwidth) configuration the three loaders run on the same prompt and the
same store, interleaved, best of `repeats` kept. The analytic ideal comes from the measured per-chunk
compute times (the compute-only run) and the measured per-chunk load time (the I/O-only run): the
split m minimising max(sum of compute of chunks < m, load time of chunks >= m), plus the time of the
query tokens after the prefix.

Bandwidths: given ones, or by default a sweep around the *balance point* of this machine, the
bandwidth at which loading the prefix takes as long as computing it (prefix KV bytes / compute-only
TTFT). On 2 CPU cores compute is ~1000x slower than on an A100, so the balance point sits at tenths
of a Gbps rather than the paper's tens; what decides Cake's gain is the ratio of the two times, which
the sweep covers on both sides. The last configuration has no limit: the real disk, page cache bypassed.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tenfold.cake.loader import DEFAULT_CHUNK_TOKENS, CakeLoader, ideal_split
from tenfold.cake.store import KVStore
from tenfold.core.benchkit import save_figure
from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar

BALANCE_FACTORS = (0.25, 0.5, 0.8, 1.0, 1.25, 2.0, 4.0)


@dataclass
class BenchConfig:
    """The full benchmark's settings; `quick()` is the quick reproduction's (one prefix length)."""

    model: str = "small"
    tokens: list[int] = field(default_factory=lambda: [4096, 8192, 16384])  # prefix lengths
    bandwidths_gbps: list[float | None] | None = None  # None: sweep around the balance point + no limit
    query_tokens: int = 16  # the request's own tokens after the shared prefix
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    repeats: int = 2
    seed: int = 0
    store_dir: str | None = None  # default: a fresh temporary directory per prompt length
    balance_factors: tuple[float, ...] = BALANCE_FACTORS
    serving_tokens: int = 8192  # the serving benchmark's shared prefix (`api.bench(..., serving=True)`)
    serving_requests: int = 4

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(tokens=[4096], serving_tokens=4096)

    def validate(self) -> BenchConfig:
        if not self.tokens or any(t < self.chunk_tokens for t in self.tokens):
            raise TenfoldError(
                f"--tokens must each be at least one chunk ({self.chunk_tokens}), got {self.tokens}"
            )
        if self.bandwidths_gbps is not None and any(
            b is not None and not b > 0 for b in self.bandwidths_gbps
        ):
            raise TenfoldError(f"bandwidths must be positive Gbps, got {self.bandwidths_gbps}")
        if self.repeats < 1 or self.query_tokens < 1:
            raise TenfoldError("--repeats and --query-tokens must be at least 1")
        return self


def _prompt(n_prefix: int, n_query: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(8, 264, (n_prefix + n_query,), generator=g).tolist()  # byte tokens


def _one_config(loader: CakeLoader, ids: list[int], gbps: float | None, repeats: int) -> dict:
    loader.store.throttle.set_gbps(gbps)
    best: dict[str, object] = {}
    runs = {m: 0 for m in ("compute_only", "io_only", "cake")}
    spent = dict.fromkeys(runs, 0.0)

    def needs(mode: str) -> bool:  # at least `repeats` runs; short arms get more (up to 20, ~2 s)
        return runs[mode] < repeats or (runs[mode] < 20 and spent[mode] < 2.0)

    r = 0
    while any(needs(m) for m in runs):
        order = list(runs)
        order = order[r % 3 :] + order[: r % 3]  # interleaved and rotated: no arm always runs first
        r += 1
        for mode in order:
            if not needs(mode):
                continue
            res = loader.prefill(ids, mode, save=False)
            runs[mode] += 1
            spent[mode] += res.ttft
            if mode not in best or res.ttft < best[mode].ttft:
                best[mode] = res
    comp, io, cake = best["compute_only"], best["io_only"], best["cake"]
    n = comp.n_chunks
    f = [comp.compute_times[i] for i in range(n)]
    g = sum(io.load_times.values()) / max(1, len(io.load_times))
    m_star, head_tail = ideal_split(f, g)
    ideal = head_tail + cake.query_seconds
    low = min(comp.ttft, io.ttft)
    return {
        "runs": runs,
        "tokens": n * loader.chunk_tokens,
        "bandwidth_gbps": gbps,
        "ttft_compute": comp.ttft,
        "ttft_io": io.ttft,
        "ttft_cake": cake.ttft,
        "ttft_ideal": ideal,
        "split_chunk": cake.split_chunk,
        "ideal_split_chunk": m_star,
        "n_chunks": n,
        "chunk_load_s": g,
        "chunk_compute_first_s": f[0],
        "chunk_compute_last_s": f[-1],
        "query_s": cake.query_seconds,
        "preempted": cake.preempted,
        "speedup_vs_compute": comp.ttft / cake.ttft,
        "speedup_vs_io": io.ttft / cake.ttft,
        "cake_vs_best_baseline": cake.ttft / low,
        "cake_vs_ideal": cake.ttft / ideal,
        "baselines_ratio": max(comp.ttft, io.ttft) / low,
        "max_logit_diff": float(
            max((cake.logits - comp.logits).abs().max(), (io.logits - comp.logits).abs().max())
        ),
    }


def run_bench(cfg: BenchConfig, quiet: bool = False) -> dict:
    """Run the sweep; returns {"setup": ..., "configs": [one dict per configuration]}."""
    from tenfold.core.models import load_model

    cfg.validate()
    torch.manual_seed(cfg.seed)
    model, _ = load_model(cfg.model, "cpu")
    t0 = time.perf_counter()
    configs: list[dict] = []
    balance: dict[int, float] = {}
    per_len = len(cfg.bandwidths_gbps) if cfg.bandwidths_gbps is not None else len(cfg.balance_factors) + 1
    with progress_bar("cake bench", total=per_len * len(cfg.tokens), quiet=quiet) as bar:
        for n_tok in cfg.tokens:
            with tempfile.TemporaryDirectory(prefix="tenfold-cake-", dir=cfg.store_dir) as d:
                loader = CakeLoader(model, KVStore(d), cfg.chunk_tokens)
                ids = _prompt(n_tok - n_tok % cfg.chunk_tokens, cfg.query_tokens, cfg.seed + n_tok)
                loader.prefill(ids, "compute_only", save=True)  # fills the store (and warms up)
                warm = loader.prefill(ids, "compute_only", save=False)
                kv_bits = 8 * loader.spec.nbytes * warm.n_chunks
                balance[n_tok] = kv_bits / 1e9 / sum(warm.compute_times.values())
                sweep = cfg.bandwidths_gbps
                if sweep is None:
                    sweep = [float(f"{balance[n_tok] * f:.3g}") for f in cfg.balance_factors] + [None]
                for gbps in sweep:
                    row = _one_config(loader, ids, gbps, cfg.repeats)
                    row["balance_gbps"] = balance[n_tok]
                    configs.append(row)
                    bar.advance(1, tokens=n_tok, gbps=gbps or 0.0, cake=row["ttft_cake"])
    return {
        "setup": {**asdict(cfg), "threads": torch.get_num_threads(), "seconds": time.perf_counter() - t0},
        "configs": configs,
    }


def summarize(result: dict) -> dict:
    """The issue's targets and the paper's headline numbers, from a bench result."""
    rows = result["configs"]

    def name(r):
        bw = "no limit (disk)" if r["bandwidth_gbps"] is None else f"{r['bandwidth_gbps']:.3g} Gbps"
        return f"{r['tokens']} tokens, {bw}"

    vs_c = max(rows, key=lambda r: 1 - r["ttft_cake"] / r["ttft_compute"])
    vs_io = max(rows, key=lambda r: 1 - r["ttft_cake"] / r["ttft_io"])
    worst_best = max(rows, key=lambda r: r["cake_vs_best_baseline"])
    worst_ideal = max(rows, key=lambda r: r["cake_vs_ideal"])
    balanced = [r for r in rows if r["baselines_ratio"] <= 1.3]
    bal = min(balanced, key=lambda r: min(r["speedup_vs_compute"], r["speedup_vs_io"])) if balanced else None
    split_err = max(rows, key=lambda r: abs(r["split_chunk"] - r["ideal_split_chunk"]))
    return {
        "reduction_vs_compute": (1 - vs_c["ttft_cake"] / vs_c["ttft_compute"], name(vs_c)),
        "reduction_vs_io": (1 - vs_io["ttft_cake"] / vs_io["ttft_io"], name(vs_io)),
        "worst_vs_best_baseline": (worst_best["cake_vs_best_baseline"], name(worst_best)),
        "worst_vs_ideal": (worst_ideal["cake_vs_ideal"], name(worst_ideal)),
        "balanced_min_speedup": (
            (min(bal["speedup_vs_compute"], bal["speedup_vs_io"]), name(bal))
            if bal
            else (float("nan"), "none")
        ),
        "balanced_configs": len(balanced),
        "max_split_error": (abs(split_err["split_chunk"] - split_err["ideal_split_chunk"]), name(split_err)),
    }


def plot(result: dict, path: str | Path) -> Path:
    """TTFT vs bandwidth for the three loaders and the ideal, one panel per prompt length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["configs"]
    lengths = sorted({r["tokens"] for r in rows})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 3.8), squeeze=False)
    for ax, n in zip(axes[0], lengths, strict=True):
        sub = [r for r in rows if r["tokens"] == n]
        limited = sorted(
            (r for r in sub if r["bandwidth_gbps"] is not None), key=lambda r: r["bandwidth_gbps"]
        )
        free = [r for r in sub if r["bandwidth_gbps"] is None]
        xs = [r["bandwidth_gbps"] for r in limited]
        x_free = max(xs) * 3 if xs else 1.0
        for key, label, style in (
            ("ttft_compute", "compute-only", "o-"),
            ("ttft_io", "I/O-only", "s-"),
            ("ttft_cake", "Cake", "^-"),
            ("ttft_ideal", "ideal", "--"),
        ):
            line = ax.plot(xs, [r[key] for r in limited], style, label=label)[0]
            if free:
                ax.plot([x_free], [free[0][key]], style[0], color=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        if free:
            ax.axvline(x_free / 1.7, color="0.8", lw=0.8)
            ax.annotate(
                "disk,\nno limit",
                (x_free, free[0]["ttft_cake"]),
                textcoords="offset points",
                xytext=(-12, 10),
                fontsize=7,
            )
        ax.set_xlabel("storage bandwidth (Gbps)")
        ax.set_ylabel("TTFT (s)")
        ax.set_title(f"{result['setup']['model']}, {n}-token prefix")
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def markdown_table(result: dict) -> str:
    """The sweep as a Markdown table (what docs/cake.md shows)."""
    lines = [
        "| prefix tokens | bandwidth | x balance | compute-only s | I/O-only s | Cake s | ideal s "
        "| Cake vs best baseline | Cake vs ideal | split (ideal) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["configs"]:
        bw = r["bandwidth_gbps"]
        where = "disk, no limit" if bw is None else f"{bw:.3g} Gbps"
        factor = "-" if bw is None else f"{bw / r['balance_gbps']:.2g}"
        lines.append(
            f"| {r['tokens']} | {where} | {factor} "
            f"| {r['ttft_compute']:.3f} | {r['ttft_io']:.3f} | {r['ttft_cake']:.3f} | {r['ttft_ideal']:.3f} "
            f"| {r['cake_vs_best_baseline']:.3f} | {r['cake_vs_ideal']:.3f} "
            f"| {r['split_chunk']} ({r['ideal_split_chunk']}) of {r['n_chunks']} |"
        )
    return "\n".join(lines)


def bench_serving(
    model: str = "small",
    prefix_tokens: int = 4096,
    requests: int = 4,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> dict:
    """TTFT of requests sharing a long prefix, served by `tenfold serve` with and without `--kv-store`.

    Each server gets `requests` streaming completions `prefix + question_i` one after another; TTFT is
    the time to the first streamed token. Without the store every request prefills the whole prompt;
    with it the first request computes and stores the prefix, the later ones load it through Cake.
    """
    import httpx

    from tenfold.cake.serving import StorePrefill
    from tenfold.core.models import load_model
    from tenfold.core.server import ServerThread, create_app

    lm, tok = load_model(model, "cpu")
    rng = torch.Generator().manual_seed(1)
    words = ["alpha", "beta", "gamma", "delta", "kv", "cache", "prefix", "token", "layer", "chunk"]
    text = ""
    while len(text) < prefix_tokens:
        text += words[int(torch.randint(len(words), (1,), generator=rng))] + " "
    prefix = text[: prefix_tokens - 1]  # + BOS = prefix_tokens tokens

    def ttfts(prefill) -> list[float]:
        out = []
        with ServerThread(create_app(lm, tok, model, prefill=prefill)) as srv, httpx.Client(timeout=600) as c:
            for i in range(requests):
                body = {
                    "model": model,
                    "prompt": f"{prefix}\nQuestion {i}: why?",
                    "max_tokens": 4,
                    "temperature": 0,
                    "stream": True,
                    "ignore_eos": True,
                }
                t = time.perf_counter()
                first = None
                with c.stream("POST", srv.base_url + "/completions", json=body) as r:
                    for line in r.iter_lines():  # read to the end, noting when the first token came
                        if first is None and line.startswith("data: {"):
                            first = time.perf_counter() - t
                if first is None:
                    raise RuntimeError(f"request {i} streamed no token (HTTP {r.status_code})")
                out.append(first)
                if prefill is not None:
                    prefill.loader.flush()  # the next request finds what this one stored
        return out

    with tempfile.TemporaryDirectory(prefix="tenfold-kv-serve-") as d:
        plug = StorePrefill(lm, d, chunk_tokens)
        with_store = ttfts(plug)
        recent = list(plug.recent)
    without = ttfts(None)
    repeat_with = sorted(with_store[1:])[len(with_store[1:]) // 2]
    repeat_without = sorted(without[1:])[len(without[1:]) // 2]
    return {
        "model": model,
        "prefix_tokens": prefix_tokens,
        "requests": requests,
        "ttft_without_store": without,
        "ttft_with_store": with_store,
        "median_repeat_without": repeat_without,
        "median_repeat_with": repeat_with,
        "speedup": repeat_without / repeat_with,
        "prefills": recent,
    }

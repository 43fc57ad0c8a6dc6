"""`tenfold cake ...`: answer prompts with prefix KV reuse (`run`), benchmark the loaders (`bench`),
inspect or clear a store (`store`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, finish_bench

app = typer.Typer(help="Cake: bidirectional KV-cache loading for long-prefix prefill.", no_args_is_help=True)


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help="the prompt text, or @FILE to read it from a file")],
    store: Annotated[Path, typer.Option(help="KV store directory (created if missing)")] = Path("kv-store"),
    model: Annotated[str, typer.Option(help="preset name or local checkpoint dir")] = "small",
    mode: Annotated[str, typer.Option(help="cake, io_only or compute_only")] = "cake",
    max_tokens: int = 32,
    chunk_tokens: int = 256,
    bandwidth_gbps: Annotated[float | None, typer.Option(help="emulate a slower storage tier")] = None,
    max_gb: Annotated[float | None, typer.Option(help="store size cap (LRU eviction)")] = None,
    device: str | None = None,
) -> None:
    """Prefill PROMPT with prefix reuse from STORE, then generate greedily; prints how it was filled."""
    from tenfold.cake import api
    from tenfold.core.errors import TenfoldError

    if prompt.startswith("@"):
        try:
            prompt = Path(prompt[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise TenfoldError(f"cannot read prompt file {prompt[1:]!r}: {exc.strerror}") from exc
    out = api.run(prompt, store, model, mode, max_tokens, chunk_tokens, bandwidth_gbps, max_gb, device)
    print(out.text)
    r = out.prefill
    print(
        f"[{r.n_tokens} prompt tokens, {r.n_chunks} storable chunks: {len(r.loaded)} loaded, "
        f"{len(r.computed)} computed, split at chunk {r.split_chunk}; prefill {r.ttft * 1000:.1f} ms "
        f"({mode}); {r.saved} new chunks stored; {len(r.corrupt)} corrupt chunks dropped]",
        file=sys.stderr,
    )


@app.command()
def bench(
    quick: QuickOpt = True,
    model: Annotated[str, typer.Option(help="preset name or local checkpoint dir")] = "small",
    tokens: Annotated[
        list[int] | None, typer.Option(help="prefix length (repeatable; default: quick 4K, full 4K, 8K, 16K)")
    ] = None,
    bandwidth_gbps: Annotated[
        list[float] | None,
        typer.Option(
            help="storage bandwidth (repeatable; 0 = no limit). Default: a sweep around the balance point"
        ),
    ] = None,
    repeats: Annotated[
        int, typer.Option(help="rounds per configuration (best kept; short ones get more)")
    ] = 2,
    chunk_tokens: int = 256,
    query_tokens: int = 16,
    threads: Annotated[int, typer.Option(help="CPU threads for torch in the benchmark process")] = 1,
    serving: Annotated[
        bool, typer.Option(help="also time `tenfold serve --kv-store` on a repeated prefix")
    ] = False,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """TTFT of compute-only, I/O-only and Cake (and the analytic ideal) over a bandwidth sweep."""
    from dataclasses import replace

    from tenfold.cake import api
    from tenfold.cake.bench import BenchConfig, plot, summarize

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg = replace(
        cfg,
        model=model,
        tokens=tokens or cfg.tokens,
        bandwidths_gbps=[b or None for b in bandwidth_gbps] if bandwidth_gbps else None,
        chunk_tokens=chunk_tokens,
        query_tokens=query_tokens,
        repeats=repeats,
    )
    result = api.bench(cfg, quiet, threads=threads, serving=serving)
    finish_bench(result, _table(result, summarize(result)), json_path, plot_path, plot)


def _table(result: dict, summary: dict) -> str:
    lines = [
        f"{'tokens':>6} {'Gbps':>8} {'compute':>8} {'io':>8} {'cake':>8} {'ideal':>8} {'split':>6} {'ideal':>6}"
    ]
    for r in result["configs"]:
        bw = "disk" if r["bandwidth_gbps"] is None else f"{r['bandwidth_gbps']:.3g}"
        lines.append(
            f"{r['tokens']:>6} {bw:>8} {r['ttft_compute']:8.3f} {r['ttft_io']:8.3f} {r['ttft_cake']:8.3f} "
            f"{r['ttft_ideal']:8.3f} {r['split_chunk']:>6} {r['ideal_split_chunk']:>6}"
        )
    for k, v in summary.items():
        lines.append(f"{k}: {v[0]:.3f} ({v[1]})" if isinstance(v, tuple) else f"{k}: {v}")
    if "serving" in result:
        lines.append(
            f"serving: repeated-prefix TTFT {result['serving']['speedup']:.2f}x faster with --kv-store"
        )
    return "\n".join(lines)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@app.command("store")
def store_info(
    store: Annotated[Path, typer.Argument(help="KV store directory")],
    clear: Annotated[
        bool, typer.Option(help="delete every chunk and the temporary files of dead writers")
    ] = False,
    max_gb: Annotated[float | None, typer.Option(help="evict LRU chunks down to this size")] = None,
) -> None:
    """Show a store's chunks, size and temporary files; optionally evict down to a size or clear it.

    Only the store's own files are ever deleted (chunk files and temporary files of writers that
    died), and only in a directory marked as a store; anything else in it is left alone."""
    from tenfold.cake.store import KVStore, _size
    from tenfold.core.errors import TenfoldError

    if not store.is_dir():
        raise TenfoldError(f"no KV store at {store}")
    kv = KVStore(store, max_bytes=int(max_gb * 2**30) if max_gb else None)
    if not kv.owned and (clear or max_gb):
        raise TenfoldError(f"refusing to {'clear' if clear else 'evict from'} {store}: {kv.unowned_reason}")
    if clear:
        print(f"removed {_n(kv.clear(), 'chunk')}")
    elif max_gb:
        print(f"evicted {_n(kv.evict(), 'chunk')}")
    u = kv.usage()
    print(
        f"{store}: {_n(u.chunks, 'chunk')}, {_size(u.chunk_bytes)}; "
        f"{_n(u.tmp_files, 'temporary file')} ({_size(u.tmp_bytes)}) of writers still running"
    )
    if kv.stats.stale_tmp_removed:
        print(
            f"removed {_n(kv.stats.stale_tmp_removed, 'stale temporary file')} "
            f"({_size(kv.stats.stale_tmp_bytes_removed)}) of writers that died"
        )
    if u.foreign:
        print(
            f"{u.foreign} other {'entry' if u.foreign == 1 else 'entries'} in it: not the store's, never deleted"
        )
    if not kv.owned:
        print(f"read-only: {kv.unowned_reason}")

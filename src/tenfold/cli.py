"""`tenfold` command line: one sub-app per system, plus `serve`, `generate`, `models`, `reproduce`.

Errors in user input (a `TenfoldError`) print as one line and exit with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="tenfold: ten ML-systems papers as working software.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
serve_app = typer.Typer(
    help="OpenAI-compatible server over a local model (and its benchmark).", invoke_without_command=True
)
app.add_typer(serve_app, name="serve")
artefacts_app = typer.Typer(help="Trained artefacts shipped with the code: list, verify, (re)build and ship.")
app.add_typer(artefacts_app, name="artefacts")


def _mount_systems() -> None:
    """One sub-app per built system in `tenfold.systems`; their heavy imports happen inside the commands."""
    import importlib

    from tenfold import systems

    for system, module in systems.built("cli"):
        app.add_typer(importlib.import_module(module).app, name=system.name)


_mount_systems()


@app.command()
def models() -> None:
    """List the trained models (pretrained here, shipped) and the untrained presets (built from configs)."""
    from tenfold.core.presets import describe_presets, describe_trained

    print("trained (load by name; shipped with tenfold, or rebuilt with `tenfold artefacts build NAME`):")
    for r in describe_trained():
        print(
            f"  {r['name']:13s} {r['params'] / 1e6:6.2f}M params  d={r['hidden']} L={r['layers']}  "
            f"[{r['state']}] {r['note']}"
        )
    print("untrained presets (random weights from a seed; for training and benchmarks):")
    for r in describe_presets():
        print(
            f"  {r['name']:13s} {r['params'] / 1e6:6.2f}M params  d={r['hidden']} L={r['layers']} ctx={r['context']}  {r['note']}"
        )


@app.command()
def generate(
    prompt: str,
    model: Annotated[
        str, typer.Option(help="trained model (tenfold-base), untrained preset, or local checkpoint dir")
    ] = "tenfold-base",
    max_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    chat: Annotated[bool, typer.Option(help="wrap the prompt as a user chat message")] = False,
    device: str | None = None,
) -> None:
    """Generate a completion for PROMPT with a local model."""
    from tenfold.core.models import load_model
    from tenfold.core.sampler import SamplingParams
    from tenfold.core.sampler import generate as gen

    lm, tok = load_model(model, device)
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}]) if chat else prompt
    out = gen(lm, tok, [ids], SamplingParams(max_tokens, temperature, top_p, seed=seed))[0]
    print(out.text)
    print(f"[{out.num_tokens} tokens, finish_reason={out.finish_reason}]", file=sys.stderr)


@serve_app.callback()
def serve(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Option(help="trained model (tenfold-base), untrained preset, or local checkpoint dir")
    ] = "tenfold-base",
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    max_batch: Annotated[int, typer.Option(help="most sequences decoded together")] = 64,
    served_model_name: str | None = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (default: torch's choice)")
    ] = None,
    kv_store: Annotated[
        Path | None,
        typer.Option(
            help="prefix KV store dir: reuse stored prefixes through the Cake loader, store new ones"
        ),
    ] = None,
    kv_chunk_tokens: Annotated[int, typer.Option(help="tokens per stored KV chunk")] = 256,
    kv_max_gb: Annotated[float | None, typer.Option(help="KV store size cap (LRU eviction)")] = None,
    kv_bandwidth_gbps: Annotated[
        float | None, typer.Option(help="emulate a slower storage tier for KV loads")
    ] = None,
    prefix_cache_gb: Annotated[
        float,
        typer.Option(help="in-memory automatic prefix caching (as vLLM's), this many GiB; 0 = off"),
    ] = 0.0,
    stream_interval_ms: Annotated[
        float,
        typer.Option(
            help="send a streamed answer's new text at most this often (0: every decoded token); "
            "fewer wake-ups leave more of a small server's CPU to decoding"
        ),
    ] = 0.0,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="TENFOLD_API_KEY", help="require `Authorization: Bearer KEY` on /v1/*"),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Host header to answer (repeatable); default: loopback names when bound to loopback"
        ),
    ] = None,
    max_body_mb: Annotated[float, typer.Option(help="largest request body, MiB")] = 8.0,
    max_seqs_per_request: Annotated[
        int, typer.Option(help="most sequences (prompts x n) in one request")
    ] = 256,
    default_max_tokens: Annotated[
        int, typer.Option(help="max_tokens of a chat request that gives none (capped by the context)")
    ] = 1024,
    shutdown_timeout: Annotated[
        float, typer.Option(help="on SIGTERM, seconds running requests get before they are cut")
    ] = 10.0,
) -> None:
    """Serve MODEL at http://HOST:PORT/v1 (completions, chat completions, streaming)."""
    if ctx.invoked_subcommand is not None:
        return
    if (
        threads is not None
    ):  # before torch loads: OpenMP reads these once, and the engine runs in its own thread
        import os

        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    from tenfold.core.server import serve as run_server

    make_prefill = None
    if kv_store is not None and prefix_cache_gb > 0:
        raise typer.BadParameter("choose one of --kv-store and --prefix-cache-gb")
    if prefix_cache_gb < 0:
        raise typer.BadParameter(f"--prefix-cache-gb must be >= 0, got {prefix_cache_gb}")
    if stream_interval_ms < 0:
        raise typer.BadParameter(f"--stream-interval-ms must be >= 0, got {stream_interval_ms}")
    if prefix_cache_gb > 0:

        def make_prefill(lm):
            from tenfold.core.prefix_cache import PrefixCachePrefill

            return PrefixCachePrefill(lm, int(prefix_cache_gb * 2**30))

    if kv_store is not None:

        def make_prefill(lm):
            from tenfold.cake.serving import StorePrefill

            cap = int(kv_max_gb * 2**30) if kv_max_gb else None
            return StorePrefill(lm, kv_store, kv_chunk_tokens, cap, bandwidth_gbps=kv_bandwidth_gbps)

    from tenfold.core.server import ServerConfig

    if max_body_mb <= 0:
        raise typer.BadParameter(f"--max-body-mb must be > 0, got {max_body_mb}")
    config = ServerConfig(
        api_key=api_key,
        allowed_hosts=tuple(h.lower() for h in allowed_host) if allowed_host else None,
        max_body_bytes=int(max_body_mb * 2**20),
        max_seqs_per_request=max_seqs_per_request,
        default_max_tokens=default_max_tokens,
        shutdown_timeout=shutdown_timeout,
    )
    run_server(
        model,
        host,
        port,
        device,
        max_batch,
        served_model_name,
        make_prefill=make_prefill,
        stream_interval=stream_interval_ms / 1000,
        config=config,
    )


@serve_app.command("bench")
def serve_bench(
    model: str = "small",
    requests: Annotated[int, typer.Option(help="concurrent requests")] = 16,
    prompt_len: Annotated[int, typer.Option(help="prompt length in bytes (varied +-40%)")] = 64,
    max_tokens: int = 64,
    repeats: Annotated[int, typer.Option(help="timings per arm (best kept)")] = 2,
    threads: Annotated[int, typer.Option(help="CPU threads for torch in the benchmark process")] = 1,
    out: Path = Path("reports/serve_bench"),
) -> None:
    """Throughput of N concurrent requests (batched) vs the same N sent one at a time."""
    from tenfold.core.bench import bench_serving, plot_results
    from tenfold.core.benchkit import isolated, write_json

    r = isolated(bench_serving, model, requests, prompt_len, max_tokens, repeats, threads=threads)
    write_json([r], out / "serve_bench.json")
    plot_results([r], out / "serve_bench.png", title=f"serving {requests} requests, {model}")
    for a in r.arms:
        print(f"{a.arm:10s} {a.tokens} tokens in {a.seconds:.2f} s = {a.tokens_per_s:.1f} tok/s")
    print(f"ratio concurrent/sequential = {r.ratio:.2f}x (peak batch {r.setup['peak_batch']}); wrote {out}/")


@app.command()
def reproduce(
    systems: Annotated[list[str] | None, typer.Argument(help="systems to run (default: all built)")] = None,
    quick: Annotated[bool, typer.Option("--quick/--full", help="quick (minutes on CPU) or full")] = True,
    out: Path = Path("reports"),
    quiet: bool = False,
) -> None:
    """Run reproductions, write OUT/<system>.json, plots and OUT/REPORT.md."""
    from tenfold.core.reproduce import run_reproductions

    crashed = run_reproductions(systems or [], "quick" if quick else "full", out, quiet)
    if crashed:
        raise typer.Exit(1)


@artefacts_app.command("list")
def artefacts_list(
    names: Annotated[list[str] | None, typer.Argument(help="artefact or system names (default: all)")] = None,
) -> None:
    """Each registered artefact: where a look-up finds it (shipped, user cache) or why it would train."""
    from tenfold.core.artefacts import resolve, status
    from tenfold.core.cache import cache_root, shipped_root

    print(f"shipped folder: {shipped_root()}\nuser cache:     {cache_root()}")
    print(f"{'name':18s} {'state':8s} {'MB':>6s} {'dtype':8s} {'build':>8s}  key / detail")
    for r in resolve(names):
        s = status(r)
        e = s.shipped
        size = f"{e['size'] / 1e6:.1f}" if e.get("size") else "-"
        took = f"{e['build_seconds'] / 60:.0f} min" if e.get("build_seconds") else f"~{r.minutes:.0f} min"
        print(
            f"{r.name:18s} {s.state:8s} {size:>6s} {e.get('dtype', r.dtype):8s} {took:>8s}  {s.key} {s.detail}"
        )


@artefacts_app.command("verify")
def artefacts_verify(
    names: Annotated[list[str] | None, typer.Argument(help="artefact or system names (default: all)")] = None,
) -> None:
    """Check the shipped folder: files, sizes and sha256, and keys against today's recipes (exit 1 on a problem)."""
    from tenfold.core.artefacts import verify
    from tenfold.core.cache import read_manifest, shipped_root

    problems = verify(names)
    for p in problems:
        print(f"problem: {p}")
    n = len(read_manifest())
    print(f"{shipped_root()}: {n} shipped artefact(s), {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(1)


@artefacts_app.command("build")
def artefacts_build(
    names: Annotated[list[str] | None, typer.Argument(help="artefact or system names (default: all)")] = None,
    ship: Annotated[
        bool, typer.Option(help="write the result into the shipped folder and its manifest")
    ] = False,
    retrain: Annotated[
        bool, typer.Option(help="train again even when the user cache has this recipe")
    ] = False,
) -> None:
    """Train artefacts into the user cache (skipped when cached), and with --ship re-ship them."""
    from tenfold.core.artefacts import resolve
    from tenfold.core.artefacts import ship as ship_one

    for r in resolve(names):
        if ship:
            ship_one(r, retrain=retrain)
        else:
            print(f"{r.name}: {r.artefact().path(retrain=retrain, shipped=False)}")


@app.command()
def report(out: Path = Path("reports")) -> None:
    """Rebuild OUT/REPORT.md from the JSON files already there."""
    from tenfold.core.reproduce import write_report

    print(write_report(out))


@app.command()
def version() -> None:
    """Print versions of tenfold and its main dependencies."""
    import tokenizers
    import torch
    import transformers

    from tenfold import __version__

    print(
        json.dumps(
            {
                "tenfold": __version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__,
            }
        )
    )


def main() -> None:
    from tenfold.core.errors import TenfoldError

    try:
        app()
    except TenfoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""`tenfold autospec ...`: generate, score and verify specifications for a system's network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, WorkersOpt, finish_bench

app = typer.Typer(
    help="AutoSpec: specifications for neural networks in learning-augmented systems.", no_args_is_help=True
)

SystemOpt = Annotated[str, typer.Option(help="abr, cc, throughput or scheduler")]


@app.command()
def generate(
    system: SystemOpt = "abr",
    method: Annotated[str, typer.Option(help="autospec, hand-written, grid or clusters")] = "autospec",
    out: Annotated[Path, typer.Option(help="spec file (JSON)")] = Path("specs.json"),
    vnnlib_dir: Annotated[
        Path | None, typer.Option(help="also write one VNN-LIB property per spec here")
    ] = None,
    traces: int = 60,
    steps: int = 100,
    seed: int = 0,
    polytope: Annotated[
        bool, typer.Option(help="autospec only: cut each box to bounds on pairwise input differences")
    ] = False,
) -> None:
    """Simulate the system, generate specs from the generation traces, write them."""
    from tenfold.autospec import api
    from tenfold.autospec.spec import save_specs, to_vnnlib

    specs, meta = api.generate(system, method, traces, steps, seed, polytope)
    save_specs(specs, out, meta)
    print(f"{len(specs)} specs -> {out}")
    if vnnlib_dir:
        vnnlib_dir.mkdir(parents=True, exist_ok=True)
        n_out = meta["classes"] if meta["task"] == "classification" else 1
        for i, s in enumerate(specs):
            (vnnlib_dir / f"spec_{i:03d}.vnnlib").write_text(to_vnnlib(s, n_out))
        print(f"VNN-LIB properties -> {vnnlib_dir}")


@app.command()
def score(
    specs: Annotated[Path, typer.Argument(help="spec file from `generate`")],
    onnx: Annotated[
        Path | None, typer.Option(help="score the network's outputs instead of the logged ones")
    ] = None,
) -> None:
    """Precision, recall, F1 and tightness on the system's held-out traces."""
    from tenfold.autospec.api import simulate_split
    from tenfold.autospec.metrics import score as score_fn
    from tenfold.autospec.spec import load_specs

    ss, meta = load_specs(specs)
    _, ev = simulate_split(meta["system"], meta["traces"], meta["steps"], meta["seed"])
    y = None
    if onnx:
        import numpy as np

        from tenfold.autospec.verify import load_net

        out = load_net(onnx).forward(ev.X)
        y = out.argmax(1) if ev.task == "classification" else out[:, 0].astype(np.float32)
    print(json.dumps(score_fn(ss, ev, y), indent=1))


@app.command()
def train(
    system: SystemOpt = "abr",
    out: Annotated[Path, typer.Option(help="ONNX file to write")] = Path("net.onnx"),
    flawed: Annotated[
        bool, typer.Option(help="train on labels corrupted in the system's flaw region")
    ] = False,
    traces: int = 60,
    steps: int = 100,
    seed: int = 0,
    net_steps: Annotated[
        int | None, typer.Option(help="training steps (default 1500; 4500 with --flawed, to fit the flaw)")
    ] = None,
) -> None:
    """Train the system's network (imitation of the logged decisions) and export it to ONNX."""
    from tenfold.autospec.api import simulate_split
    from tenfold.autospec.nets import export_onnx, flawed_labels, train_net

    gen, _ = simulate_split(system, traces, steps, seed)
    if flawed:
        gen, _ = flawed_labels(gen)
    n = net_steps if net_steps is not None else (4500 if flawed else 1500)
    print(f"-> {export_onnx(train_net(gen, steps=n, seed=seed), gen.X.shape[1], out)}")


@app.command()
def verify(
    onnx: Annotated[
        Path | None, typer.Option(help="the network (ONNX: Gemm/MatMul, Conv, ReLU, normalisation)")
    ] = None,
    specs: Annotated[Path | None, typer.Option(help="spec file from `generate`")] = None,
    vnnlib: Annotated[
        Path | None, typer.Option(help="or one VNN-LIB property (the competitions' form)")
    ] = None,
    instances: Annotated[
        Path | None, typer.Option(help="or a whole benchmark: a CSV of onnx,vnnlib,timeout rows")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="--instances: the results CSV (written as it goes)")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="time limit per spec or property, seconds (--instances: the CSV's)")
    ] = 30,
    engine: Annotated[
        str, typer.Option(help="tenfold (bounds, splitting, Marabou in parallel) or marabou (plain)")
    ] = "tenfold",
    workers: Annotated[
        int | None, typer.Option(help="Marabou processes at once (default: one per core)")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Verify a network: generated specs (--specs), one VNN-LIB property (--vnnlib) or a benchmark CSV
    (--instances). Answers are holds / violated / unknown (with the reason); every counterexample is
    re-checked by running the network before it is reported."""
    from tenfold.autospec import api
    from tenfold.core.errors import TenfoldError

    given = [x is not None for x in (specs, vnnlib, instances)]
    if sum(given) != 1:
        raise TenfoldError("give exactly one of --specs, --vnnlib or --instances")
    if instances is None and onnx is None:
        raise TenfoldError("--onnx is required with --specs and --vnnlib")
    if instances is not None and onnx is not None:
        raise TenfoldError("--onnx is not used with --instances: the CSV names each instance's network")
    if instances is not None:
        results, summ = api.verify_instances(
            instances, engine, out, timeout_override=None, workers=workers, quiet=quiet
        )
        for r in results:
            extra = f" ({r['reason']})" if r["result"] == "unknown" else ""
            print(
                f"{Path(r['vnnlib']).name}: {r['result']}{extra} by {r['method'] or '-'} in {r['seconds']:.2f} s"
            )
        print(
            f"{summ['instances']} instances: {summ['holds']} holds, {summ['violated']} violated, "
            f"{summ['unknown']} unknown in {summ['seconds']:.1f} s" + (f"; results -> {out}" if out else "")
        )
        _dump(json_out, {"summary": summ, "results": results})
        return
    if vnnlib is not None:
        res = api.verify_property(onnx, vnnlib, timeout, engine, workers)
        line = res.status + (f" ({res.reason})" if res.status == "unknown" else "")
        print(f"{line} by {res.method} in {res.seconds:.2f} s")
        if res.counterexample is not None:
            check = "reproduces" if res.stats.get("rechecked", True) else "does NOT reproduce"
            print(
                f"counterexample (re-checked in onnxruntime: {check}): x = {res.counterexample}\n  y = {res.output}"
            )
        _dump(json_out, res.to_dict())
        return
    from tenfold.autospec.spec import load_specs
    from tenfold.autospec.verify import verify as verify_fn

    ss, _ = load_specs(specs)
    verdicts = verify_fn(ss, onnx, timeout)
    for i, v in enumerate(verdicts):
        cex = "" if v.counterexample is None else f" counterexample {[round(c, 4) for c in v.counterexample]}"
        print(
            f"spec {i:3d}: {v.status:<9} by {v.method:<9} {v.seconds:6.3f} s{cex}"
            f"{' (re-checked)' if v.rechecked else ''}"
        )
    print(
        f"{sum(v.status == 'verified' for v in verdicts)} verified, {sum(v.status == 'refuted' for v in verdicts)} "
        f"refuted, {sum(v.status == 'unknown' for v in verdicts)} unknown in {sum(v.seconds for v in verdicts):.2f} s"
    )
    _dump(json_out, [v.to_dict() for v in verdicts])


def _dump(path: Path | None, obj) -> None:
    if path:
        from tenfold.core.io import atomic_write_text

        atomic_write_text(path, json.dumps(obj, indent=1))


@app.command()
def bench(
    quick: QuickOpt = True,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """AutoSpec vs hand-written, grid and clustering specs on the four systems (>= 3 seeds), verification,
    and the flawed networks."""
    from tenfold.autospec import api
    from tenfold.autospec.bench import BenchConfig, markdown, plot

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg.workers = workers
    result = api.bench(cfg, quiet)
    finish_bench(result, markdown(result), json_path, plot_path, plot)


@app.command("verify-bench")
def verify_bench(
    quick: QuickOpt = True,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    workers: WorkersOpt = None,
    keep: Annotated[
        Path | None, typer.Option(help="keep the generated networks, properties and CSV here")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """tenfold's verifier against plain Marabou on competition-style instances built here (ACAS-shaped
    controllers, image-classifier robustness): answers, agreement, instances decided, total time."""
    from tenfold.autospec import api
    from tenfold.autospec.verify_bench import VerifyBenchConfig, markdown, plot

    cfg = VerifyBenchConfig.quick() if quick else VerifyBenchConfig()
    cfg.workers = workers
    result = api.verify_bench(cfg, quiet, keep)
    finish_bench(result, markdown(result), json_path, plot_path, plot)

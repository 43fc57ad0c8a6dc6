"""`tenfold mars ...`: pretrain the tiny LLaVA, run MARS's search, a rank grid, or the benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, WorkersOpt, finish_bench, write_json
from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar

app = typer.Typer(help="MARS: per-modality LoRA ranks from two fitted scaling laws.", no_args_is_help=True)

DataSize = Annotated[int, typer.Option("--data-size", "-D", help="target-domain training examples")]
Model = Annotated[Path | None, typer.Option(help="a tiny LLaVA folder (default: the shipped pretrained one)")]
Ranks = Annotated[str, typer.Option(help="comma-separated LoRA ranks")]


def _ranks(text: str) -> tuple[int, ...]:
    try:
        ranks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise TenfoldError(f"ranks must be comma-separated integers, got {text!r}") from None
    if not ranks or min(ranks) < 1:
        raise TenfoldError(f"ranks must be positive integers, got {text!r}")
    return ranks


@app.command()
def pretrain(retrain: bool = False, quiet: QuietOpt = False) -> None:
    """Pretrain the tiny LLaVA on source-domain shapes (cached; the shipped one is used when present)."""
    from tenfold.mars import api

    path = api.pretrained(retrain, quiet)
    info = json.loads((path.parent / "pretrain.json").read_text())
    print(f"-> {path}")
    print(json.dumps({d: {k: round(v, 3) for k, v in s.items()} for d, s in info["held_out"].items()}))


@app.command()
def search(
    data_size: DataSize = 512,
    grid: Ranks = "1,2,4,8,16,32",
    seed: int = 0,
    tol: Annotated[
        float, typer.Option(help="log tolerance on t_vision / t_language for an aligned pair")
    ] = 0.5,
    model: Model = None,
    json_path: JsonOpt = None,
    workers: WorkersOpt = 1,
) -> None:
    """MARS: short multi-rank probes, Law-T and Law-P fitted on them, the chosen pair's full run."""
    from tenfold.mars import api

    ranks = _ranks(grid)
    middle = ranks[len(ranks) // 2]  # the fallback pair when no pair aligns: (8, 8) on the default grid
    cfg = api.SearchConfig(
        default_pair=(middle, middle),
        grid_vision=ranks,
        grid_language=ranks,
        tol=tol,
        run=api.RunConfig(data_size=data_size, seed=seed),
    )
    with progress_bar("mars probes", len(cfg.probe_configs())) as bar:
        res = api.search(cfg, model, workers, on_done=lambda i, r: bar.advance(1))
    c = res["choice"]
    print(
        f"chosen pair (vision rank, LLM rank): {tuple(c['pair'])}"
        + (f"  [fallback: {c['fallback']}]" if c["fallback"] else "")
    )
    print(
        f"aligned candidates: {[tuple(p) for p in c['candidates']]}; complex partner ranks: {c['complex_partners']}"
    )
    print(
        f"search cost: {res['search_runs_equivalent']:.2f} full runs ({res['cheaper_than_grid']:.1f}x cheaper than the {res['grid_runs']}-run grid)"
    )
    t = res["final"]["test"]
    print(f"full run: test perplexity {t['ppl']:.3f}, accuracy {t['accuracy']:.3f}")
    if json_path:
        print(f"wrote {write_json(res, json_path)}")


@app.command()
def grid(
    data_size: DataSize = 512,
    ranks: Ranks = "1,2,4,8,16,32",
    seed: int = 0,
    model: Model = None,
    json_path: JsonOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Every (vision rank, LLM rank) pair of the grid, one full run each: the oracle MARS is judged by."""
    from tenfold.mars import api

    r = _ranks(ranks)
    with progress_bar("mars grid", len(r) ** 2) as bar:
        res = api.grid(
            api.RunConfig(data_size=data_size, seed=seed), r, r, model, workers, lambda i, x: bar.advance(1)
        )
    print("test perplexity; rows: vision rank, columns: LLM rank")
    print("      " + "".join(f"{x:>8}" for x in r))
    for v in r:
        print(f"{v:>6}" + "".join(f"{res['table'][f'{v},{lr}']:>8.3f}" for lr in r))
    print(f"best pair: {tuple(res['best'])}")
    if json_path:
        print(f"wrote {write_json(res, json_path)}")


@app.command()
def bench(
    quick: QuickOpt = True,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The grid (oracle), MARS, uniform ranks, separate learning rates and AdaLoRA, per seed and D."""
    from tenfold.mars import api
    from tenfold.mars.bench import BenchConfig, markdown, plot

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg.workers = workers
    result = api.bench(cfg, quiet)
    finish_bench(result, markdown(result), json_path, plot_path, plot)

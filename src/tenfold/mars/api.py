"""What a MARS user calls. On the tiny LLaVA shipped with tenfold:

    from tenfold.mars import api
    res = api.search(api.SearchConfig(run=api.RunConfig(data_size=512)))   # probes, laws, one full run
    res["choice"]["pair"], res["final"]["test"]["ppl"], res["cheaper_than_grid"]

On your own PEFT model, the pieces: `lora.lora_config(r_vision, r_language)` (per-module ranks),
`lora.check_ranks(peft_model, {"vision": rv, "language": rl})` (every targeted layer got its rank),
`laws.fit_law_t / fit_law_p / choose` on convergence times and perplexities you measured.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tenfold.core.benchkit import map_jobs
from tenfold.mars.finetune import RunConfig, run
from tenfold.mars.search import GRID, SearchConfig
from tenfold.mars.search import search as _search
from tenfold.mars.train import PretrainRecipe, model_dir

__all__ = [
    "GRID",
    "PretrainRecipe",
    "RunConfig",
    "SearchConfig",
    "bench",
    "finetune",
    "grid",
    "pretrained",
    "search",
]


def pretrained(retrain: bool = False, quiet: bool = False) -> Path:
    """The pretrained tiny LLaVA's folder (shipped, cached, or pretrained now: a few minutes)."""
    return model_dir(retrain=retrain, quiet=quiet)


def finetune(cfg: RunConfig, model: str | Path | None = None) -> dict:
    """One LoRA (or AdaLoRA) fine-tuning run on the target domain; its record."""
    return run(cfg, model or pretrained())


def search(cfg: SearchConfig, model: str | Path | None = None, workers: int | None = 1, on_done=None) -> dict:
    """MARS: probes, Law-T and Law-P fitted on them, the chosen pair, and its full run."""
    return _search(cfg, model or pretrained(), workers, on_done=on_done)


def grid(
    cfg: RunConfig,
    ranks_vision=GRID,
    ranks_language=GRID,
    model: str | Path | None = None,
    workers: int | None = None,
    on_done=None,
) -> dict:
    """Every (r_v, r_l) pair, one full run each: {"runs": [...], "table": {"rv,rl": test ppl}, "best": pair}."""
    path = str(model or pretrained())
    pairs = [(v, lr) for v in ranks_vision for lr in ranks_language]
    runs = map_jobs(
        run,
        [(replace(cfg, rank_vision=v, rank_language=lr, measure_convergence=False), path) for v, lr in pairs],
        workers,
        on_done,
    )
    table = {f"{v},{lr}": r["test"]["ppl"] for (v, lr), r in zip(pairs, runs, strict=True)}
    best = min(pairs, key=lambda p: table[f"{p[0]},{p[1]}"])
    return {"runs": runs, "table": table, "best": list(best)}


def bench(cfg, quiet: bool = False) -> dict:
    """Every arm of `cfg` (a `mars.bench.BenchConfig`) over its seeds and dataset sizes."""
    from tenfold.mars.bench import run_bench

    return run_bench(cfg, pretrained(quiet=quiet), quiet)

"""The MARS benchmark: per seed and dataset size, the full rank grid (the oracle), MARS's search, and the
baselines, all fine-tuning the same pretrained tiny LLaVA on the same data.

Arms (per seed x dataset size):
- **grid**: every (r_v, r_l) of the grid, one full run each. The oracle is the pair with the lowest
  test loss.
- **mars**: probes, fitted laws, the chosen pair's full run. Runs are deterministic on the CPU for a
  given seed and config, so the final run is the grid's run of that pair (a test checks the
  determinism); the search's compute counts it.
- **uniform**: the best by validation loss of `uniform_pairs` (r, r), one full run each (3 runs:
  about MARS's compute).
- **separate-lr**: ranks `separate_lr_pair`, the vision tower's learning rate scaled by each of
  `separate_lr_scales`, the best by validation loss (3 runs).
- **adalora**: PEFT AdaLoRA from `adalora_init_r` pruned to an average `adalora_target_r` (1 run).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tenfold.core.benchkit import map_jobs, save_figure
from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar
from tenfold.mars.finetune import RunConfig, run
from tenfold.mars.search import GRID, SearchConfig, choose, fit, spearman


@dataclass
class BenchConfig:
    data_sizes: tuple[int, ...] = (256, 512)
    seeds: tuple[int, ...] = (0, 1, 2)
    grid: tuple[int, ...] = GRID
    run: RunConfig = field(default_factory=lambda: RunConfig(measure_convergence=False))
    probe_pairs: tuple[tuple[int, int], ...] = ((8, 8), (1, 8), (32, 8), (8, 1), (8, 32))
    probe_fractions: tuple[float, ...] = (0.125, 0.25)
    tol: float = 0.5
    default_pair: tuple[int, int] = (8, 8)
    uniform_pairs: tuple[tuple[int, int], ...] = ((2, 2), (8, 8), (32, 32))
    separate_lr_pair: tuple[int, int] = (8, 8)
    separate_lr_scales: tuple[float, ...] = (0.1, 1.0, 10.0)
    adalora_init_r: int = 12
    adalora_target_r: int = 8
    top_k: int = 3  # the target: MARS's pair within the grid's top k
    workers: int | None = None

    @classmethod
    def quick(cls) -> BenchConfig:
        """Minutes on 2 CPU cores: a 4 x 4 grid, small datasets, smaller test sets."""
        return cls(
            data_sizes=(128, 256),
            grid=(1, 4, 8, 32),
            run=RunConfig(measure_convergence=False, epochs=4.0, test_size=256, val_size=64),
            probe_pairs=((8, 8), (1, 8), (32, 8), (8, 1), (8, 32)),
            probe_fractions=(0.25, 0.5),
            uniform_pairs=((1, 1), (8, 8), (32, 32)),
        )

    def __post_init__(self):
        if not self.data_sizes or not self.seeds:
            raise TenfoldError("the bench needs at least one dataset size and one seed")
        for p in (*self.uniform_pairs, self.separate_lr_pair, self.default_pair):
            if p[0] not in self.grid or p[1] not in self.grid:
                raise TenfoldError(f"pair {p} is not on the grid {self.grid}")

    def search_config(self, d: int, seed: int) -> SearchConfig:
        return SearchConfig(
            grid_vision=self.grid,
            grid_language=self.grid,
            probe_pairs=self.probe_pairs,
            probe_fractions=self.probe_fractions,
            tol=self.tol,
            default_pair=self.default_pair,
            run=replace(self.run, data_size=d, seed=seed),
        )


def jobs(cfg: BenchConfig) -> list[tuple[str, int, int, RunConfig]]:
    """(arm, seed, D, run config) of every run the bench needs."""
    out = []
    for d in cfg.data_sizes:
        for seed in cfg.seeds:
            base = replace(cfg.run, data_size=d, seed=seed)
            out += [
                ("grid", seed, d, replace(base, rank_vision=v, rank_language=lr))
                for v in cfg.grid
                for lr in cfg.grid
            ]
            rv, rl = cfg.separate_lr_pair
            out += [
                ("separate-lr", seed, d, replace(base, rank_vision=rv, rank_language=rl, lr_vision_scale=s))
                for s in cfg.separate_lr_scales
                if s != 1.0  # scale 1 is the grid's run of that pair
            ]
            out.append(
                (
                    "adalora",
                    seed,
                    d,
                    replace(
                        base,
                        method="adalora",
                        adalora_init_r=cfg.adalora_init_r,
                        adalora_target_r=cfg.adalora_target_r,
                    ),
                )
            )
            out += [("probe", seed, d, c) for c in cfg.search_config(d, seed).probe_configs()]
    return out


def run_bench(cfg: BenchConfig, model_path: str | Path, quiet: bool = False) -> dict:
    todo = jobs(cfg)
    with progress_bar("mars bench runs", len(todo), quiet) as bar:
        records = map_jobs(
            run, [(c, str(model_path)) for *_, c in todo], cfg.workers, on_done=lambda i, r: bar.advance(1)
        )
    runs = [{"arm": a, "seed": s, "data_size": d, **r} for (a, s, d, _), r in zip(todo, records, strict=True)]
    return {
        "config": asdict(cfg),
        "runs": runs,
        "cells": summarise_cells(cfg, runs),
        "summary": summarise(cfg, runs),
    }


def _pair(r: dict) -> tuple[int, int]:
    return (r["config"]["rank_vision"], r["config"]["rank_language"])


def cell(cfg: BenchConfig, runs: list[dict], seed: int, d: int) -> dict:
    """Every arm's outcome in one (seed, dataset size) cell."""
    mine = [r for r in runs if r["seed"] == seed and r["data_size"] == d]
    grid = {_pair(r): r for r in mine if r["arm"] == "grid"}
    ranked = sorted(grid, key=lambda p: grid[p]["test"]["loss"])
    oracle = ranked[0]
    probes = [r for r in mine if r["arm"] == "probe"]
    fitted = fit(probes)
    picked = choose(cfg.search_config(d, seed), probes, fitted)
    # ablation at no extra compute: partners beyond the grid snapped to its ends (the brief's literal
    # "snapped to grid"); chosen after the first full bench, where one cell fell back for want of them
    snap_cfg = replace(cfg.search_config(d, seed), snap_beyond_grid=True)
    snapped = tuple(choose(snap_cfg, probes, fitted)["choice"]["pair"])
    pair = tuple(picked["choice"]["pair"])
    full = replace(cfg.run, data_size=d).examples
    search_runs = picked["probe_examples"] / full + 1
    uniform = min((grid[p] for p in cfg.uniform_pairs), key=lambda r: r["val"]["loss"])
    sep = [r for r in mine if r["arm"] == "separate-lr"] + [grid[cfg.separate_lr_pair]]
    sep_best = min(sep, key=lambda r: r["val"]["loss"])
    ada = next(r for r in mine if r["arm"] == "adalora")
    predicted = picked["choice"]["predicted"]  # empty when Law-P did not fit
    pred = [predicted[f"{v},{lr}"] for v, lr in ranked] if predicted else []
    # ablation at no extra compute: Law-P's best pair over the whole grid, without the alignment pruning
    law_p_pair = ranked[min(range(len(ranked)), key=pred.__getitem__)] if pred else cfg.default_pair
    return {
        "seed": seed,
        "data_size": d,
        "oracle": {
            "pair": list(oracle),
            "ppl": grid[oracle]["test"]["ppl"],
            "accuracy": grid[oracle]["test"]["accuracy"],
        },
        "mars": {
            "pair": list(pair),
            "ppl": grid[pair]["test"]["ppl"],
            "accuracy": grid[pair]["test"]["accuracy"],
            "grid_rank": ranked.index(pair) + 1,
            "regret_ppl": grid[pair]["test"]["ppl"] - grid[oracle]["test"]["ppl"],
            "fallback": picked["choice"]["fallback"],
            "complex_partners": picked["choice"]["complex_partners"],
            "candidates": picked["choice"]["candidates"],
            "runs_equivalent": search_runs,
            "cheaper_than_grid": len(grid) / search_runs,
            "laws": picked["laws"],
            "fit_errors": picked["fit_errors"],
        },
        "mars_snap_ends": {
            "pair": list(snapped),
            "ppl": grid[snapped]["test"]["ppl"],
            "accuracy": grid[snapped]["test"]["accuracy"],
            "grid_rank": ranked.index(snapped) + 1,
        },
        "law_p_only": {
            "pair": list(law_p_pair),
            "ppl": grid[law_p_pair]["test"]["ppl"],
            "accuracy": grid[law_p_pair]["test"]["accuracy"],
            "grid_rank": ranked.index(law_p_pair) + 1,
        },
        "spearman_predicted_vs_measured": (
            spearman(pred, [grid[p]["test"]["ppl"] for p in ranked]) if pred else math.nan
        ),
        "uniform": {
            "pair": list(_pair(uniform)),
            "ppl": uniform["test"]["ppl"],
            "accuracy": uniform["test"]["accuracy"],
            "runs": len(cfg.uniform_pairs),
        },
        "separate_lr": {
            "scale": sep_best["config"]["lr_vision_scale"],
            "ppl": sep_best["test"]["ppl"],
            "accuracy": sep_best["test"]["accuracy"],
            "runs": len(cfg.separate_lr_scales),
        },
        "adalora": {"ppl": ada["test"]["ppl"], "accuracy": ada["test"]["accuracy"], **ada.get("adalora", {})},
        "grid_ppl": {f"{v},{lr}": grid[(v, lr)]["test"]["ppl"] for v, lr in grid},
        "probe_times": [
            {
                "pair": list(_pair(p)),
                "data_size": p["config"]["data_size"],
                "t_vision": p["convergence"]["vision"]["time"],
                "t_language": p["convergence"]["language"]["time"],
                "val_ppl": p["val"]["ppl"],
            }
            for p in probes
        ],
    }


def summarise_cells(cfg: BenchConfig, runs: list[dict]) -> list[dict]:
    return [cell(cfg, runs, s, d) for d in cfg.data_sizes for s in cfg.seeds]


ARMS = ("oracle", "mars", "mars_snap_ends", "law_p_only", "uniform", "separate_lr", "adalora")


def _mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.mean(xs) if xs else math.nan


def summarise(cfg: BenchConfig, runs: list[dict]) -> dict:
    """Per dataset size and overall: the target quantities, averaged over seeds."""
    cells = summarise_cells(cfg, runs)
    out: dict = {}
    for key, group in [
        *((str(d), [c for c in cells if c["data_size"] == d]) for d in cfg.data_sizes),
        ("all", cells),
    ]:
        out[key] = {
            "cells": len(group),
            "top_k_share": _mean([float(c["mars"]["grid_rank"] <= cfg.top_k) for c in group]),
            "mean_grid_rank": _mean([c["mars"]["grid_rank"] for c in group]),
            "law_p_only_top_k_share": _mean(
                [float(c["law_p_only"]["grid_rank"] <= cfg.top_k) for c in group]
            ),
            "mars_snap_ends_top_k_share": _mean(
                [float(c["mars_snap_ends"]["grid_rank"] <= cfg.top_k) for c in group]
            ),
            "regret_ppl": _mean([c["mars"]["regret_ppl"] for c in group]),
            "cheaper_than_grid": _mean([c["mars"]["cheaper_than_grid"] for c in group]),
            "search_runs_equivalent": _mean([c["mars"]["runs_equivalent"] for c in group]),
            "spearman": _mean([c["spearman_predicted_vs_measured"] for c in group]),
            "fallbacks": sum(c["mars"]["fallback"] is not None for c in group),
            "complex_partners": sum(c["mars"]["complex_partners"] for c in group),
            "ppl": {arm: _mean([c[arm]["ppl"] for c in group]) for arm in ARMS},
            "accuracy": {arm: _mean([c[arm]["accuracy"] for c in group]) for arm in ARMS},
            "mars_minus_uniform": [c["mars"]["ppl"] - c["uniform"]["ppl"] for c in group],
            "mars_minus_separate_lr": [c["mars"]["ppl"] - c["separate_lr"]["ppl"] for c in group],
        }
    return out


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [
        f"MARS bench: grid {cfg['grid']} x {cfg['grid']}, dataset sizes {cfg['data_sizes']}, seeds {cfg['seeds']}",
        "",
        "| D | MARS in grid top-3 | mean grid rank | snapped to ends / Law-P only in top-3 | regret PPL | "
        "cheaper than grid | "
        "Spearman | PPL " + " / ".join(ARMS) + " | accuracy " + " / ".join(ARMS) + " |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    arms = ARMS
    for key, s in result["summary"].items():
        lines.append(
            f"| {key} | {s['top_k_share']:.2f} | {s['mean_grid_rank']:.1f} | "
            f"{s['mars_snap_ends_top_k_share']:.2f} / {s['law_p_only_top_k_share']:.2f} | "
            f"{s['regret_ppl']:.3f} | "
            f"{s['cheaper_than_grid']:.1f}x | {s['spearman']:.2f} | "
            + " / ".join(f"{s['ppl'][a]:.3f}" for a in arms)
            + " | "
            + " / ".join(f"{s['accuracy'][a]:.3f}" for a in arms)
            + " |"
        )
    lines += [
        "",
        "| seed | D | oracle pair | MARS pair | rank | snapped-to-ends pair | rank | Law-P-only pair | rank | "
        "fallback | candidates |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cells"]:
        m = c["mars"]
        lines.append(
            f"| {c['seed']} | {c['data_size']} | {tuple(c['oracle']['pair'])} | {tuple(m['pair'])} | "
            f"{m['grid_rank']} | {tuple(c['mars_snap_ends']['pair'])} | {c['mars_snap_ends']['grid_rank']} | "
            f"{tuple(c['law_p_only']['pair'])} | {c['law_p_only']['grid_rank']} | "
            f"{m['fallback'] or '-'} | {len(m['candidates'])} |"
        )
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    """Per dataset size: the grid's test perplexity (mean over seeds) with the oracle and MARS's picks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cfg = result["config"]
    grid, sizes = cfg["grid"], cfg["data_sizes"]
    fig, axes = plt.subplots(1, len(sizes) + 1, figsize=(4.6 * (len(sizes) + 1), 4.2))
    for ax, d in zip(axes, sizes, strict=False):
        cells = [c for c in result["cells"] if c["data_size"] == d]
        mat = np.array([[_mean([c["grid_ppl"][f"{v},{lr}"] for c in cells]) for lr in grid] for v in grid])
        im = ax.imshow(mat, origin="lower", cmap="viridis_r", norm=matplotlib.colors.LogNorm())
        fig.colorbar(im, ax=ax, shrink=0.8, label="test perplexity")
        ax.set_xticks(range(len(grid)), grid)
        ax.set_yticks(range(len(grid)), grid)
        ax.set_xlabel("LLM rank")
        ax.set_ylabel("vision rank")
        ax.set_title(f"D = {d} (mean of {len(cells)} seeds)")
        for c in cells:
            ov, ol = (grid.index(x) for x in c["oracle"]["pair"])
            mv, ml = (grid.index(x) for x in c["mars"]["pair"])
            ax.plot(ol, ov, "w*", ms=14, mec="k")
            ax.plot(ml + 0.15 * (c["seed"] - 1), mv, "ro", ms=6, mec="k")
    ax = axes[-1]
    arms = ARMS
    width = 0.8 / len(sizes)
    for i, d in enumerate(sizes):
        s = result["summary"][str(d)]
        ax.bar(np.arange(len(arms)) + i * width, [s["ppl"][a] for a in arms], width, label=f"D = {d}")
    ax.set_xticks(
        np.arange(len(arms)) + width * (len(sizes) - 1) / 2, arms, rotation=35, ha="right", fontsize=8
    )
    ax.set_yscale("log")
    ax.set_ylabel("test perplexity (mean over seeds, log scale)")
    ax.set_title("white star: grid oracle; red dot: MARS (per seed)", fontsize=9)
    ax.legend()
    return save_figure(fig, path)

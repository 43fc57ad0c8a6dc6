"""MARS's search: short multi-rank probes, the two laws fitted on them, the choice, one full run.

Calibration ("simultaneous multi-rank tuning" in the paper; its exact probe design is not public):
`probe_pairs` rank pairs, each fine-tuned on `probe_fractions` of the dataset (the same epochs, so a
probe costs that fraction of a full run). Every probe gives both modules' convergence times and its
validation perplexity: Law-T per module is fitted on (D, r, t), Law-P on (D, r_v, r_l, PPL). The
fitted laws choose a pair for the full D (`laws.choose`), and one full run with it follows.

The default pairs are a star around (8, 8): each module's rank at 1, 8 and 32 with the other's at 8.
Law-P's two power laws are then identifiable (corners alone, such as (1, 1), (1, 32), (32, 1),
(32, 32), (8, 8), leave one degree of freedom between A and gamma: a test fits known laws).

Compute is counted in training examples processed (steps x batch; evaluation is not counted for any
method). The default design (5 pairs at 1/8 and 1/4 of D) costs 1.875 full runs, so the search with
its final run is 2.875 runs against a 6 x 6 grid's 36: 12.5x cheaper.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tenfold.core.benchkit import map_jobs
from tenfold.core.errors import TenfoldError
from tenfold.mars import laws
from tenfold.mars.finetune import RunConfig, run

GRID = (1, 2, 4, 8, 16, 32)


@dataclass
class SearchConfig:
    grid_vision: tuple[int, ...] = GRID
    grid_language: tuple[int, ...] = GRID
    probe_pairs: tuple[tuple[int, int], ...] = ((8, 8), (1, 8), (32, 8), (8, 1), (8, 32))
    probe_fractions: tuple[float, ...] = (0.125, 0.25)
    tol: float = 0.5  # natural-log tolerance on t_v / t_l for an aligned pair (a factor of e^0.5 = 1.65)
    default_pair: tuple[int, int] = (8, 8)  # the fallback when no pair aligns or a law does not fit
    snap_beyond_grid: bool = False  # partner ranks beyond the grid's ends snap to the end (laws.choose)
    run: RunConfig = field(default_factory=RunConfig)  # the full run's settings (data_size is D)

    def __post_init__(self):
        for f in self.probe_fractions:
            if not 0 < f < 1:
                raise TenfoldError(f"probe fractions must be in (0, 1), got {f}")
        if len(self.probe_pairs) < 2:
            raise TenfoldError(f"need at least 2 probe pairs, got {len(self.probe_pairs)}")
        for g in (self.grid_vision, self.grid_language):
            if not g or any(not isinstance(r, int) or r < 1 for r in g):
                raise TenfoldError(f"a rank grid must be positive integers, got {g}")
        if self.default_pair[0] not in self.grid_vision or self.default_pair[1] not in self.grid_language:
            raise TenfoldError(f"the default pair {self.default_pair} is not on the rank grids")

    def probe_configs(self) -> list[RunConfig]:
        out = []
        for frac in self.probe_fractions:
            d = max(self.run.batch_size, round(self.run.data_size * frac))
            for rv, rl in self.probe_pairs:
                out.append(
                    replace(self.run, rank_vision=rv, rank_language=rl, data_size=d, measure_convergence=True)
                )
        return out


def fit(probes: list[dict]) -> dict:
    """{"law_vision", "law_language", "law_p": the fitted laws or None, "errors": why not}."""
    out: dict = {"errors": {}}
    for m in ("vision", "language"):
        key = "rank_vision" if m == "vision" else "rank_language"
        try:
            out[f"law_{m}"] = laws.fit_law_t(
                [p["config"]["data_size"] for p in probes],
                [p["config"][key] for p in probes],
                [p["convergence"][m]["time"] for p in probes],
            )
        except laws.FitError as exc:
            out[f"law_{m}"], out["errors"][m] = None, str(exc)
    try:
        out["law_p"] = laws.fit_law_p(
            [p["config"]["data_size"] for p in probes],
            [p["config"]["rank_vision"] for p in probes],
            [p["config"]["rank_language"] for p in probes],
            [p["val"]["ppl"] for p in probes],
        )
    except laws.FitError as exc:
        out["law_p"], out["errors"]["law_p"] = None, str(exc)
    return out


def choose(cfg: SearchConfig, probes: list[dict], fitted: dict | None = None) -> dict:
    """The fitted laws and the chosen pair for the full dataset size (no full run); `fitted`: the
    laws `fit(probes)` returned already, not fitted again."""
    fitted = fit(probes) if fitted is None else fitted
    choice = laws.choose(
        fitted["law_vision"],
        fitted["law_language"],
        fitted["law_p"],
        list(cfg.grid_vision),
        list(cfg.grid_language),
        cfg.run.data_size,
        cfg.tol,
        cfg.default_pair,
        cfg.snap_beyond_grid,
    )
    return {
        "choice": choice.to_dict(),
        "laws": {k: (asdict(v) if v is not None else None) for k, v in fitted.items() if k != "errors"},
        "fit_errors": fitted["errors"],
        "probe_examples": sum(p["examples"] for p in probes),
    }


def search(
    cfg: SearchConfig, model_path: str | Path, workers: int | None = 1, final_run: bool = True, on_done=None
) -> dict:
    """Probes, fits, choice and (with `final_run`) the full run of the chosen pair."""
    probes = map_jobs(run, [(c, str(model_path)) for c in cfg.probe_configs()], workers, on_done)
    out = choose(cfg, probes)
    out["probes"] = probes
    rv, rl = out["choice"]["pair"]
    full = cfg.run.examples
    out["full_run_examples"] = full
    out["search_runs_equivalent"] = out["probe_examples"] / full + 1
    out["grid_runs"] = len(cfg.grid_vision) * len(cfg.grid_language)
    out["cheaper_than_grid"] = out["grid_runs"] / out["search_runs_equivalent"]
    if final_run:
        out["final"] = run(replace(cfg.run, rank_vision=rv, rank_language=rl), model_path)
    return out


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN for fewer than 3 points."""
    from scipy.stats import spearmanr

    if len(x) < 3:
        return math.nan
    return float(spearmanr(x, y).statistic)

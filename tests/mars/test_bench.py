"""The bench's summaries and reproduce rows on hand-made runs (no training)."""

import math

import pytest

from tenfold.mars import laws
from tenfold.mars.bench import BenchConfig, jobs, markdown, plot, summarise, summarise_cells
from tenfold.mars.finetune import RunConfig
from tenfold.mars.reproduce import rows

LAW_V = laws.LawT(a=2.0, beta=0.5, alpha=0.5, c=0.0)
LAW_L = laws.LawT(a=8.0, beta=0.5, alpha=0.5, c=0.0)  # aligned when r_l = 16 r_v


def measured_ppl(rv: int, rl: int, d: int) -> float:
    """The "true" outcome of a run: best at (2, 32), worse away from it in both ranks."""
    return 1.5 + 0.1 * abs(math.log2(rv) - 1) + 0.05 * abs(math.log2(rl) - 5) + 100 / d


def fake(
    arm: str, seed: int, d: int, cfg: RunConfig, ppl: float | None = None, val_shift: float = 0.0
) -> dict:
    rv, rl = cfg.rank_vision, cfg.rank_language
    ppl = measured_ppl(rv, rl, d) if ppl is None else ppl
    rec = {
        "arm": arm,
        "seed": seed,
        "data_size": d,
        "config": {**cfg.__dict__},
        "examples": cfg.examples,
        "test": {"loss": math.log(ppl), "ppl": ppl, "accuracy": 1 / ppl},
        "val": {"loss": math.log(ppl) + val_shift, "ppl": ppl},
    }
    if arm == "probe":  # probes follow the known laws exactly
        rec["convergence"] = {
            "vision": {"time": float(LAW_V.time(rv, cfg.data_size))},
            "language": {"time": float(LAW_L.time(rl, cfg.data_size))},
        }
        rec["val"]["ppl"] = (
            1.5 + 0.1 * 2 ** (-math.log2(rv)) + 0.05 * 2 ** (-math.log2(rl)) + 100 / cfg.data_size
        )
    return rec


def make_runs(cfg: BenchConfig) -> list[dict]:
    runs = []
    for arm, seed, d, c in jobs(cfg):
        if arm == "separate-lr":  # a lower vision lr is better here, but not better than the oracle
            runs.append(
                fake(arm, seed, d, c, ppl=measured_ppl(8, 8, d) - (0.01 if c.lr_vision_scale < 1 else -0.2))
            )
        elif arm == "adalora":
            runs.append(fake(arm, seed, d, c, ppl=measured_ppl(8, 8, d)))
        else:
            runs.append(fake(arm, seed, d, c))
    return runs


CFG = BenchConfig(data_sizes=(256, 512), seeds=(0, 1), grid=(1, 2, 4, 8, 16, 32), tol=0.05)


def test_jobs_cover_every_arm_once_per_cell():
    todo = jobs(CFG)
    per_cell = 36 + 2 + 1 + 10  # grid, separate-lr (scale 1 is the grid's run), AdaLoRA, probes
    assert len(todo) == per_cell * 4
    assert sum(a == "grid" for a, *_ in todo) == 36 * 4


def test_cells_judge_mars_against_the_grid():
    cells = summarise_cells(CFG, make_runs(CFG))
    assert len(cells) == 4
    for c in cells:
        assert tuple(c["oracle"]["pair"]) == (2, 32)
        # the known laws align r_l = 16 r_v: (1, 16) and (2, 32) are candidates; Law-P fitted on the
        # probes prefers larger ranks, so MARS takes (2, 32): the oracle
        assert tuple(c["mars"]["pair"]) == (2, 32) and c["mars"]["grid_rank"] == 1
        assert c["mars"]["regret_ppl"] == pytest.approx(0.0)
        assert c["mars"]["cheaper_than_grid"] == pytest.approx(36 / (1 + 5 * 0.375))
        assert tuple(c["uniform"]["pair"]) == (2, 2)  # the best of (2,2), (8,8), (32,32) by validation
        assert c["separate_lr"]["scale"] == 0.1


def test_summary_and_rows():
    runs = make_runs(CFG)
    s = summarise(CFG, runs)["all"]
    assert s["top_k_share"] == 1.0 and s["mean_grid_rank"] == 1.0 and s["fallbacks"] == 0
    result = {
        "config": CFG.__dict__ | {"run": CFG.run.__dict__},
        "cells": summarise_cells(CFG, runs),
        "summary": summarise(CFG, runs),
    }
    got = {r.metric: r for r in rows(result)}
    assert got["mars_top_k_share"].passed and got["mars_cheaper_than_6x6_grid"].passed
    assert got["mars_cheaper_than_6x6_grid"].value == pytest.approx(36 / (1 + 5 * 0.375))
    assert got["mars_gain_over_uniform_ppl"].value == pytest.approx(
        measured_ppl(2, 2, 1) - measured_ppl(2, 32, 1)
    )
    assert got["mars_gain_over_uniform_ppl"].passed and got["mars_gain_over_separate_lr_ppl"].passed
    assert "| all |" in markdown(result)


def test_rows_fail_when_mars_picks_badly():
    runs = make_runs(CFG)
    for r in runs:  # make the oracle's pair look worst in the grid: MARS still picks it from the laws
        if r["arm"] == "grid" and (r["config"]["rank_vision"], r["config"]["rank_language"]) == (2, 32):
            r["test"]["loss"], r["test"]["ppl"] = math.log(9.0), 9.0
    result = {
        "config": CFG.__dict__ | {"run": CFG.run.__dict__},
        "cells": summarise_cells(CFG, runs),
        "summary": summarise(CFG, runs),
    }
    got = {r.metric: r for r in rows(result)}
    assert got["mars_top_k_share"].value == 0.0 and not got["mars_top_k_share"].passed
    assert not got["mars_gain_over_uniform_ppl"].passed and not got["mars_regret_ppl"].passed


def test_plot_writes_a_png(tmp_path):
    runs = make_runs(CFG)
    result = {
        "config": {**CFG.__dict__},
        "cells": summarise_cells(CFG, runs),
        "summary": summarise(CFG, runs),
    }
    path = plot(result, tmp_path / "grid.png")
    assert path.stat().st_size > 10_000


def test_bad_bench_config():
    with pytest.raises(Exception, match="not on the grid"):
        BenchConfig(grid=(1, 4), uniform_pairs=((2, 2),))


def test_a_law_that_does_not_fit_falls_back_without_crashing_the_bench():
    runs = make_runs(CFG)
    for r in runs:  # every probe "converges" at once: Law-T has nothing to fit a rank exponent on
        if r["arm"] == "probe":
            r["convergence"] = {"vision": {"time": math.nan}, "language": {"time": math.nan}}
    cells = summarise_cells(CFG, runs)
    assert all(c["mars"]["fallback"] == "a law did not fit" for c in cells)
    assert all(tuple(c["mars"]["pair"]) == CFG.default_pair for c in cells)
    assert summarise(CFG, runs)["all"]["fallbacks"] == 4

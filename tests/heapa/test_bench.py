"""The bench's summary on hand-made curves (rollouts to reach uniform's final accuracy, as a share of
uniform's own time to get there and of its whole budget), and its runs side by side."""

import pytest

from tenfold.heapa.bench import BenchConfig, markdown, rollouts_to_reach, summarize


def _run(arm, seed, means, step=1000):
    curve = [
        {"rollouts": i * step, "mean": m, **{f"L{lv}": m for lv in range(1, 7)}} for i, m in enumerate(means)
    ]
    return {
        "arm": arm,
        "seed": seed,
        "rollouts": (len(means) - 1) * step,
        "curve": curve,
        "final": means[-1],
        "step_seconds": 1.0,
        "source_share": 0.0,
        "informative_share": 0.5,
    }


def test_rollouts_to_reach_interpolates_between_evaluations():
    curve = [{"rollouts": 0, "mean": 0.4}, {"rollouts": 1000, "mean": 0.5}, {"rollouts": 2000, "mean": 0.6}]
    assert rollouts_to_reach(curve, 0.55) == pytest.approx(1500)
    assert rollouts_to_reach(curve, 0.3) == 0.0
    assert rollouts_to_reach(curve, 0.7) is None


def test_summary_shares_by_hand():
    runs = [
        _run("uniform", 0, [0.40, 0.45, 0.50, 0.50, 0.50]),  # first reaches its final 0.50 at 2000 of 4000
        _run("heap+aug+path", 0, [0.40, 0.50, 0.55, 0.55, 0.56]),  # reaches 0.50 at 1000
        _run("uniform", 1, [0.40, 0.42, 0.44, 0.46, 0.48]),
        _run("heap+aug+path", 1, [0.40, 0.41, 0.42, 0.43, 0.44]),  # never reaches 0.48
    ]
    cfg = BenchConfig(arms=("uniform", "heap+aug+path"), seeds=(0, 1))
    s = summarize(runs, cfg)
    full = s["heap+aug+path"]
    assert full["rollout_ratio_to_uniform"] == [pytest.approx(0.5), None]
    assert full["rollout_share_of_uniform_budget"] == [pytest.approx(0.25), None]
    assert s["uniform"]["rollout_share_of_uniform_budget"] == [pytest.approx(0.5), pytest.approx(1.0)]
    assert full["final_mean"] == pytest.approx(0.50) and full["final_sd"] == pytest.approx(0.06)
    text = markdown(
        {
            "config": {
                "budget": 4000,
                "seeds": [0, 1],
                "group_size": 8,
                "prompts_per_step": 16,
                "eval_n": 40,
            },
            "summary": s,
        }
    )
    assert "| heap+aug+path | 0.500 ± 0.060 |" in text and "0.50 / -" in text and "0.25 / -" in text


def test_runs_side_by_side_equal_runs_one_after_another():
    """Each run is seeded on its own: two worker processes give the runs one process gives."""
    import torch

    from tenfold.heapa.bench import run_bench

    cfg = dict(arms=("uniform", "heap+aug+path"), seeds=(0,), problems=16, budget=128, eval_every=1, eval_n=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker process
    try:
        alone = run_bench(BenchConfig(**cfg, workers=1), quiet=True)
    finally:
        torch.set_num_threads(threads)
    side = run_bench(BenchConfig(**cfg, workers=2), quiet=True)
    for a, b in zip(alone["runs"], side["runs"], strict=True):
        assert (a["arm"], a["seed"], a["rollouts"]) == (b["arm"], b["seed"], b["rollouts"])
        assert a["curve"] == b["curve"]


def test_bad_workers_is_a_user_error():
    from tenfold.core.errors import TenfoldError

    with pytest.raises(TenfoldError, match="workers"):
        BenchConfig(workers=0).validate()

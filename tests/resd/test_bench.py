"""The bench's pieces on a micro model: evaluation counts, the stream's mix, one short run of each kind."""

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.core.models import build_preset
from tenfold.envs.manufactoria import HELDOUT_FAMILIES, expert_program, task_pool
from tenfold.resd.bench import ARMS, BenchConfig, evaluate, run_grpo_arm, run_resd_arm, stream
from tenfold.resd.loop import LoopConfig


def tiny_cfg(**kw):
    loop = LoopConfig(batch_size=2, inner_iters=1, program_tokens=8, reflect_tokens=8, curate_tokens=8)
    base = dict(
        arms=("resd", "grpo8"),
        seeds=(0,),
        stream_tasks=4,
        eval_tasks=3,
        eval_every=1,
        loop=loop,
        grpo_group=2,
    )
    base.update(kw)
    return BenchConfig(**base).validate()


def test_stream_mixes_families_in_the_asked_share():
    tasks = stream(tiny_cfg(stream_tasks=40, heldout_families_share=0.75))
    held = [t.family in HELDOUT_FAMILIES for t in tasks]
    assert len(tasks) == 40 and sum(held) == 30
    assert all(any(held[i : i + 4]) for i in range(0, 40, 4))  # interleaved, not one block then the other
    assert len({(t.family, t.seed) for t in tasks}) == 40


def test_evaluate_counts_over_k_samples():
    model, tok = build_preset("micro", seed=0)
    out = evaluate(model, tok, task_pool(3, "heldout"), samples=2, cfg=LoopConfig(program_tokens=8))
    assert out["k"] == 2 and out["mean_at_k"] == 0.0 and out["best_at_k"] == 0.0  # a random model
    assert out["parse_errors"] == 1.0 and out["test_accuracy"] == 0.0


def test_one_short_run_of_each_kind():
    cfg = tiny_cfg()
    held = task_pool(3, "heldout")
    model, tok = build_preset("micro", seed=0)
    r = run_resd_arm(model, tok, "resd", cfg, 0, held)
    assert [c["iteration"] for c in r["curve"]] == [0, 1, 2] and r["curve"][-1]["samples"] == 4
    model, tok = build_preset("micro", seed=0)
    g = run_grpo_arm(model, tok, cfg, 0, held)
    assert g["curve"][-1]["samples"] == 2 * 2 * 2  # 2 iterations x 2 prompts x group 2


def test_config_errors_and_expert_sanity():
    with pytest.raises(TenfoldError, match="arms"):
        BenchConfig(arms=("ppo",)).validate()
    assert set(ARMS) >= {"resd", "sdpo", "sdpo+ss", "grpo8", "resd-oracle"}
    task = task_pool(1, "heldout")[0]
    assert task.check(expert_program(task)).reward == 1.0


def curve(*points):
    return [{"samples": s, "mean_at_k": m, "best_at_k": m, "test_accuracy": m} for s, m in points]


def test_summary_by_hand():
    from tenfold.resd.bench import markdown, samples_to_reach, summarise

    runs = [
        {"arm": "grpo8", "seed": 0, "curve": curve((0, 0.0), (64, 0.1), (128, 0.2), (256, 0.3)), "step_seconds": 2.0},
        {"arm": "resd", "seed": 0, "curve": curve((0, 0.0), (8, 0.05), (16, 0.1), (32, 0.2)),
         "playbook": [1, 3, 5], "step_seconds": 1.0},
    ]  # fmt: skip
    s = summarise(runs)
    # GRPO's quarter budget is 64 samples, where it had 0.1; RESD reaches 0.1 at 16 samples
    assert s["resd"]["grpo_quarter_level"] == 0.1 and s["resd"]["samples_to_grpo_quarter"] == 16
    assert s["grpo8"]["samples_to_grpo_quarter"] == 64
    assert s["resd"]["playbook"] == 5 and s["grpo8"]["playbook"] == 0.0
    assert samples_to_reach(runs[1]["curve"], 0.9) == float("inf")
    assert "| resd | 1 |" in markdown({"summary": s})


def arm_summary(mean, sd=0.05, test=0.5, samples_quarter=float("inf"), seconds=1.0, **kw):
    return {"seeds": 3, "start": 0.0, "start_test_accuracy": 0.4, "mean_at_k": mean, "mean_at_k_sd": sd,
            "best_at_k": mean, "test_accuracy": test, "samples": 256, "playbook": 7, "step_seconds": seconds,
            "bad_reflections": 0.25, "bad_curations": 0.1, "grpo_quarter_level": 0.1,
            "samples_to_grpo_quarter": samples_quarter, **kw}  # fmt: skip


def test_reproduce_rows_by_hand():
    import math

    from tenfold.resd.reproduce import rows

    s = {
        "resd": arm_summary(0.30, sd=0.05, test=0.7, samples_quarter=96, seconds=3.0),
        "sdpo": arm_summary(0.10, sd=0.10, test=0.5),
        "sdpo+ss": arm_summary(0.20, sd=0.04, test=0.6),
        "grpo8": arm_summary(0.25, test=0.6, samples_quarter=512, seconds=6.0, grpo_quarter_samples=512),
        "no-playbook": arm_summary(0.22, sd=0.02),
    }
    got = {r.metric: r.value for r in rows(s)}
    assert got["resd_gain_over_sdpo_seed_sd"] == pytest.approx((0.30 - 0.20) / 0.05)  # the better SDPO arm
    assert got["resd_samples_to_grpo_quarter_ratio"] == pytest.approx(96 / 512)
    assert got["resd_gain_over_best_ablation_seed_sd"] == pytest.approx((0.30 - 0.22) / 0.05)
    assert got["resd_test_accuracy_gain_over_sdpo"] == pytest.approx(0.1)
    assert got["resd_step_time_ratio_to_grpo"] == pytest.approx(0.5)
    # GRPO's quarter level no higher than the start: nothing to reach, the row is not judged
    s["grpo8"]["grpo_quarter_level"] = 0.0
    assert math.isnan({r.metric: r.value for r in rows(s)}["resd_samples_to_grpo_quarter_ratio"])

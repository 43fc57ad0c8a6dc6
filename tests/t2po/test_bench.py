"""Collapse detection, the summary and the reproduce rows on hand-made runs; one real RL step."""

import math

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.t2po.bench import BenchConfig, collapse, markdown, summarise
from tenfold.t2po.reproduce import rows


def curve(*success):
    return [{"step": i, "success": s, "valid_rate": 1.0, "think_tokens": 10.0} for i, s in enumerate(success)]


def steps(grad=(1.0,) * 6, kl=(0.0,) * 6):
    return [
        {"step": i + 1, "grad_norm": g, "kl": k, "seconds": 1.0}
        for i, (g, k) in enumerate(zip(grad, kl, strict=True))
    ]


def test_collapse_rules():
    assert collapse(curve(0.5, 0.6, 0.2, 0.1, 0.25), steps()) == "success"  # 3 evals below 0.3
    assert collapse(curve(0.5, 0.6, 0.2, 0.4, 0.2), steps()) is None  # not consecutive
    assert collapse(curve(0.0, 0.0, 0.0, 0.0), steps()) is None  # never succeeded: nothing to lose
    assert collapse(curve(0.5), steps(grad=(1, 1.2, 0.9, 1.1, 12.0, 1.0))) == "grad_norm"  # > 10x median 1.05
    assert collapse(curve(0.5), steps(grad=(1, 1.2, 0.9, 1.1, 9.0, 1.0))) is None
    assert collapse(curve(0.5), steps(kl=(0.0, 0.01, 0.01, 0.01, 0.2, 0))) == "kl"
    # KL to the start grows from exactly 0 (step 1 is measured before any update): that is not a jump
    assert collapse(curve(0.5), steps(kl=(0.0, 0.0014, 0.01, 0.0245, 0.0215, 0.0639))) is None


def run(arm, seed, final, think, coll=None, start_think=10.0):
    res = {"q": 0.5, "measured_per_eligible": 1.7, "expected_per_eligible": 1.75}
    c = curve(0.4, final)
    c[0]["think_tokens"], c[-1]["think_tokens"] = start_think, think
    return {"arm": arm, "seed": seed, "curve": c, "steps": steps(), "final": final, "final_think_tokens": think,
            "collapse": coll, "resampling": res, "seconds": 1.0, "samples": 10}  # fmt: skip


def test_summary_and_rows_by_hand():
    runs = [
        run("gigpo", 0, 0.5, 40.0, "success"),
        run("gigpo", 1, 0.7, 60.0),
        run("t2po", 0, 0.8, 20.0, start_think=5.0),
        run("t2po", 1, 0.8, 30.0, start_think=7.0),
    ]
    s = summarise(runs)
    assert s["gigpo"]["final_mean"] == pytest.approx(0.6) and s["gigpo"]["collapsed"] == 1
    assert s["t2po"]["think_ratio_to_gigpo"] == pytest.approx(25 / 50)
    r = {row.metric: row for row in rows(s)}
    assert r["t2po_think_tokens_ratio_to_gigpo"].value == pytest.approx(0.5)
    assert r["t2po_think_tokens_ratio_to_gigpo"].passed
    assert r["t2po_think_tokens_ratio_before_rl"].value == pytest.approx(6 / 10)  # same start success
    sd = math.sqrt(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2) / 1)
    assert r["t2po_final_gain_over_seed_sd"].value == pytest.approx((0.8 - 0.6) / sd)
    assert r["t2po_fewer_collapses"].value == 1 and r["t2po_fewer_collapses"].passed
    assert r["t2po_resampling_cost_vs_expected"].value == pytest.approx(1.7 / 1.75)
    assert "| t2po |" in markdown({"summary": s})


def test_think_ratio_is_not_judged_without_success_to_compare():
    # both arms collapsed to 0: T2PO thinks less, but there is no success at which to compare
    runs = [run("gigpo", 0, 0.0, 40.0, "success"), run("t2po", 0, 0.0, 1.0, "success")]
    r = {row.metric: row for row in rows(summarise(runs))}
    assert math.isnan(r["t2po_think_tokens_ratio_to_gigpo"].value)
    assert not r["t2po_think_tokens_ratio_to_gigpo"].passed
    assert "no game" in r["t2po_think_tokens_ratio_to_gigpo"].detail
    # equal collapses are not fewer collapses
    assert r["t2po_fewer_collapses"].value == 0 and not r["t2po_fewer_collapses"].passed
    # T2PO thinking less at lower success is not judged either
    runs = [run("gigpo", 0, 0.6, 40.0), run("t2po", 0, 0.2, 10.0)]
    assert math.isnan({x.metric: x for x in rows(summarise(runs))}["t2po_think_tokens_ratio_to_gigpo"].value)


def test_bench_config_validation():
    BenchConfig.quick().validate()
    with pytest.raises(TenfoldError, match="arms"):
        BenchConfig(arms=("ppo",)).validate()
    with pytest.raises(TenfoldError):
        BenchConfig(seeds=()).validate()


def test_one_rl_step_of_every_arm_on_vault():
    """The whole path (format, cut-off, resampling, GiGPO, update) on the Vault game, no TextWorld."""
    from tenfold.core.models import build_preset
    from tenfold.envs.text_env import TaskSpec
    from tenfold.t2po.arms import ARMS, RunConfig, train_arm

    tasks = [TaskSpec.of("vault", seed=s, steps=6, doors=1, forks=0) for s in range(2)]
    cfg = RunConfig(
        steps=1,
        tasks_per_step=2,
        num_generations=2,
        max_new_tokens=12,
        budget=4,
        eps=1.0,
        patience=2,
        eta=10.0,
        end_outside=True,  # an untrained model never opens thinking: let the cut end its replies instead
    )
    for arm in ARMS:
        model, tok = build_preset("micro", seed=0)
        res, gen = train_arm(model, tok, arm, tasks, cfg, seed=0)
        h = res.history[0]
        assert res.steps == 1 and h["generated"] >= 2 * 2 * 6  # every turn of 4 six-room episodes
        if ARMS[arm].resample:  # eta 10: every later turn is in the band, so each is redone max_try times
            assert gen.stats.regenerations == 2 * gen.stats.eligible
        else:
            assert gen.stats.regenerations == 0
        if ARMS[arm].cut:  # a loose eps and patience 2: replies are ended after 3 flat-enough steps
            assert h["train_cut_share"] > 0.5 and h["train_think_tokens"] <= 4
        else:
            assert h["train_cut_share"] == 0
    with pytest.raises(TenfoldError, match="unknown arm"):
        train_arm(model, tok, "ppo", tasks, cfg)

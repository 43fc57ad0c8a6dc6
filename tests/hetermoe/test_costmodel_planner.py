"""Cost model calibration, the LP bound and the schedules against hand computations."""

import math

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.hetermoe.costmodel import (
    BUILTIN_PROFILES,
    CostModel,
    MoESpec,
    Workload,
    get_model,
    parse_cluster,
)
from tenfold.hetermoe.planner import fluid_bound, gather_and_squeeze, lp_bound, plan
from tenfold.hetermoe.schedules import Setting, dist_ep, ep, ep_ideal_ms, ep_tasks, zp, zp_tasks

A40, V100 = BUILTIN_PROFILES["A40"], BUILTIN_PROFILES["V100"]


def setting(seq=4096, batch=8, cluster="6xA40,6xV100", model="mixtral-4.3b") -> Setting:
    return Setting(CostModel(get_model(model), Workload(seq, batch)), parse_cluster(cluster))


def test_builtin_profiles_match_the_papers_ratios():
    cm = CostModel(MoESpec("w", hidden=2048, ffn=5120, layers=1, experts=8), Workload(65536))
    assert cm.expert_ms(A40, 1000) / cm.expert_ms(V100, 1000) == pytest.approx(0.8)
    assert cm.attention_ms(V100, 1000) / cm.attention_ms(A40, 1000) == pytest.approx(3.7, rel=0.03)
    short = CostModel(cm.model, Workload(4096))
    assert short.attention_ms(V100, 1000) / short.attention_ms(A40, 1000) < 3.0  # the gap grows with seq


def test_cluster_parsing():
    c = parse_cluster("6xV100, 2xA40")
    assert (c.new[0].name, c.new[1], c.old[0].name, c.old[1]) == ("A40", 2, "V100", 6)
    for bad in ("6xA40", "6xA40,6xA40", "6A40,2xV100", "6xA40,2xB200", "0xA40,1xV100"):
        with pytest.raises(TenfoldError):
            parse_cluster(bad)


def test_fluid_bound_equals_the_hand_solved_lp():
    # new GPU 3.7x faster on attention, 1.25x on experts (V100 = 0.8 A40); W_A = W_E; M = N = 1.
    b = fluid_bound(attn_new=1 / 3.7, exp_new=1.0, attn_old=1.0, exp_old=1.25, m=1, n=1)
    # comparative advantage: all attention on new; experts split so both sides finish together:
    # 1/3.7 + x = 1.25 (1 - x)  ->  x = (1.25 - 1/3.7) / 2.25
    x = (1.25 - 1 / 3.7) / 2.25
    assert (b.x_attention, b.x_expert) == (pytest.approx(1.0), pytest.approx(x))
    assert b.ms == pytest.approx(1 / 3.7 + x)
    ideal = 1 / (1 / (1 / 3.7 + 1.0) + 1 / (1.0 + 1.25))  # EP(Ideal): throughputs add
    assert ideal / b.ms == pytest.approx(1.150, abs=0.002)


def test_lp_bound_is_below_every_schedule():
    s = setting(8192)
    lb = lp_bound(s).ms
    for t in (zp(s, 8).makespan, dist_ep(s).makespan, ep(s).makespan, ep_ideal_ms(s)):
        assert lb <= t


def test_dist_ep_is_the_serial_sum_and_zp_overlaps():
    s = setting(4096)
    serial = sum(t.duration for t in zp_tasks(s, 1))
    assert dist_ep(s).makespan == pytest.approx(serial)
    tl = zp(s, 8)
    busiest = max(tl.busy(r) for r in tl.utilisation())
    assert busiest <= tl.makespan < serial  # overlap helps, and no stream does two things at once


def test_ep_is_per_layer_max_over_device_types():
    s = setting(16384)
    cm, L, g = s.cost, s.layers, 12
    tok, k, h, bf = cm.work.tokens, cm.model.top_k, cm.model.hidden, cm.work.backward_factor
    a2a = max(cm.transfer_ms(d, tok / g * k * h * (1 - 1 / g)) for d in (A40, V100))
    per_layer = max(cm.attention_ms(d, tok / g) for d in (A40, V100)) + max(
        cm.expert_ms(d, tok * k / g) for d in (A40, V100)
    )
    expected = L * (1 + bf) * per_layer + 4 * L * a2a + max(cm.head_ms(d, tok / g) for d in (A40, V100))
    assert ep(s).makespan == pytest.approx(expected)
    assert len(ep_tasks(s)) == L * 2 * (2 * 2 + 2) + 2


def test_gather_and_squeeze_moves_whole_chunks_and_removes_the_bubble():
    wide = MoESpec("wide", hidden=1024, ffn=2048, layers=8, experts=64)  # room to move many experts
    s = Setting(CostModel(wide, Workload(4096, 8)), parse_cluster("6xA40,3xV100"))
    a = gather_and_squeeze(s, 8)
    assert (a.n1, a.n2) == (1, 2)  # N < M: each attention GPU takes 1, each expert GPU gives 2
    chunk = a.n1 * 6
    assert all(x % chunk == 0 for x in a.experts_moved) and sum(a.experts_moved) > 0
    cm = s.cost
    tok = cm.work.tokens / 8
    gap = cm.expert_ms(V100, tok * 2 / 3) - cm.attention_ms(A40, tok / 6)
    squeeze = a.n2 * cm.per_expert_ms(V100, tok) + a.n1 * cm.per_expert_ms(A40, tok)
    assert max(a.experts_moved) < (64 - 3) // chunk * chunk  # no cap binds (memory allows 14 chunks), so
    assert sum(a.experts_moved) // chunk == math.floor(s.layers * gap / squeeze)  # the bubble sets it
    # with no bubble (attention slower than experts) nothing moves
    assert sum(gather_and_squeeze(setting(32768, cluster="2xA40,8xV100"), 2).experts_moved) == 0


def test_plan_reproduces_the_papers_trend_with_sequence_length():
    short, long = (plan(s.cost, s.cluster) for s in (setting(4096), setting(32768)))
    assert long.speedups()["ep"] > short.speedups()["ep"] > 1.0  # HeterMoE / EP grows with seq
    assert short.speedups()["zp"] >= long.speedups()["zp"] >= 1.0  # asymmetric assignment fades
    assert short.times_ms["heter_moe"] >= short.lp_bound_ms
    with pytest.raises(TenfoldError):
        plan(short_cost := setting(4096).cost, setting().cluster, r=3)
    assert short_cost.work.batch == 8

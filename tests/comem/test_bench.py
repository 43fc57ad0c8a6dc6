import math

import pytest

from tenfold.comem.bench import BenchConfig, analytic_bound, markdown_tables, summarize
from tenfold.core.errors import TenfoldError


def test_bound_per_step_is_the_papers_formula():
    # (mem + agent + env) / (max(agent, mem) + env): 2x when mem == agent and env == 0
    assert analytic_bound(1.0, 1.0, 0.0, 4)["per_step"] == pytest.approx(2.0)
    assert analytic_bound(0.1, 0.5, 0.2, 4)["per_step"] == pytest.approx(0.8 / 0.7)


def test_bound_per_window_by_hand():
    # R = 4, agent + env = 0.1, mem = 0.25: sync window 0.65; k = 1 stalls 0.15, k = 2 stalls 0.05
    a, e, m = 0.08, 0.02, 0.25
    assert analytic_bound(a, m, e, 4, k=1)["per_window"] == pytest.approx(0.65 / 0.55)
    assert analytic_bound(a, m, e, 4, k=2)["per_window"] == pytest.approx(0.65 / 0.45)
    # a summary that fits beside k steps hides completely; k beyond R hides no more than R steps
    assert analytic_bound(a, m, e, 4, k=3)["per_window"] == pytest.approx(0.65 / 0.40)
    assert analytic_bound(a, 1.0, e, 4, k=8)["per_window"] == pytest.approx(1.4 / 1.0)


def _row(steps, c, policy, episode_s, success, agent_s=0.05, memory_s=0.2):
    return {
        "steps": steps,
        "concurrency": c,
        "policy": policy,
        "episode_s": episode_s,
        "step_s": episode_s / steps,
        "agent_s": agent_s,
        "wait_s": 0.0,
        "env_s": 0.0,
        "prompt_tokens": 100,
        "memory_s": memory_s,
        "memory_calls": 0 if policy == "full" else 3,
        "memory_errors": 0,
        "success": success,
        "score": success,
    }


def _result(success_full, success_comem, proxy=()):
    rows = [_row(40, 1, "full", 3.0, success_full), _row(40, 1, "sync", 2.5, success_full)]
    rows.append(_row(40, 1, "comem", 2.0, success_comem))
    return {"setup": {"interval": 4, "k": 1}, "rows": rows, "proxy": list(proxy), "k_sweep": []}


def test_summarize_ratios():
    result = _result(1.0, 0.5, proxy=[_row(40, 1, "comem-proxy", 2.2, 0.5)])
    (cell,) = summarize(result)["cells"]
    assert cell["speedup_vs_full"] == pytest.approx(1.5)
    assert cell["speedup_vs_sync"] == pytest.approx(1.25)
    assert cell["success_ratio"] == pytest.approx(0.5)
    assert cell["proxy_vs_library"] == pytest.approx(1.1)
    bound = analytic_bound(0.05, 0.2, 0.0, 4, 1)["per_window"]
    assert cell["vs_sync_of_bound"] == pytest.approx(1.25 / bound)
    assert "comem-proxy" in markdown_tables(result, summarize(result))


def test_success_ratio_undefined_without_full_successes():
    result = _result(0.0, 0.0)
    assert math.isnan(summarize(result)["cells"][0]["success_ratio"])


def test_config_rejects_short_episodes():
    with pytest.raises(TenfoldError, match="too short"):
        BenchConfig(steps=[5]).validate()


def test_the_prefill_arm_is_compared_with_full_and_with_plain_comem():
    result = _result(1.0, 1.0)
    result["rows"].append({**_row(40, 1, "comem-prefill", 1.6, 1.0), "agent_prefill_tokens": 12.0})
    (cell,) = summarize(result)["cells"]
    assert cell["prefill_speedup_vs_full"] == pytest.approx(3.0 / 1.6)
    assert cell["prefill_vs_comem"] == pytest.approx(2.0 / 1.6)
    table = markdown_tables(result, summarize(result))
    assert "| 40 | 1 | comem-prefill |" in table and "| 12 |" in table and "1.88x" in table

import asyncio

import pytest

from tenfold.comem.runtime import PolicyConfig, run_episode
from tenfold.core.errors import TenfoldError
from tenfold.envs.vault import AGENT_SYSTEM, TASK, VaultConfig, VaultGame

from .fakes import ForgetfulMemory, ListingMemory, ReadingAgent


def play(policy, memory=None, agent=None, steps=40, seed=1, **kw):
    game = VaultGame(VaultConfig(steps, 2, 1, seed))
    agent = agent or ReadingAgent()
    cfg = PolicyConfig(policy, **kw)
    return asyncio.run(run_episode(game, agent, memory, cfg, AGENT_SYSTEM, TASK)), agent


@pytest.mark.parametrize("policy", ["full", "sync", "comem"])
def test_every_policy_succeeds_with_a_perfect_memory(policy):
    res, agent = play(policy, ListingMemory())
    assert res.success and res.steps == 40 and len(res.records) == 40 and agent.calls == 40


def test_summaries_shrink_the_agent_prompt():
    full, a_full = play("full")
    comem, a_comem = play("comem", ListingMemory())
    assert sum(a_comem.prompt_chars) < 0.5 * sum(a_full.prompt_chars)
    # the summary in use lags by at least one step and by at most R + k steps
    for r in comem.records:
        if r.summary_cut:
            assert 1 <= r.t - r.summary_cut + 1 <= 4 + 1


def test_a_forgetful_memory_breaks_comem_but_not_full():
    res, _ = play("comem", ForgetfulMemory())
    assert not res.success  # facts fell out of the raw window and the summary dropped them
    res, _ = play("full")
    assert res.success


def test_memory_views_never_include_turns_after_the_cut():
    mem = ListingMemory()
    play("comem", mem, steps=24)
    for i, view in enumerate(mem.views):
        cut = 4 * (i + 1)
        assert f"\n{cut - 1}: " in view[-1]["content"] and f"\n{cut}: " not in view[-1]["content"]


def test_comem_overlaps_memory_with_agent_steps_and_sync_does_not():
    mem_delay, agent_delay, steps = 0.08, 0.03, 24
    sync, _ = play("sync", ListingMemory(mem_delay), ReadingAgent(agent_delay), steps=steps)
    comem, _ = play("comem", ListingMemory(mem_delay), ReadingAgent(agent_delay), steps=steps, k=4)
    calls = steps // 4 - 1  # at t = 4, 8, ..., 20
    assert sum(r.wait_seconds for r in sync.records) >= calls * mem_delay * 0.9
    # comem waits only when a summary is k=4 steps old: memory (80 ms) < 4 agent steps (120 ms)
    assert sum(r.wait_seconds for r in comem.records) < 0.5 * mem_delay
    assert comem.seconds < sync.seconds - 0.5 * calls * mem_delay


def test_k_bounds_how_long_a_slow_summary_is_awaited():
    # memory slower than R agent steps: with k=1 the agent waits at the step after each spawn
    res, _ = play("comem", ListingMemory(0.06), ReadingAgent(0.01), steps=16, k=1)
    waits = [r.t for r in res.records if r.wait_seconds > 0.02]
    assert waits == [5, 9, 13]


def test_a_failing_memory_falls_back_to_full_history():
    res, _ = play("comem", ListingMemory(fail=True))
    assert res.success and res.memory_errors == len(res.memory_seconds) > 0
    assert all(r.summary_cut == 0 for r in res.records)
    res, _ = play("sync", ListingMemory(fail=True))
    assert res.success and res.memory_errors > 0


def test_bad_configs():
    with pytest.raises(TenfoldError, match="policy"):
        PolicyConfig("lazy").validate()
    with pytest.raises(TenfoldError, match="interval"):
        PolicyConfig("comem", interval=0).validate()
    with pytest.raises(TenfoldError, match="memory model"):
        play("comem", None)


@pytest.mark.parametrize("memory_input", ["incremental", "history"])
def test_memory_input_modes(memory_input):
    mem = ListingMemory()
    res, _ = play("comem", mem, steps=24, memory_input=memory_input)
    assert res.success
    last = mem.views[-1][-1]["content"]
    if memory_input == "history":
        assert "\n0: " in last and "Memory so far" not in last
    else:  # the previous summary stands in for the early turns
        assert "Memory so far: " in last and "\n0: " not in last


def test_adopt_at_k_adopts_each_summary_exactly_k_steps_after_it_started():
    # the memory is instant, so without adopt_at_k a summary started at t is adopted at t + 1
    res, _ = play("comem", ListingMemory(), k=3, adopt_at_k=True, steps=40)
    assert res.success
    for r in res.records:
        if r.summary_cut:
            assert r.t - r.summary_cut in (3, 4, 5, 6)  # started at cut, adopted at cut + 3
    adopted_at = {}
    for r in res.records:
        if r.summary_cut:
            adopted_at.setdefault(r.summary_cut, r.t)
    assert all(t == cut + 3 for cut, t in adopted_at.items())
    assert res.summary_cuts == sorted(adopted_at)


class RecordingAgent(ReadingAgent):
    """Keeps every request in order, flagging the one-token ones (pre-fills of a coming prompt)."""

    def __init__(self):
        super().__init__(delay=0.01)
        self.requests = []

    async def chat(self, messages, **kw):
        self.requests.append((kw.get("max_tokens") == 1, [dict(m) for m in messages]))
        return await super().chat(messages, **kw)


def test_prefill_ahead_warms_the_next_prompt_one_step_before_switching_to_it():
    agent = RecordingAgent()
    res, _ = play("comem", ListingMemory(), agent=agent, k=4, prefill_ahead=True, steps=40)
    warms = [i for i, (w, _) in enumerate(agent.requests) if w]
    assert res.success and res.prefills == len(warms) > 0
    for i in warms:
        warm = agent.requests[i][1]
        # the next step's prompt extends the warmed one, so its prefix is in the agent's cache
        later = [m for w, m in agent.requests[i + 1 :] if not w]
        assert later and later[0][: len(warm)] == warm and len(later[0]) > len(warm)
    # a summary ready before it is due is adopted one step later than without the pre-fill
    plain, _ = play("comem", ListingMemory(), agent=ReadingAgent(0.01), k=4, steps=40)
    first = [r.t for r in res.records if r.summary_cut][0]
    assert first == [r.t for r in plain.records if r.summary_cut][0] + 1

"""Penalties, logit bias, top logprobs, sampling floors and per-sequence isolation.

References are independent of `DecodeBatch`: a plain loop of full forward passes (no cache, no batch)
that applies OpenAI's documented adjustments by hand, and the engine's results compared with the same
sequences decoded with nothing going wrong.
"""

import asyncio

import pytest
import torch

from tenfold.core import decode_batch, sampler
from tenfold.core.engine import Engine
from tenfold.core.errors import TenfoldError
from tenfold.core.sampler import SamplingParams, encode_prompt, generate


def reference_greedy(model, prompt_ids, n, freq=0.0, pres=0.0, bias=None, top=0):
    """Greedy decode by full forward passes; OpenAI: logit[j] -= count[j] * freq + (count[j] > 0) * pres."""
    ids, out, tops = list(prompt_ids), [], []
    counts = torch.zeros(model.config.vocab_size)
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].float()
        if top:
            v, i = torch.log_softmax(logits, -1).topk(top)
            tops.append(i.tolist())
        adj = logits - counts * freq - (counts > 0).float() * pres
        for t, b in (bias or {}).items():
            adj[t] += b
        tok = int(adj.argmax())
        out.append(tok)
        counts[tok] += 1
        ids.append(tok)
    return out, tops


@pytest.mark.parametrize("freq,pres", [(2.0, 0.0), (0.0, 1.5), (0.7, 0.4), (-1.0, 0.0)])
def test_penalties_match_the_openai_formula(tiny, freq, pres):
    model, tok = tiny
    prompts = ["aaaa", "the cat", "x"]
    params = SamplingParams(24, ignore_eos=True, frequency_penalty=freq, presence_penalty=pres)
    gens = generate(model, tok, prompts, params)
    for p, g in zip(prompts, gens, strict=True):
        ref, _ = reference_greedy(model, encode_prompt(tok, p), 24, freq, pres)
        assert g.token_ids == ref
    plain = generate(model, tok, prompts, SamplingParams(24, ignore_eos=True))
    if freq > 0:  # a positive penalty changes the untrained model's repetitive greedy text
        assert any(a.token_ids != b.token_ids for a, b in zip(gens, plain, strict=True))


def test_logit_bias_moves_the_choice(tiny):
    model, tok = tiny
    ids = encode_prompt(tok, "bias me")
    first, _ = reference_greedy(model, ids, 1)
    bias = {first[0]: -100.0}
    g = generate(model, tok, [ids], SamplingParams(8, ignore_eos=True, logit_bias=bias))[0]
    ref, _ = reference_greedy(model, ids, 8, bias=bias)
    assert g.token_ids == ref and first[0] not in g.token_ids
    boost = {65: 100.0}
    g = generate(model, tok, [ids], SamplingParams(4, ignore_eos=True, logit_bias=boost))[0]
    assert g.token_ids == [65] * 4


def test_top_logprobs_are_the_raw_top_k(tiny):
    model, tok = tiny
    ids = encode_prompt(tok, "top k")
    g = generate(model, tok, [ids], SamplingParams(6, ignore_eos=True, top_logprobs=5))[0]
    _, tops = reference_greedy(model, ids, 6, top=5)
    assert [[t for t, _ in step] for step in g.top_logprobs] == tops
    for step, lp, chosen in zip(g.top_logprobs, g.logprobs, g.token_ids, strict=True):
        assert step[0][0] == chosen and abs(step[0][1] - lp) < 1e-5  # greedy: the best is the chosen
        assert all(a[1] >= b[1] for a, b in zip(step, step[1:], strict=False))
    assert generate(model, tok, [ids], SamplingParams(2))[0].top_logprobs is None


@pytest.mark.parametrize(
    "kw", [{"temperature": 5e-324}, {"temperature": 1e-300}, {"temperature": 1.0, "top_p": 1e-300}]
)
def test_tiny_temperature_or_top_p_is_greedy_not_a_crash(tiny, kw):
    model, tok = tiny
    ids = encode_prompt(tok, "floor")
    g = generate(model, tok, [ids], SamplingParams(10, ignore_eos=True, seed=3, **kw))[0]
    ref, _ = reference_greedy(model, ids, 10)
    assert g.finish_reason == "length" and g.token_ids == ref


@pytest.mark.parametrize(
    "kw",
    [
        {"frequency_penalty": 2.5},
        {"presence_penalty": -3},
        {"logit_bias": {10**6: 1.0}},
        {"logit_bias": {5: 101.0}},
        {"top_logprobs": 21},
        {"temperature": float("nan")},
        {"top_p": 0.0},
    ],
)
def test_bad_controls_are_refused(tiny, kw):
    model, tok = tiny
    with pytest.raises(TenfoldError):
        generate(model, tok, ["x"], SamplingParams(2, **kw))


# ---------------------------------------------------------------------------------------------------
# the engine: a failing sequence fails alone
PROMPTS = ["first one", "second", "the third prompt", "4"]


def run_engine(model, tok, prompts, params, prefill=None):
    async def main():
        engine = Engine(model, tok, prefill=prefill).start()
        try:
            handles = [engine.submit(encode_prompt(tok, p), params, index=i) for i, p in enumerate(prompts)]
            results = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
            return results, dict(engine.stats)
        finally:
            engine.stop()

    return asyncio.run(main())


def test_a_sequence_that_cannot_be_sampled_fails_alone(tiny, monkeypatch):
    model, tok = tiny
    real = sampler._choose

    def flaky(logits, seqs, forced):
        out = real(logits, seqs, forced)
        return [RuntimeError("boom") if s.params.seed == 666 else t for s, t in zip(seqs, out, strict=True)]

    monkeypatch.setattr(decode_batch, "_choose", flaky)  # where DecodeBatch.step looks it up
    params = [SamplingParams(12, ignore_eos=True, temperature=0.8, seed=s) for s in (1, 666, 3, 4)]

    async def main():
        engine = Engine(model, tok).start()
        try:
            hs = [engine.submit(encode_prompt(tok, p), sp) for p, sp in zip(PROMPTS, params, strict=True)]
            return await asyncio.gather(*(h.result() for h in hs), return_exceptions=True), engine.stats
        finally:
            engine.stop()

    results, stats = asyncio.run(main())
    assert isinstance(results[1], RuntimeError) and stats["failed"] == 1
    for i in (0, 2, 3):
        alone = generate(model, tok, [PROMPTS[i]], params[i])[0]
        assert results[i].token_ids == alone.token_ids
    assert stats["running"] == 0 and stats["waiting"] == 0


def test_a_prompt_whose_prefill_fails_fails_alone(tiny):
    """A prefill plug-in (say, a broken KV store) raising for one prompt: the batch is rebuilt and only
    that prompt's request fails; the others decode exactly what they decode alone."""
    model, tok = tiny
    bad = encode_prompt(tok, PROMPTS[2])

    def prefill(ids):
        if ids == bad:
            raise OSError("disk on fire")
        return None

    params = SamplingParams(10, ignore_eos=True)
    results, stats = run_engine(model, tok, PROMPTS, params, prefill=prefill)
    assert isinstance(results[2], OSError) and stats["failed"] == 1
    for i in (0, 1, 3):
        assert results[i].token_ids == generate(model, tok, [PROMPTS[i]], params)[0].token_ids


def test_a_transient_forward_failure_loses_nothing(tiny, monkeypatch):
    """One decode step's forward pass fails once: every sequence is rebuilt from its tokens so far and
    finishes with exactly the tokens it would have produced."""
    model, tok = tiny
    real, calls = sampler.DecodeBatch._forward, {"n": 0}

    def once(self, ids, mask, pos, cache):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("transient")
        return real(self, ids, mask, pos, cache)

    monkeypatch.setattr(sampler.DecodeBatch, "_forward", once)
    params = SamplingParams(10, ignore_eos=True)
    results, stats = run_engine(model, tok, PROMPTS, params)
    monkeypatch.setattr(sampler.DecodeBatch, "_forward", real)
    assert calls["n"] > 5 and stats["failed"] == 0
    for i, p in enumerate(PROMPTS):
        assert results[i].token_ids == generate(model, tok, [p], params)[0].token_ids


def test_a_persistent_failure_fails_its_requests_and_the_engine_serves_on(tiny, monkeypatch):
    model, tok = tiny
    real, state = sampler.DecodeBatch._forward, {"calls": 0, "broken": True}

    def broken(self, ids, mask, pos, cache):
        state["calls"] += 1
        if state["broken"] and state["calls"] > 2:
            raise RuntimeError("device lost")
        return real(self, ids, mask, pos, cache)

    monkeypatch.setattr(sampler.DecodeBatch, "_forward", broken)
    params = SamplingParams(10, ignore_eos=True)

    async def main():
        engine = Engine(model, tok).start()
        try:
            hs = [engine.submit(encode_prompt(tok, p), params) for p in PROMPTS]
            first = await asyncio.wait_for(
                asyncio.gather(*(h.result() for h in hs), return_exceptions=True), 60
            )
            state["broken"] = False
            later = await engine.submit(encode_prompt(tok, "later"), params).result()
            return first, later, dict(engine.stats)
        finally:
            engine.stop()

    first, later, stats = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in first) and stats["failed"] == len(PROMPTS)
    monkeypatch.setattr(sampler.DecodeBatch, "_forward", real)
    assert later.token_ids == generate(model, tok, ["later"], params)[0].token_ids

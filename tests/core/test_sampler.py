"""Sampler tests: each compares against an independent reference (a plain full forward pass, an
unbatched run, or the softmax distribution itself)."""

import pytest
import torch

from tenfold.core.errors import ContextLengthError, TenfoldError
from tenfold.core.models import build_preset
from tenfold.core.sampler import DecodeBatch, SamplingParams, SeqState, _choose, encode_prompt, generate

PROMPTS = ["hello", "a much longer prompt with several words in it", "x", "mid length prompt", "ünïcødé ☃"]


def full_forward_last_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float()


@pytest.mark.parametrize("name", ["tiny", "moe-tiny"])
def test_cached_decode_equals_uncached_forward(name):
    """Every step's logits from the left-padded, cached batch equal a fresh unpadded forward of that sequence."""
    model, tok = build_preset(name)
    model.eval()
    batch = DecodeBatch(model, tok)
    seqs = [
        batch.new_sequence(i, encode_prompt(tok, p), SamplingParams(12, ignore_eos=True))
        for i, p in enumerate(PROMPTS[:3])
    ]
    batch.add(seqs[:2])
    worst = 0.0
    for step in range(10):
        if step == 3:  # a sequence joins the running batch mid-way (continuous batching)
            batch.add(seqs[2:])
        for row, s in enumerate(batch.seqs):
            ref = full_forward_last_logits(model, s.prompt_ids + s.token_ids)
            worst = max(worst, float((batch.pending[row] - ref).abs().max()))
        batch.step()
    assert worst < 1e-4


def test_batched_equals_unbatched_greedy(tiny):
    model, tok = tiny
    params = SamplingParams(max_new_tokens=24, ignore_eos=True)
    alone = [generate(model, tok, [p], params)[0] for p in PROMPTS]
    together = generate(model, tok, PROMPTS, params)
    small_batches = generate(model, tok, PROMPTS, params, batch_size=2)  # joins as others finish
    for a, b, c in zip(alone, together, small_batches, strict=True):
        assert a.token_ids == b.token_ids == c.token_ids
        assert a.text == b.text
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4


def test_uneven_lengths_and_no_cache_agree(tiny):
    model, tok = tiny
    lengths = [3, 17, 9, 1]
    params = [SamplingParams(max_new_tokens=n, ignore_eos=True) for n in lengths]
    cached = generate(model, tok, PROMPTS[:4], params, batch_size=4)
    uncached = generate(model, tok, PROMPTS[:4], params, use_cache=False)
    for n, a, b in zip(lengths, cached, uncached, strict=True):
        assert len(a.token_ids) == n and a.finish_reason == "length"
        assert a.token_ids == b.token_ids


def test_logprobs_match_full_forward(tiny):
    model, tok = tiny
    g = generate(model, tok, ["logprob check"], SamplingParams(max_new_tokens=6, ignore_eos=True))[0]
    ids = g.prompt_ids
    for tok_id, lp in zip(g.token_ids, g.logprobs, strict=True):
        ref = torch.log_softmax(full_forward_last_logits(model, ids), -1)[tok_id]
        assert abs(float(ref) - lp) < 1e-4
        assert tok_id == int(full_forward_last_logits(model, ids).argmax())
        ids = ids + [tok_id]


def test_seeded_sampling_reproducible_and_batch_invariant(tiny):
    model, tok = tiny
    params = [SamplingParams(max_new_tokens=16, temperature=1.0, seed=s, ignore_eos=True) for s in range(4)]
    together = generate(model, tok, PROMPTS[:4], params)
    alone = [generate(model, tok, [p], [sp])[0] for p, sp in zip(PROMPTS[:4], params, strict=True)]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    other_seed = generate(model, tok, PROMPTS[:1], SamplingParams(16, 1.0, seed=99, ignore_eos=True))[0]
    assert other_seed.token_ids != together[0].token_ids  # 16 tokens from a ~uniform 264-way choice


def test_tiny_top_p_is_greedy(tiny):
    model, tok = tiny
    greedy = generate(model, tok, PROMPTS, SamplingParams(max_new_tokens=12, ignore_eos=True))
    nucleus = generate(
        model, tok, PROMPTS, SamplingParams(12, temperature=1.5, top_p=1e-6, seed=0, ignore_eos=True)
    )
    assert [g.token_ids for g in greedy] == [g.token_ids for g in nucleus]


def _rows(params: list[SamplingParams], seed: int = 0) -> list[SeqState]:
    return [
        SeqState(i, [1], p, None, frozenset(), torch.Generator().manual_seed(seed + i))
        for i, p in enumerate(params)
    ]


def test_sample_follows_softmax_and_nucleus():
    """Rows of one batch, each with its own temperature and top-p, each drawn from its own distribution."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = torch.log(probs).repeat(4, 1)
    params = [
        SamplingParams(temperature=1.0),
        SamplingParams(temperature=1.0, top_p=0.7),
        SamplingParams(temperature=2.0),
        SamplingParams(),  # greedy
    ]
    seqs, n = _rows(params), 20000
    draws = torch.tensor([_choose(logits, seqs, {}) for _ in range(n)])  # (n, rows)
    freq = [torch.bincount(draws[:, r], minlength=4) / n for r in range(4)]
    assert torch.allclose(freq[0], probs, atol=0.015)
    # top_p = 0.7: the nucleus is {0, 1} (0.5 < 0.7, 0.5 + 0.3 >= 0.7), renormalised to 5/8, 3/8
    assert freq[1][2] == freq[1][3] == 0 and abs(freq[1][0] - 0.625) < 0.015
    # temperature 2: p_i^(1/2), renormalised
    assert torch.allclose(freq[2], probs.sqrt() / probs.sqrt().sum(), atol=0.015)
    assert freq[3][0] == 1


def test_batched_choice_draws_what_each_row_draws_alone():
    """Each row samples from its own generator: the same token whatever the other rows are."""
    torch.manual_seed(0)
    logits = torch.randn(6, 50) * 3
    params = [SamplingParams(temperature=t, top_p=p) for t, p in [(1, 1), (0.7, 0.9), (1.3, 0.5)] * 2]
    together = _choose(logits, _rows(params), {})
    alone = [_choose(logits[i : i + 1], _rows([params[i]], seed=i), {})[0] for i in range(6)]
    assert together == alone


def test_a_row_that_cannot_be_sampled_fails_alone_in_the_batch():
    logits = torch.randn(3, 20)
    logits[1, 4] = float("nan")
    seqs = _rows([SamplingParams(temperature=1.0, top_p=0.9)] * 3)
    out = _choose(logits, seqs, {2: 7})
    assert isinstance(out[0], int) and isinstance(out[1], TenfoldError) and out[2] == 7


def test_stop_strings_and_stop_tokens(tiny):
    model, tok = tiny
    base = generate(model, tok, ["stop here"], SamplingParams(max_new_tokens=30, ignore_eos=True))[0]
    text = base.text
    stop = text[10:12]
    assert len(stop) == 2
    cut = generate(
        model, tok, ["stop here"], SamplingParams(max_new_tokens=30, stop=[stop], ignore_eos=True)
    )[0]
    assert cut.finish_reason == "stop"
    assert cut.text == text[: text.find(stop)]
    # a stop token id: the first token generated ends generation at once
    first = base.token_ids[0]
    st = generate(model, tok, ["stop here"], SamplingParams(max_new_tokens=30, stop_token_ids=[first]))[0]
    assert st.finish_reason == "stop" and st.token_ids == [first] and st.text == ""


def test_hook_sees_logits_and_can_force_and_stop(tiny):
    model, tok = tiny
    forced = tok.encode("forced!")
    seen = []

    def hook(state):
        for i, s in enumerate(state.seqs):
            ref = torch.softmax(state.logits[i], -1)
            seen.append(abs(float(-(ref * ref.log()).sum()) - float(state.entropy[i])))
            if s.index == 0 and len(s.token_ids) < len(forced):
                state.force(i, forced[len(s.token_ids)])
            if s.index == 1 and len(s.token_ids) == 5:
                state.stop(i)

    params = SamplingParams(max_new_tokens=10, ignore_eos=True)
    out = generate(model, tok, PROMPTS[:3], params, hook=hook, batch_size=2)  # prompt 2 joins mid-run
    plain = generate(model, tok, PROMPTS[:3], params)
    assert out[0].token_ids[: len(forced)] == forced and out[0].text.startswith("forced!")
    assert out[1].finish_reason == "hook" and out[1].token_ids == plain[1].token_ids[:5]
    assert out[2].token_ids == plain[2].token_ids  # untouched sequence unaffected by its neighbours
    assert max(seen) < 1e-4


def test_context_limit():
    model, tok = build_preset("tiny")
    model.config.max_position_embeddings = 16
    with pytest.raises(ContextLengthError, match="at most 15"):
        generate(model, tok, [[5] * 16])
    g = generate(model, tok, [[5] * 10], SamplingParams(max_new_tokens=50, ignore_eos=True))[0]
    assert g.finish_reason == "length" and len(g.prompt_ids) + len(g.token_ids) == 16


@pytest.mark.parametrize(
    "params,match",
    [
        (SamplingParams(max_new_tokens=0), "max_new_tokens"),
        (SamplingParams(temperature=-1), "temperature"),
        (SamplingParams(top_p=0), "top_p"),
        (SamplingParams(stop=[""]), "stop"),
    ],
)
def test_bad_params(tiny, params, match):
    model, tok = tiny
    with pytest.raises(TenfoldError, match=match):
        generate(model, tok, ["x"], params)


def test_bad_prompts(tiny):
    model, tok = tiny
    with pytest.raises(TenfoldError, match="empty"):
        generate(model, tok, [[]])
    with pytest.raises(TenfoldError, match="token ids"):
        generate(model, tok, [[10**6]])
    with pytest.raises(TenfoldError, match="list"):
        generate(model, tok, "a bare string")

"""Shared-prefix decoding: the split attention equals SDPA over the concatenated keys, and a batch that
shares, grows and shrinks its prefix gives, at every step, the logits of a plain forward pass."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig

from tenfold.core import shared_prefix
from tenfold.core.models import build_preset
from tenfold.core.sampler import DecodeBatch, SamplingParams, encode_prompt, generate
from tenfold.core.tokenizer import Tokenizer

SYSTEM = "You are a careful assistant. Answer in one short line, then stop. "


class _Layer:
    layer_idx = 0


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("q_len", [1, 5])
def test_attention_equals_sdpa_over_concatenation(groups, q_len):
    torch.manual_seed(0)
    b, h, d, p, s = 3, 4, 8, 11, 7
    kv = h // groups
    q = torch.randn(b, h, q_len, d)
    pk, pv = torch.randn(1, kv, p, d), torch.randn(1, kv, p, d)
    k, v = torch.randn(b, kv, s, d), torch.randn(b, kv, s, d)
    own = torch.ones(b, 1, q_len, s, dtype=torch.bool)
    own[1, :, :, :3] = False  # left padding of row 1
    own &= torch.ones(q_len, s, dtype=torch.bool).tril(s - q_len)  # causal over the new tokens
    out, _ = shared_prefix.attention(_Layer(), q, k, v, own, scaling=0.3, prefix_kv=[(pk, pv)])

    full_k = torch.cat([pk.expand(b, -1, -1, -1), k], 2).repeat_interleave(groups, 1)
    full_v = torch.cat([pv.expand(b, -1, -1, -1), v], 2).repeat_interleave(groups, 1)
    mask = torch.cat([torch.ones(b, 1, q_len, p, dtype=torch.bool), own], -1)
    ref = F.scaled_dot_product_attention(q, full_k, full_v, attn_mask=mask, scale=0.3).transpose(1, 2)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5)


def test_common_prefix():
    assert shared_prefix.common_prefix([]) == 0
    assert shared_prefix.common_prefix([[1, 2, 3]]) == 3
    assert shared_prefix.common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert shared_prefix.common_prefix([[1], [2]]) == 0


def _gqa_llama():
    tok = Tokenizer.byte_level()
    cfg = LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tok.pad_id,
    )
    torch.manual_seed(1)
    return AutoModelForCausalLM.from_config(cfg).eval(), tok


def _model(name):
    if name == "gqa":
        return _gqa_llama()
    model, tok = build_preset(name)
    return model.eval(), tok


@pytest.mark.parametrize("name", ["tiny", "moe-tiny", "gqa"])
def test_shared_batch_equals_full_forward(name):
    """Rows join one at a time: two rows share nothing (too few), the third grows a shared prefix out
    of the running rows, a fourth with a shorter common start shrinks it, and when fewer than three
    rows are left it goes back into the rows. Every pending logit vector equals a fresh forward pass of
    that row's tokens."""
    model, tok = _model(name)
    batch = DecodeBatch(model, tok)
    assert batch.MIN_ROWS == 3
    prompts = [
        SYSTEM + "Question: what is 2 + 2?",
        SYSTEM + "Question: name a colour.",
        SYSTEM + "Question: and a number?",
        SYSTEM[:-20] + "Different ending here.",
        "Unrelated prompt.",
    ]
    budgets = [5, 9, 16, 16, 6]
    seqs = [
        batch.new_sequence(i, encode_prompt(tok, p), SamplingParams(n, ignore_eos=True))
        for i, (p, n) in enumerate(zip(prompts, budgets, strict=True))
    ]
    joins = {0: [seqs[0]], 1: [seqs[1]], 2: [seqs[2]], 3: [seqs[3]], 12: [seqs[4]]}
    shared, rows, worst = [], [], 0.0
    for step in range(20):
        if step in joins:
            batch.add(joins[step])
        shared.append(len(batch.prefix_ids))
        rows.append(len(batch.seqs))
        for row, s in enumerate(batch.seqs):
            with torch.no_grad():
                ref = model(torch.tensor([s.prompt_ids + s.token_ids])).logits[0, -1].float()
            worst = max(worst, float((batch.pending[row] - ref).abs().max()))
        batch.step()
    assert not batch.seqs
    n_system = len(tok.encode(SYSTEM))
    assert shared[0] == shared[1] == 0  # one or two rows share nothing
    assert shared[2] >= n_system  # the third row: the system prompt (and more) is shared
    assert 0 < shared[3] < n_system  # the fourth shares less
    assert rows[11] == 2 and shared[11] == 0  # two rows left: back to per-row copies
    assert rows[12] == 3 and shared[12] == 0  # the unrelated third row shares nothing with them
    assert worst < 1e-4


def test_generate_with_and_without_sharing_agree(tiny):
    """Group rollouts (one prompt n times, as GRPO samples them) are shared from the first step."""
    model, tok = tiny
    prompts = [SYSTEM + "Go."] * 4 + [SYSTEM + "Again."]
    params = [SamplingParams(max_new_tokens=10, temperature=1.0, seed=i) for i in range(len(prompts))]
    plain = generate(model, tok, prompts, params, share_prefix=False)
    shared = generate(model, tok, prompts, params)
    for a, b in zip(plain, shared, strict=True):
        assert a.token_ids == b.token_ids
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4


def test_models_without_the_interface_decode_unshared():
    model, tok = build_preset("tiny")
    model.config._attn_implementation = "eager"
    assert not shared_prefix.enable(model)
    batch = DecodeBatch(model, tok)
    assert not batch.share


def test_engine_shares_a_system_prompt_across_concurrent_chats(tiny):
    """Concurrent chats with one system prompt decode on one shared copy of it, with the results each
    chat gets alone."""
    import asyncio

    from tenfold.core.backends import LocalBackend

    chats = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}] for q in ("hi", "yo", "ok")
    ]

    async def run():
        b = LocalBackend("tiny", loaded=tiny)
        try:
            together = await asyncio.gather(*(b.chat(c, max_tokens=10, logprobs=True) for c in chats))
            alone = [await b.chat(c, max_tokens=10, logprobs=True) for c in chats]
            return together, alone, b.engine.stats["shared_prefix_max"]
        finally:
            await b.aclose()

    together, alone, shared = asyncio.run(run())
    assert shared >= len(SYSTEM)  # byte-level tokens: the whole system prompt was shared
    for t, a in zip(together, alone, strict=True):
        assert t.text == a.text
        assert max(abs(x - y) for x, y in zip(t.logprobs, a.logprobs, strict=True)) < 1e-4

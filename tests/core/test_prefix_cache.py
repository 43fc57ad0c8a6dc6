import numpy as np
import pytest
import torch

from tenfold.core.errors import TenfoldError
from tenfold.core.prefix_cache import PrefixCachePrefill, common_prefix
from tenfold.core.sampler import SamplingParams, generate


def _full_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def _ids(n, seed):
    return torch.randint(8, 264, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_common_prefix():
    a = np.array([1, 2, 3, 4])
    assert common_prefix(a, np.array([1, 2, 9])) == 2
    assert common_prefix(a, np.array([1, 2, 3, 4, 5])) == 4
    assert common_prefix(a, np.array([7])) == 0


def test_reused_prefix_gives_the_same_logits_and_cache(tiny):
    model, _ = tiny
    pc = PrefixCachePrefill(model)
    a = _ids(60, 0)
    b = a + _ids(25, 1)  # the next turn of the same conversation
    c = a[:40] + _ids(30, 2)  # a branch off the middle
    for ids, reused in ((a, 0), (b, 60), (c, 40)):
        before = pc.reused_tokens
        cache, logits = pc(ids)
        assert pc.reused_tokens - before == reused
        assert torch.allclose(logits, _full_logits(model, ids), atol=1e-4)
        assert cache.get_seq_length() == len(ids)
        with torch.no_grad():  # the cache is the prompt's KV: the next token's logits match too
            nxt = model(input_ids=torch.tensor([[9]]), cache=cache).logits[0, -1]
        assert torch.allclose(nxt, _full_logits(model, ids + [9]), atol=1e-4)
    # b extended a (one entry replaced the other); c is a branch (its own entry)
    assert len(pc) == 2


def test_identical_prompt_still_computes_one_token_and_keeps_one_entry(tiny):
    model, _ = tiny
    pc = PrefixCachePrefill(model)
    a = _ids(30, 3)
    pc(a)
    _, logits = pc(a)
    assert pc.reused_tokens == 29 and len(pc) == 1
    assert torch.allclose(logits, _full_logits(model, a), atol=1e-4)


def test_lru_eviction_respects_the_byte_cap(tiny):
    model, _ = tiny
    one = PrefixCachePrefill(model)
    one(_ids(50, 4))
    cap = int(one.nbytes * 2.5)  # room for two 50-token entries
    pc = PrefixCachePrefill(model, max_bytes=cap)
    prompts = [_ids(50, 10 + i) for i in range(4)]
    for p in prompts:
        pc(p)
    assert len(pc) == 2 and pc.nbytes <= cap
    before = pc.reused_tokens
    pc(prompts[0] + [5])  # evicted: nothing reused
    assert pc.reused_tokens == before
    pc(prompts[3] + [5])  # most recent: reused
    assert pc.reused_tokens == before + 50


def test_local_backend_with_prefix_cache_generates_what_plain_generate_does(tiny):
    import asyncio

    from tenfold.core.backends import LocalBackend

    model, tok = tiny
    backend = LocalBackend("tiny", loaded=tiny, prefix_cache_bytes=1 << 26)
    base = "The vault has many rooms. " * 3
    prompts = [base, base + "Room 1.", base + "Room 1. Room 2."]

    async def run():
        try:
            return [await backend.complete(p, max_tokens=12, temperature=0) for p in prompts]
        finally:
            await backend.aclose()

    got = asyncio.run(run())
    want = generate(model, tok, prompts, SamplingParams(max_new_tokens=12, temperature=0))
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    assert backend.prefill.hits == 2 and backend.prefill.reused_tokens > 2 * len(base)


def test_bad_input():
    with pytest.raises(TenfoldError, match="positive"):
        PrefixCachePrefill(torch.nn.Linear(1, 1), max_bytes=0)


def test_serve_with_prefix_cache_flag_answers_like_plain_generate(tiny):
    from openai import OpenAI

    from tenfold.core.server import ServerProcess

    model, tok = tiny
    base = "Room 1. Room 2. Room 3. " * 4
    prompts = [base, base + "Room 4."]
    want = generate(model, tok, prompts, SamplingParams(max_new_tokens=8, temperature=0))
    with ServerProcess("tiny", "--prefix-cache-gb", "0.1") as srv:
        client = OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        got = [
            client.completions.create(model="tiny", prompt=p, max_tokens=8, temperature=0).choices[0].text
            for p in prompts
        ]
    assert got == [w.text for w in want]

"""LocalBackend and OpenAIBackend behind one `Backend` interface give the same greedy results."""

import asyncio

from tenfold.core.backends import Backend, LocalBackend, OpenAIBackend, make_backend
from tenfold.core.sampler import SamplingParams, generate
from tenfold.core.server import ServerThread, create_app

PROMPTS = [f"prompt number {i} " + "xy" * i for i in range(8)]
CHAT = [{"role": "user", "content": "hello"}]


def test_local_backend_batches_concurrent_calls(tiny):
    model, tok = tiny
    expected = [g.text for g in generate(model, tok, PROMPTS, SamplingParams(max_new_tokens=8))]

    async def run():
        b = LocalBackend("tiny", loaded=tiny)
        assert isinstance(b, Backend)
        together = await asyncio.gather(*(b.complete(p, max_tokens=8) for p in PROMPTS))
        alone = [await b.complete(p, max_tokens=8) for p in PROMPTS]
        chat = await b.chat(CHAT, max_tokens=8, logprobs=True)
        peak = b.engine.stats["max_batch_seen"]
        await b.aclose()
        return together, alone, chat, peak

    together, alone, chat, peak = asyncio.run(run())
    assert [c.text for c in together] == [c.text for c in alone] == expected
    assert peak > 1  # the concurrent calls were decoded together
    assert together[0].prompt_tokens == len(tok.encode(PROMPTS[0])) + 1
    assert (
        chat.prompt_tokens == len(tok.apply_chat_template(CHAT))
        and len(chat.logprobs) == chat.completion_tokens
    )


def test_openai_backend_matches_local(tiny):
    model, tok = tiny

    async def run(base_url):
        local = LocalBackend("tiny", loaded=tiny)
        remote = make_backend(base_url)
        assert isinstance(remote, OpenAIBackend) and isinstance(remote, Backend)
        out = []
        for b in (local, remote):
            c = await b.complete("compare", max_tokens=10, logprobs=True)
            h = await b.chat(CHAT, max_tokens=10)
            out.append((c, h))
            await b.aclose()
        return out, remote.model

    with ServerThread(create_app(model, tok, "tiny")) as srv:
        ((lc, lh), (rc, rh)), served = asyncio.run(run(srv.base_url))
    assert served == "tiny"  # read from /v1/models
    assert (rc.text, rc.finish_reason, rc.completion_tokens) == (
        lc.text,
        lc.finish_reason,
        lc.completion_tokens,
    )
    assert rh.text == lh.text and rh.prompt_tokens == lh.prompt_tokens
    assert max(abs(a - b) for a, b in zip(rc.logprobs, lc.logprobs, strict=True)) < 1e-4


def test_make_backend_local():
    b = make_backend("tiny")
    assert isinstance(b, LocalBackend) and b.model == "tiny"

"""`LocalBackend` and `OpenAIBackend` behind one `Backend` interface give the same results.

Expected values come from `generate` on the same model, one prompt at a time. The tiny preset is
randomly initialised; the prompts below give pairwise different greedy token sequences (asserted), and
logprobs are compared as well, so a backend that mixed up concurrent requests would be caught.
"""

import asyncio

import pytest

from tenfold.core.backends import Backend, Completion, LocalBackend, OpenAIBackend, make_backend, stream_chat
from tenfold.core.errors import TenfoldError
from tenfold.core.sampler import SamplingParams, generate
from tenfold.core.server import ServerThread, create_app

PROMPTS = ["a find", "see him", "a come my", "so many", "them", "r42weM8k", "HnTK", "ovJzS5l1,0pk"]
CHAT = [{"role": "system", "content": "you are terse"}, {"role": "user", "content": "were"}]
TOL = 1e-4


def near(a, b):
    return len(a) == len(b) and all(abs(x - y) < TOL for x, y in zip(a, b, strict=True))


def reference(tiny, prompt, max_tokens, **kw):
    """One prompt (text, or token ids used verbatim) decoded alone, as `Backend` does by default."""
    model, tok = tiny
    return generate(model, tok, [prompt], SamplingParams(max_new_tokens=max_tokens, **kw))[0]


def test_local_backend_concurrent_calls_equal_sequential_calls(tiny):
    refs = [reference(tiny, p, 8) for p in PROMPTS]
    assert len({tuple(g.token_ids) for g in refs}) == len(PROMPTS)  # precondition: distinguishable

    async def run():
        b = LocalBackend("tiny", loaded=tiny)
        try:
            assert isinstance(b, Backend) and b.model == "tiny"
            together = await asyncio.gather(*(b.complete(p, max_tokens=8, logprobs=True) for p in PROMPTS))
            alone = [await b.complete(p, max_tokens=8, logprobs=True) for p in PROMPTS]
            plain = await b.complete(PROMPTS[0], max_tokens=8)
            return together, alone, plain, b.engine.stats["max_batch_seen"]
        finally:
            await b.aclose()

    together, alone, plain, peak = asyncio.run(run())
    assert peak > 1  # the concurrent calls really were decoded as one batch
    for p, t, a, ref in zip(PROMPTS, together, alone, refs, strict=True):
        for c in (t, a):
            assert (c.text, c.finish_reason, c.token_ids) == (ref.text, ref.finish_reason, ref.token_ids), p
            assert c.prompt_tokens == 1 + len(p.encode("utf-8")) and c.completion_tokens == len(ref.token_ids)
            assert near(c.logprobs, ref.logprobs), p
    assert plain.logprobs is None and plain.text == refs[0].text  # logprobs only when asked for


def test_local_backend_chat_by_name(tiny):
    model, tok = tiny
    ref = reference(tiny, tok.apply_chat_template(CHAT), 12)

    async def run():
        b = LocalBackend("tiny")  # loads the preset itself (same seed, so the same weights)
        try:
            greedy = await b.chat(CHAT, max_tokens=12, logprobs=True)
            s1 = await b.chat(CHAT, max_tokens=12, temperature=1.0, seed=3)
            s2 = await b.chat(CHAT, max_tokens=12, temperature=1.0, seed=3)
            return greedy, s1, s2
        finally:
            await b.aclose()

    greedy, s1, s2 = asyncio.run(run())
    assert ref.text  # precondition: some visible text to compare
    assert greedy.text == ref.text and greedy.token_ids == ref.token_ids
    # <|bos|> + per message (<|role|> + bytes + <|end|>) + <|assistant|>
    assert greedy.prompt_tokens == 2 + sum(2 + len(m["content"].encode("utf-8")) for m in CHAT)
    assert len(greedy.logprobs) == greedy.completion_tokens == len(ref.token_ids)
    assert near(greedy.logprobs, ref.logprobs)
    assert s1.text == s2.text and s1.token_ids == s2.token_ids  # seeded sampling is reproducible
    assert s1.token_ids != ref.token_ids  # and is not greedy decoding in disguise


def test_openai_backend_matches_local_backend(tiny):
    model, tok = tiny
    stop_text = reference(tiny, "r42weM8k", 8).text  # "kkkk____": stop at "k_"
    cut = next(k for k in range(1, len(stop_text)) if stop_text[k] != stop_text[k - 1])
    stop = stop_text[cut - 1 : cut + 1]

    async def exercise(b):
        return {
            "complete": await b.complete("see him", max_tokens=10, logprobs=True),
            "chat": await b.chat(CHAT, max_tokens=10, logprobs=True),
            "stop": await b.complete("r42weM8k", max_tokens=8, stop=[stop]),
            "sampled": await b.complete("them", max_tokens=8, temperature=1.0, top_p=0.9, seed=11),
            "concurrent": await asyncio.gather(*(b.complete(p, max_tokens=8) for p in PROMPTS)),
        }

    async def run(base_url):
        local, remote = LocalBackend("tiny", loaded=tiny), make_backend(base_url)
        assert isinstance(remote, OpenAIBackend) and isinstance(remote, Backend)
        try:
            return await exercise(local), await exercise(remote), remote.model
        finally:
            await local.aclose()
            await remote.aclose()

    with ServerThread(create_app(model, tok, "tiny")) as srv:
        local, remote, served = asyncio.run(run(srv.base_url))
    assert served == "tiny"  # learnt from /v1/models

    def key(c):
        return c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens

    for name in ("complete", "chat", "stop", "sampled"):
        assert key(remote[name]) == key(local[name]), name
    assert [key(c) for c in remote["concurrent"]] == [key(c) for c in local["concurrent"]]
    assert local["stop"].text == stop_text[: stop_text.find(stop)] and local["stop"].finish_reason == "stop"
    for name in ("complete", "chat"):
        assert remote[name].token_ids is None  # the OpenAI API does not return generated ids
        assert len(remote[name].logprobs) == remote[name].completion_tokens
        assert near(remote[name].logprobs, local[name].logprobs), name
    assert remote["stop"].logprobs is None  # not asked for


def test_streamed_chat_equals_chat_piece_by_piece(tiny):
    """`chat_stream` hands over the text as it is decoded (several pieces, in order) and returns what
    `chat` returns, in process and through a server; `stream_chat` on a backend that cannot stream
    hands over the whole text once."""
    model, tok = tiny
    ref = reference(tiny, tok.apply_chat_template(CHAT), 12)
    assert len(ref.text) >= 3  # precondition: several pieces to hand over

    class Plain:  # a backend without chat_stream
        async def chat(self, messages, **kw):
            return Completion("whole text", "stop", 3, 2)

    async def run(base_url):
        local, remote = LocalBackend("tiny", loaded=tiny), OpenAIBackend(base_url)
        out = {}
        try:
            for name, b in (("local", local), ("remote", remote)):
                pieces: list[str] = []
                c = await stream_chat(b, CHAT, pieces.append, max_tokens=12)
                out[name] = (c, pieces, await b.chat(CHAT, max_tokens=12))
            pieces = []
            out["plain"] = (await stream_chat(Plain(), CHAT, pieces.append), pieces, None)
            return out
        finally:
            await local.aclose()
            await remote.aclose()

    with ServerThread(create_app(model, tok, "tiny")) as srv:
        out = asyncio.run(run(srv.base_url))
    for name in ("local", "remote"):
        streamed, pieces, whole = out[name]
        assert len(pieces) > 1 and "".join(pieces) == streamed.text == whole.text == ref.text, name
        assert (streamed.finish_reason, streamed.completion_tokens) == (
            whole.finish_reason,
            whole.completion_tokens,
        )
    c, pieces, _ = out["plain"]
    assert pieces == ["whole text"] and c.text == "whole text"


def test_stream_interval_hands_text_over_less_often(tiny):
    """With a stream interval longer than the whole decode, the first text comes at once (time to first
    token is kept) and the rest in one piece at the end; the text itself is unchanged. A negative
    interval is refused."""
    from tenfold.core.engine import Engine

    async def run():
        b = LocalBackend("tiny", loaded=tiny)
        b.engine = Engine(*tiny, stream_interval=60.0)
        pieces: list[str] = []
        try:
            c = await b.chat_stream(CHAT, pieces.append, max_tokens=12)
        finally:
            await b.aclose()
        return c, pieces

    c, pieces = asyncio.run(run())
    assert c.text == reference(tiny, tiny[1].apply_chat_template(CHAT), 12).text
    assert len(pieces) == 2 and "".join(pieces) == c.text
    with pytest.raises(TenfoldError, match="stream_interval"):
        Engine(*tiny, stream_interval=-1)


def test_make_backend_dispatch():
    remote = make_backend("http://127.0.0.1:9/v1")  # no connection is made until the first call
    named = make_backend("https://example.invalid/v1", model="m")
    local = make_backend("tiny")
    assert isinstance(remote, OpenAIBackend) and remote.model == ""
    assert isinstance(named, OpenAIBackend) and named.model == "m"
    assert isinstance(local, LocalBackend) and local.model == "tiny"
    for b in (remote, named, local):
        assert isinstance(b, Backend)
        asyncio.run(b.aclose())
    with pytest.raises(TenfoldError, match="neither a trained model or preset"):
        make_backend("no-such-model-or-dir")


def test_local_backend_after_aclose_never_hangs(tiny):
    async def run():
        b = LocalBackend("tiny", loaded=tiny)
        first = await b.complete("them", max_tokens=4)
        await b.aclose()
        b.engine.start()  # what `complete` does first; give the new decode thread time to run
        await asyncio.sleep(0.2)
        try:  # working again, or failing at once, are both fine; waiting forever is not
            again = await asyncio.wait_for(b.complete("them", max_tokens=4), 5)
            assert again.text == first.text
        except TimeoutError:
            pytest.fail("a request after aclose() + restart never completed")
        except (RuntimeError, TenfoldError):
            pass
        finally:
            await b.aclose()

    asyncio.run(run())


def test_cancelled_local_call_frees_its_slot(tiny):
    """A caller that gives up (timeout/cancel) must not leave its sequence decoding for nobody."""

    async def run():
        b = LocalBackend("tiny", loaded=tiny)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.complete("long one", max_tokens=1500), timeout=0.3)
        for _ in range(600):  # the engine notices at its next step
            if b.engine.stats["aborted"] == 1:
                break
            await asyncio.sleep(0.05)
        aborted = b.engine.stats["aborted"]
        await b.aclose()
        return aborted

    assert asyncio.run(run()) == 1


def test_openai_backend_sends_the_messages_unchanged():
    """The messages bypass the SDK's request transform (see OpenAIBackend.chat): the server must
    still get exactly the list the caller passed, in a normal `messages` field."""
    from fastapi import FastAPI, Request

    from tenfold.core.server import ServerThread

    seen = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        seen.append(await request.json())
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }

    msgs = [{"role": "system", "content": "s"}] + [
        {"role": "user" if i % 2 else "assistant", "content": f"turn {i} é"} for i in range(200)
    ]

    async def main(url):
        b = OpenAIBackend(url, model="m")
        try:
            return await b.chat(msgs, max_tokens=5)
        finally:
            await b.aclose()

    with ServerThread(app) as srv:
        out = asyncio.run(main(srv.base_url))
    assert out.text == "ok" and out.prompt_tokens == 3
    assert seen[0]["messages"] == msgs and seen[0]["max_tokens"] == 5 and seen[0]["model"] == "m"

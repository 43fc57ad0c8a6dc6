"""`tenfold serve` as a real subprocess on a loopback port, driven with the official `openai` client
(and raw httpx for requests the client would refuse to send).

Expected outputs come from an independent in-process computation: `load_model("tiny")` + `generate`.
The tiny preset is randomly initialised, so greedy text is a character repeated and then switching to
another; the prompts below give pairwise different token sequences (asserted), and every comparison
that matters also compares per-token logprobs, which differ from prompt to prompt.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tenfold.core.models import load_model
from tenfold.core.sampler import SamplingParams, generate
from tenfold.core.tokenizer import SPECIAL_TOKENS

PROMPTS = [
    "a find",
    "see him",
    "a come my",
    "so many",
    "them",
    "héllo wörld",
    "r42weM8k",
    "Njb6",
    "sqCOFExLV1fqcYj",
    "PNQayMxvu8EkH",
    "Yzduh12Q2WfI8bl",
    "HnTK",
    "IkJCasAa1qs f,OCw6O4DJymS I",
    "ovJzS5l1,0pk",
    "日本語のテキスト",
    "x",
]
CHAT = [{"role": "user", "content": "were"}]
GREEDY = {"temperature": 0, "extra_body": {"ignore_eos": True}}
TOL = 1e-4  # logprobs: batched vs single decoding differ only by float round-off


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a `python -m tenfold serve --model tiny` subprocess.

    Its log goes to a file, so a chatty server never blocks on a full pipe. It runs with one OpenMP
    thread: on a 2-core runner it shares the cores with this process, and oversubscribed OpenMP threads
    spin-wait, which made decoding the tiny model 10x slower under load."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "tenfold",
        "serve",
        "--model",
        "tiny",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with status {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"server not healthy after 60 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server + "/v1", api_key="x", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def model_tok():
    return load_model("tiny")  # same preset and default device as the server


@pytest.fixture(scope="module")
def reference(model_tok):
    """Independent in-process greedy generation (one prompt at a time), memoised."""
    model, tok = model_tok
    memo = {}

    def run(prompt, n):
        key = (json.dumps(prompt), n)
        if key not in memo:
            params = SamplingParams(max_new_tokens=n, ignore_eos=True)
            memo[key] = generate(model, tok, [prompt], params)[0]  # one thread, as conftest sets
        return memo[key]

    return run


def assert_healthy(server):
    r = httpx.get(server + "/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def near(a, b):
    return len(a) == len(b) and all(abs(x - y) < TOL for x, y in zip(a, b, strict=True))


def chat_prompt_len(messages) -> int:
    """<|bos|> + per message (<|role|> + UTF-8 bytes + <|end|>) + <|assistant|>."""
    return 2 + sum(2 + len(m["content"].encode("utf-8")) for m in messages)


# ---------------------------------------------------------------------------------------------------
def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    h = httpx.get(server + "/health", timeout=10).json()
    assert h["status"] == "ok" and h["model"] == "tiny"


def test_completion_matches_in_process_generation(client, reference):
    prompt = "héllo wörld"
    ref = reference(prompt, 12)
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, logprobs=1, **GREEDY)
    c = r.choices[0]
    assert r.object == "text_completion" and r.model == "tiny"
    assert r.usage.prompt_tokens == 1 + len(prompt.encode("utf-8"))  # BOS + one token per byte
    assert r.usage.completion_tokens == 12 and r.usage.total_tokens == r.usage.prompt_tokens + 12
    assert c.finish_reason == "length"
    assert c.text == ref.text
    lps = c.logprobs.token_logprobs
    assert len(lps) == r.usage.completion_tokens and all(lp <= 0 for lp in lps)
    assert near(lps, ref.logprobs)
    again = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, **GREEDY)
    assert again.choices[0].text == c.text


def test_prompt_forms_agree(client, reference):
    """A token-id prompt (BOS=1, byte b = id 8+b), a list of prompts, and echo all match the reference."""
    ids = [1] + [8 + b for b in "héllo wörld".encode()]
    r = client.completions.create(model="tiny", prompt=ids, max_tokens=8, **GREEDY)
    assert r.choices[0].text == reference("héllo wörld", 8).text and r.usage.prompt_tokens == len(ids)
    r = client.completions.create(model="tiny", prompt=PROMPTS[:3], max_tokens=8, **GREEDY)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.text for c in r.choices] == [reference(p, 8).text for p in PROMPTS[:3]]
    r = client.completions.create(model="tiny", prompt="see him", max_tokens=8, echo=True, **GREEDY)
    assert r.choices[0].text == "see him" + reference("see him", 8).text


def test_completion_streaming_equals_non_streaming(client, reference):
    kw = dict(model="tiny", prompt="r42weM8k", max_tokens=16, **GREEDY)
    full = client.completions.create(**kw)
    assert full.choices[0].text == reference("r42weM8k", 16).text
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    body = [ch for ch in chunks if ch.choices]
    assert len(body) > 1  # really streamed, not one blob
    assert "".join(ch.choices[0].text for ch in body) == full.choices[0].text
    assert [ch.choices[0].finish_reason for ch in body][-1] == "length"
    assert all(ch.choices[0].finish_reason is None for ch in body[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (full.usage.prompt_tokens, 16)
    # without include_usage no chunk carries usage
    plain = list(client.completions.create(stream=True, **kw))
    assert all(ch.usage is None for ch in plain)


def test_chat_matches_reference_and_streams(client, model_tok, reference):
    _, tok = model_tok
    ref = reference(tok.apply_chat_template(CHAT), 16)
    kw = dict(model="tiny", messages=CHAT, max_tokens=16, **GREEDY)
    r = client.chat.completions.create(logprobs=True, **kw)
    msg = r.choices[0].message
    assert r.object == "chat.completion" and msg.role == "assistant"
    assert msg.content == ref.text and ref.text  # non-empty visible text
    assert r.usage.prompt_tokens == chat_prompt_len(CHAT) and r.usage.completion_tokens == 16
    assert r.choices[0].finish_reason == "length"
    assert near([t.logprob for t in r.choices[0].logprobs.content], ref.logprobs)

    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    body = [ch for ch in chunks if ch.choices]
    assert "".join(ch.choices[0].delta.content or "" for ch in body) == msg.content
    assert body[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == r.usage.total_tokens


def test_stop_string(client, reference):
    prompt = "myv4i2YIG3TPlNd.bGzYX3Xe7TqJPd"
    text = reference(prompt, 24).text
    # a stop string from the middle: the 3 characters around the first change of character
    i = next(k for k in range(1, len(text)) if text[k] != text[k - 1])
    stop = text[i - 1 : i + 2]
    expected = text[: text.find(stop)]
    assert 0 < len(expected) < len(text) - len(stop)  # precondition: the stop really cuts mid-text

    kw = dict(model="tiny", prompt=prompt, max_tokens=24, stop=[stop, "never-seen"], **GREEDY)
    r = client.completions.create(**kw)
    assert r.choices[0].text == expected and r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 24
    # streaming must not leak any part of the stop string before it is recognised
    chunks = [ch for ch in client.completions.create(stream=True, **kw) if ch.choices]
    assert "".join(ch.choices[0].text for ch in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"
    # a plain string works as well as a list
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=24, stop=stop, **GREEDY)
    assert r.choices[0].text == expected


def test_concurrent_requests_are_batch_invariant(server, reference):
    refs = [reference(p, 10) for p in PROMPTS]
    assert len({tuple(g.token_ids) for g in refs}) == len(PROMPTS)  # precondition: distinguishable

    async def run():
        async with openai.AsyncOpenAI(base_url=server + "/v1", api_key="x", max_retries=0, timeout=60) as c:
            return await asyncio.gather(
                *(
                    c.completions.create(model="tiny", prompt=p, max_tokens=10, logprobs=1, **GREEDY)
                    for p in PROMPTS
                )
            )

    rs = asyncio.run(run())
    for p, r, ref in zip(PROMPTS, rs, refs, strict=True):
        c = r.choices[0]
        assert c.text == ref.text, p
        assert near(c.logprobs.token_logprobs, ref.logprobs), p
        assert r.usage.prompt_tokens == 1 + len(p.encode("utf-8"))


def test_concurrent_streaming_and_plain_requests_mix(server, reference):
    prompts = PROMPTS[:8]

    async def one(c, i, p):
        kw = dict(model="tiny", prompt=p, max_tokens=12, **GREEDY)
        if i % 2:
            return "".join([ch.choices[0].text async for ch in await c.completions.create(stream=True, **kw)])
        return (await c.completions.create(**kw)).choices[0].text

    async def run():
        async with openai.AsyncOpenAI(base_url=server + "/v1", api_key="x", max_retries=0, timeout=60) as c:
            return await asyncio.gather(*(one(c, i, p) for i, p in enumerate(prompts)))

    assert asyncio.run(run()) == [reference(p, 12).text for p in prompts]


def test_n_and_seed(client):
    kw = dict(model="tiny", prompt="sample", max_tokens=12, temperature=1.0, n=2)
    a = client.completions.create(seed=7, **kw)
    b = client.completions.create(seed=7, **kw)
    assert [c.index for c in a.choices] == [0, 1]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert a.usage.completion_tokens == 24
    # the two choices are different samples (12 draws from a near-uniform 264-token distribution)
    assert a.choices[0].text != a.choices[1].text
    # streaming n=2 interleaves both choices; per index they reassemble the same texts
    parts = {0: "", 1: ""}
    for ch in client.completions.create(seed=7, stream=True, **kw):
        for c in ch.choices:
            parts[c.index] += c.text
    assert [parts[0], parts[1]] == [c.text for c in a.choices]
    # unseeded requests are not all the same sample
    u1 = client.completions.create(model="tiny", prompt="sample", max_tokens=12, temperature=1.0)
    u2 = client.completions.create(model="tiny", prompt="sample", max_tokens=12, temperature=1.0)
    assert u1.choices[0].text != u2.choices[0].text


# bad input ----------------------------------------------------------------------------------------
CMPL, CHATP = "/v1/completions", "/v1/chat/completions"
BAD_REQUESTS = [
    # (path, json body or raw bytes, status, code or None when unspecified)
    (CMPL, {"model": "nope", "prompt": "x"}, 404, "model_not_found"),
    (CHATP, {"model": "nope", "messages": CHAT}, 404, "model_not_found"),
    (CMPL, b"{not json", 400, None),
    (CMPL, b"", 400, None),
    (CMPL, b"\xff\xfe", 400, None),
    (CMPL, b"[1, 2]", 400, None),
    (CHATP, b'"hello"', 400, None),
    (CMPL, {"model": "tiny"}, 400, None),
    (CMPL, {"prompt": "x"}, 400, None),
    (CMPL, {"model": "tiny", "prompt": "x", "max_tokens": -1}, 400, None),
    (CMPL, {"model": "tiny", "prompt": "x", "max_tokens": 0}, 400, None),
    (CMPL, {"model": "tiny", "prompt": "x", "max_tokens": 10**9}, 400, "context_length_exceeded"),
    (CMPL, {"model": "tiny", "prompt": "a" * 40000, "max_tokens": 4}, 400, "context_length_exceeded"),
    (CMPL, {"model": "tiny", "prompt": "x", "temperature": -1}, 400, None),
    (CMPL, {"model": "tiny", "prompt": "x", "top_p": 0}, 400, None),
    (CMPL, {"model": "tiny", "prompt": "x", "n": 0}, 400, None),
    (CMPL, {"model": "tiny", "prompt": "x", "stop": [""]}, 400, None),
    (CMPL, {"model": "tiny", "prompt": [999999]}, 400, None),
    (CMPL, {"model": "tiny", "prompt": [-1]}, 400, None),
    (CMPL, {"model": "tiny", "prompt": []}, 400, None),
    (CMPL, {"model": "tiny", "prompt": [[]]}, 400, None),
    (CHATP, {"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}, 400, None),
    (CHATP, {"model": "tiny", "messages": []}, 400, None),
    (CHATP, {"model": "tiny", "messages": "hello"}, 400, None),
    (CHATP, {"model": "tiny"}, 400, None),
    (CHATP, {"model": "tiny", "messages": CHAT, "max_tokens": 10**9}, 400, "context_length_exceeded"),
    (CHATP, {"model": "tiny", "messages": CHAT, "temperature": -1}, 400, None),
]


@pytest.mark.parametrize("path,body,status,code", BAD_REQUESTS)
def test_bad_requests_get_openai_error_bodies(server, path, body, status, code):
    kw = (
        {"content": body, "headers": {"content-type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body}
    )
    r = httpx.post(server + path, timeout=30, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    if code is not None:
        assert err["code"] == code
    assert_healthy(server)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "tiny", "prompt": "", "max_tokens": 2},  # BOS alone is a valid prompt
        {"model": "tiny", "prompt": "x", "max_tokens": 2, "stop": None, "logprobs": None, "seed": None},
        {"model": "tiny", "prompt": "x", "max_tokens": 2, "unknown_option": 1},  # extra fields ignored
    ],
)
def test_edge_requests_that_are_valid(server, body):
    r = httpx.post(server + CMPL, json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] <= 2


def test_openai_client_raises_typed_errors(server, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-17", prompt="x")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=10**6)
    assert e.value.code == "context_length_exceeded" and "maximum context length" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="a" * 40000, max_tokens=4)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[{"role": "wizard", "content": "x"}])
    assert_healthy(server)


def test_client_disconnect_mid_stream(server, client, reference):
    before = httpx.get(server + "/health", timeout=10).json()["aborted"]
    body = {"model": "tiny", "prompt": "stream me", "max_tokens": 1500, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", server + CMPL, json=body, timeout=30) as r:
        assert r.status_code == 200
        first = next(line for line in r.iter_lines() if line)
        assert first.startswith("data: ") and json.loads(first[len("data: ") :])["choices"][0]["text"]
    # the engine drops the abandoned sequence instead of decoding all 1500 tokens for nobody
    deadline = time.monotonic() + 30
    while (h := httpx.get(server + "/health", timeout=10).json())["aborted"] <= before:
        assert time.monotonic() < deadline, f"abandoned stream was never aborted: {h}"
        time.sleep(0.05)
    r = client.completions.create(model="tiny", prompt="after", max_tokens=6, **GREEDY)
    assert r.choices[0].text == reference("after", 6).text and r.choices[0].finish_reason == "length"
    assert_healthy(server)


# regressions: bugs found by these tests and fixed in src --------------------------------------------
def test_chat_prompt_longer_than_context_without_max_tokens(server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "a" * 40000}]}
    r = httpx.post(server + CHATP, json=body, timeout=30)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "context_length_exceeded"
    assert_healthy(server)


def test_out_of_range_seed_is_a_bad_request(server):
    body = {"model": "tiny", "prompt": "x", "max_tokens": 2, "temperature": 1.0, "seed": 2**64}
    r = httpx.post(server + CMPL, json=body, timeout=30)
    assert_healthy(server)
    assert r.status_code == 400, r.text


def test_n_counts_prompt_tokens_once(client):
    r = client.completions.create(model="tiny", prompt="sample", max_tokens=3, n=2, temperature=1.0, seed=1)
    assert r.usage.prompt_tokens == 1 + len(b"sample")


def test_chat_logprob_bytes_reassemble_the_text(client):
    """Each token's `bytes` is its raw byte (not the U+FFFD of a lone byte), so they rebuild the content."""
    for prompt in ("bytes", "héllo", "世界", "ok"):
        msgs = [{"role": "user", "content": prompt}]
        r = client.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=12, logprobs=True, **GREEDY
        )
        content = r.choices[0].logprobs.content
        raw = b"".join(bytes(t.bytes) for t in content if t.token not in SPECIAL_TOKENS)
        assert raw.decode("utf-8", errors="replace") == r.choices[0].message.content

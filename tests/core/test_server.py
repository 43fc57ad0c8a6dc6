"""The OpenAI-compatible server, started as a real `tenfold serve` process on a loopback port and
driven with the official `openai` client (and raw httpx for malformed requests)."""

import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tenfold.core.models import load_model
from tenfold.core.sampler import SamplingParams, generate

PROMPTS = [f"request {i}: " + "abc " * (i % 5) for i in range(16)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tenfold",
        "serve",
        "--model",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            proc.kill()
            pytest.fail("server did not become healthy in 90 s")
        time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def reference():
    """Independent in-process greedy generation with the same preset."""
    model, tok = load_model("tiny")

    def run(prompt, n):
        return generate(model, tok, [prompt], SamplingParams(max_new_tokens=n, ignore_eos=True))[0].text

    return run


def assert_healthy(server):
    assert httpx.get(server + "/health", timeout=5).json()["status"] == "ok"


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert_healthy(server)


def test_completion_matches_in_process_generation(client, reference):
    prompt = "héllo wörld"
    r = client.completions.create(
        model="tiny", prompt=prompt, max_tokens=12, temperature=0, logprobs=1, extra_body={"ignore_eos": True}
    )
    c = r.choices[0]
    assert r.usage.prompt_tokens == 1 + len(prompt.encode("utf-8"))  # BOS + one token per byte
    assert r.usage.completion_tokens == 12 and c.finish_reason == "length"
    assert c.text == reference(prompt, 12)
    assert len(c.logprobs.token_logprobs) == 12 and all(lp <= 0 for lp in c.logprobs.token_logprobs)
    again = client.completions.create(
        model="tiny", prompt=prompt, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    assert again.choices[0].text == c.text


def test_streaming_equals_non_streaming(client):
    kw = dict(model="tiny", prompt="stream me", max_tokens=16, temperature=0, extra_body={"ignore_eos": True})
    full = client.completions.create(**kw).choices[0].text
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == full
    assert chunks[-1].usage.completion_tokens == 16 and chunks[-1].choices == []
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"


def test_chat_streaming_equals_non_streaming(client):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    kw = dict(model="tiny", messages=msgs, max_tokens=16, temperature=0, extra_body={"ignore_eos": True})
    r = client.chat.completions.create(logprobs=True, **kw)
    full = r.choices[0].message.content
    assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens == 16
    assert len(r.choices[0].logprobs.content) == 16
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == full
    assert chunks[-1].usage.total_tokens == r.usage.total_tokens


def test_stop_string(client, reference):
    text = reference("stop test", 30)
    stop = text[12:14]
    r = client.completions.create(
        model="tiny",
        prompt="stop test",
        max_tokens=30,
        temperature=0,
        stop=[stop],
        extra_body={"ignore_eos": True},
    )
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == text[: text.find(stop)]


def test_concurrent_requests_are_batch_invariant(server, reference):
    async def run():
        async with openai.AsyncOpenAI(base_url=server + "/v1", api_key="x", max_retries=0) as c:
            rs = await asyncio.gather(
                *(
                    c.completions.create(
                        model="tiny", prompt=p, max_tokens=10, temperature=0, extra_body={"ignore_eos": True}
                    )
                    for p in PROMPTS
                )
            )
        return [r.choices[0].text for r in rs]

    assert asyncio.run(run()) == [reference(p, 10) for p in PROMPTS]


def test_n_and_seed(client):
    kw = dict(model="tiny", prompt="sample", max_tokens=12, temperature=1.0, n=2, seed=7)
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert len(a.choices) == 2 and [c.index for c in a.choices] == [0, 1]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert a.choices[0].text != a.choices[1].text  # seeds 7 and 8 (12 near-uniform draws over 264 tokens)


BAD_COMPLETIONS = [
    ({"model": "nope", "prompt": "x"}, 404, "model_not_found"),
    ({"model": "tiny"}, 400, None),  # no prompt
    ({"model": "tiny", "prompt": "x", "max_tokens": -1}, 400, None),
    ({"model": "tiny", "prompt": "x", "max_tokens": 10**9}, 400, "context_length_exceeded"),
    ({"model": "tiny", "prompt": "a" * 3000, "max_tokens": 4}, 400, "context_length_exceeded"),
    ({"model": "tiny", "prompt": "x", "temperature": -1}, 400, None),
    ({"model": "tiny", "prompt": "x", "top_p": 0}, 400, None),
    ({"model": "tiny", "prompt": [999999]}, 400, None),
    ({"model": "tiny", "prompt": "", "max_tokens": 2}, 200, None),  # BOS alone is a valid prompt
    (
        {"model": "tiny", "prompt": "x", "max_tokens": 2, "stop": None, "logprobs": None},
        200,
        None,
    ),  # null = default
]


@pytest.mark.parametrize("body,status,code", BAD_COMPLETIONS)
def test_bad_completion_requests(server, body, status, code):
    r = httpx.post(server + "/v1/completions", json=body, timeout=30)
    assert r.status_code == status, r.text
    if status != 200:
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str)
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == code
    assert_healthy(server)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "tiny", "messages": []},
        {"model": "tiny", "messages": "hello"},
    ],
)
def test_bad_chat_requests(server, body):
    r = httpx.post(server + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400 and "error" in r.json()
    assert_healthy(server)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_bodies(server, raw):
    r = httpx.post(
        server + "/v1/completions", content=raw, headers={"content-type": "application/json"}, timeout=30
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert_healthy(server)


def test_openai_client_raises_typed_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-17", prompt="x")
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=10**6
        )


def test_client_disconnect_mid_stream(server, client):
    body = {"model": "tiny", "prompt": "long", "max_tokens": 1500, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", server + "/v1/completions", json=body, timeout=30) as r:
        first = next(r.iter_lines())
        assert first.startswith("data: ") and "choices" in json.loads(first[6:])
    deadline = time.time() + 60  # the engine drops the abandoned sequence instead of decoding it to the end
    while httpx.get(server + "/health", timeout=5).json()["aborted"] < 1:
        assert time.time() < deadline, "abandoned stream was never aborted"
        time.sleep(0.05)
    # the abandoned request must not block or break the next one
    r = client.completions.create(model="tiny", prompt="after", max_tokens=4, temperature=0)
    assert r.choices[0].finish_reason in ("length", "stop")
    assert_healthy(server)

"""The proxy when its upstreams or its clients misbehave: hung memory and agent servers, malformed
bodies, an agent that dies mid-stream, and what /health says about it all."""

import json
import time

import httpx
import pytest
from openai import APIError, OpenAI

from tenfold.comem.proxy import ProxyConfig, create_proxy_app
from tenfold.core.server import ServerThread
from tenfold.envs.vault import VaultConfig, VaultGame

from .fakes import ListingMemory, RawServer, ReadingAgent, agent_app
from .test_proxy import agent_loop, free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def upstream():
    received = []
    with ServerThread(agent_app(ReadingAgent(), received)) as srv:
        yield srv, received


def is_openai_error(r: httpx.Response, status: int, type_: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert set(err) == {"message", "type", "param", "code"}
    if type_ is not None:
        assert err["type"] == type_, err
    return err


def local_port(r: httpx.Response) -> int:
    """The client-side port of the connection that carried `r` (same port: same connection)."""
    return r.extensions["network_stream"].get_extra_info("client_addr")[1]


def test_hung_memory_server_costs_one_turn_at_most_the_memory_timeout(upstream):
    """A memory server that accepts and never answers: with --memory-timeout 1 no turn waits more than
    about a second, the agent gets the full history, and the timeouts are counted."""
    from tenfold.core.server import ServerProcess

    srv, received = upstream
    with RawServer.hung() as memory:
        args = ("--agent-url", srv.base_url, "--memory-url", memory.base_url, "--interval", "4", "--k", "1")
        args += ("--memory-timeout", "1", "--agent-timeout", "30")
        with ServerProcess(None, command=("comem", "proxy", *args), startup_timeout=60) as proxy:
            client = OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0, timeout=30)
            game, durations = VaultGame(VaultConfig(14, 1, 1, seed=5)), []
            msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "task"}]
            obs = game.observation()
            while obs is not None:
                msgs.append({"role": "user", "content": obs})
                t0 = time.monotonic()
                text = client.chat.completions.create(model="m", messages=msgs).choices[0].message.content
                durations.append(time.monotonic() - t0)
                msgs.append({"role": "assistant", "content": text})
                obs = game.step(text)
            health = httpx.get(proxy.base_url.removesuffix("/v1") + "/health", timeout=10)
    assert len(durations) == 14 and max(durations) < 3.0, durations
    # summaries start at turns 4, 8 and 12; only the first failure is waited for (once the memory
    # server has failed, pending summaries are adopted when done, never waited for until one succeeds)
    assert sum(d > 0.8 for d in durations) <= 1, durations
    assert received[-1] == msgs[:-1]  # the full history, as sent
    assert health.status_code == 200
    h = health.json()
    assert h["status"] == "degraded" and not h["upstreams"]["memory"]["ok"] and h["upstreams"]["agent"]["ok"]
    assert h["memory_errors"] >= 1 and h["memory_timeouts"] >= 1 and h["compressed"] == 0


def test_hung_agent_server_answers_504_in_the_openai_shape():
    with RawServer.hung() as agent:
        app = create_proxy_app(ProxyConfig(agent.base_url, agent_timeout=1), ListingMemory())
        with ServerThread(app) as proxy, httpx.Client(timeout=20) as client:
            for stream in (False, True):
                t0 = time.monotonic()
                r = client.post(proxy.base_url + "/chat/completions", json={**CHAT, "stream": stream})
                assert time.monotonic() - t0 < 5
                assert "timed out" in is_openai_error(r, 504, "upstream_error")["message"]
            r = client.get(proxy.base_url + "/models")
            is_openai_error(r, 504, "upstream_error")
        assert app.state.proxy.stats["agent_errors"] == 3


def test_agent_server_down_is_a_502_in_the_openai_shape():
    app = create_proxy_app(ProxyConfig(f"http://127.0.0.1:{free_port()}/v1"), ListingMemory())
    with ServerThread(app) as proxy, httpx.Client(timeout=20) as client:
        for stream in (False, True):
            r = client.post(proxy.base_url + "/chat/completions", json={**CHAT, "stream": stream})
            assert "unreachable" in is_openai_error(r, 502, "upstream_error")["message"]


BAD_BODIES = {
    "invalid utf-8": b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "lone surrogate": b'{"model": "m", "messages": [{"role": "user", "content": "a\\ud800b"}]}',
    "10,000 deep": b'{"model": "m", "messages": [{"role": "user", "content": '
    + b"[" * 10_000
    + b"]" * 10_000
    + b"}]}",
    "NaN temperature": b'{"model": "m", "temperature": NaN, "messages": [{"role": "user", "content": "x"}]}',
    "Infinity": b'{"model": "m", "max_tokens": Infinity, "messages": [{"role": "user", "content": "x"}]}',
    "not json": b"{not json",
    "not an object": b"[1, 2]",
    "no messages": b'{"model": "m"}',
    "message not an object": b'{"model": "m", "messages": ["hello"]}',
}


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
def test_malformed_bodies_are_400s_and_the_connection_lives_on(upstream, path):
    srv, received = upstream
    app = create_proxy_app(ProxyConfig(srv.base_url), ListingMemory())
    with ServerThread(app) as proxy, httpx.Client(timeout=20) as client:
        ports = set()
        for name, raw in BAD_BODIES.items():
            if path == "/completions" and name in ("no messages", "message not an object"):
                continue  # a completion has no messages
            r = client.post(proxy.base_url + path, content=raw, headers={"content-type": "application/json"})
            is_openai_error(r, 400, "invalid_request_error")
            ports.add(local_port(r))
        ok = client.post(proxy.base_url + "/chat/completions", json=CHAT)
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
        ports.add(local_port(ok))
    assert len(ports) == 1  # every answer came back on the one kept-alive connection
    assert received == [CHAT["messages"]]  # nothing malformed reached the agent


def test_unexpected_errors_and_unknown_paths_are_openai_shaped(upstream):
    srv, _ = upstream
    app = create_proxy_app(ProxyConfig(srv.base_url), ListingMemory())

    async def boom(request):
        raise RuntimeError("a bug in the proxy")

    app.state.proxy.chat = boom
    with ServerThread(app) as proxy, httpx.Client(timeout=20) as client:
        r = client.post(proxy.base_url + "/chat/completions", json=CHAT)
        assert "RuntimeError" in is_openai_error(r, 500, "server_error")["message"]
        port = local_port(r)
        r = client.get(proxy.base_url + "/nowhere")
        is_openai_error(r, 404)
        r = client.get(proxy.base_url + "/chat/completions")
        is_openai_error(r, 405)
        models = client.get(proxy.base_url + "/models")
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "reading-agent"
        assert local_port(models) == port  # the 500 did not cost the client its connection


def test_health_reports_its_upstreams(upstream):
    srv, _ = upstream
    down = f"http://127.0.0.1:{free_port()}/v1"
    cases = [
        (srv.base_url, srv.base_url, 200, "ok"),
        (srv.base_url, down, 200, "degraded"),  # no memory: full histories, still serving
        (down, srv.base_url, 503, "unavailable"),
        (down, down, 503, "unavailable"),
    ]
    for agent_url, memory_url, status, word in cases:
        app = create_proxy_app(ProxyConfig(agent_url, memory_url=memory_url), ListingMemory())
        with ServerThread(app) as proxy:
            r = httpx.get(proxy.base_url.removesuffix("/v1") + "/health", timeout=10)
        h = r.json()
        assert r.status_code == status and h["status"] == word, (agent_url, memory_url, h)
        assert h["upstreams"]["agent"]["ok"] == (agent_url != down)
        assert h["upstreams"]["memory"]["ok"] == (memory_url != down)
        if status == 503:
            assert "agent" in h["error"]["message"] and h["error"]["type"] == "upstream_error"
        assert "requests" in h and "sessions" in h


def test_health_of_a_hung_agent_answers_quickly():
    with RawServer.hung() as agent:
        app = create_proxy_app(ProxyConfig(agent.base_url), ListingMemory())
        with ServerThread(app) as proxy:
            t0 = time.monotonic()
            r = httpx.get(proxy.base_url.removesuffix("/v1") + "/health", timeout=10)
            took = time.monotonic() - t0
    assert r.status_code == 503 and "agent" in r.json()["error"]["message"]
    assert took < 2.5  # the probes give up after 1.5 s (ServerProcess polls with 2 s)


def test_agent_dying_mid_stream_ends_the_stream_with_an_error_event():
    with RawServer.dying_stream() as agent:
        app = create_proxy_app(ProxyConfig(agent.base_url), ListingMemory())
        with ServerThread(app) as proxy:
            with httpx.Client(timeout=20) as client:
                body = {**CHAT, "stream": True}
                with client.stream("POST", proxy.base_url + "/chat/completions", json=body) as r:
                    assert r.status_code == 200
                    raw = b"".join(r.iter_bytes()).decode()
            events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
            assert json.loads(events[0])["choices"][0]["delta"]["content"] == "think: "
            err = json.loads(events[-2])["error"]  # the half event is dropped, not relayed
            assert err["type"] == "upstream_error" and "agent" in err["message"]
            assert events[-1] == "[DONE]" and len(events) == 3
            # the official client turns the event into an APIError, not a connection error
            client = OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
            parts = client.chat.completions.create(**body)
            with pytest.raises(APIError, match="agent"):
                for _ in parts:
                    pass
        assert app.state.proxy.stats["agent_errors"] == 2


def test_memory_timeout_in_process_falls_back_to_the_full_history(upstream):
    """ProxyConfig.memory_timeout bounds a slow in-process memory model the same way."""
    srv, received = upstream
    memory = ListingMemory(delay=30)
    app = create_proxy_app(ProxyConfig(srv.base_url, interval=4, k=1, memory_timeout=0.5), memory)
    with ServerThread(app) as proxy:
        t0 = time.monotonic()
        sent = agent_loop(proxy.base_url, VaultGame(VaultConfig(10, 1, 1, seed=6)))
        took = time.monotonic() - t0
        stats = app.state.proxy.stats
    assert took < 10 and received[-1] == sent[:-1]
    assert stats["memory_timeouts"] >= 1 and stats["compressed"] == 0


def test_health_sees_an_agent_that_stopped_accepting_connections():
    """An agent whose listener is gone but whose kept-alive connection still answers is down: health
    probes open a fresh connection each time."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Models(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_GET(self):  # noqa: N802
            body = b'{"object": "list", "data": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    agent = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    Thread(target=agent.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{agent.server_address[1]}/v1"
    app = create_proxy_app(ProxyConfig(url), ListingMemory())
    with ServerThread(app) as proxy:
        health = proxy.base_url.removesuffix("/v1") + "/health"
        assert httpx.get(health, timeout=10).json()["status"] == "ok"
        agent.shutdown()
        agent.server_close()  # no new connections; a kept-alive handler thread would still answer
        r = httpx.get(health, timeout=10)
    assert r.status_code == 503 and r.json()["status"] == "unavailable"

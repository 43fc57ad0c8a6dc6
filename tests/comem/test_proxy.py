"""The proxy, driven by the official `openai` client as an unmodified agent loop would."""

import socket

import pytest
from openai import OpenAI

from tenfold.comem.proxy import ProxyConfig, create_proxy_app
from tenfold.comem.runtime import BackendMemory
from tenfold.core.backends import OpenAIBackend
from tenfold.core.server import ServerThread
from tenfold.envs.vault import AGENT_SYSTEM, TASK, VaultConfig, VaultGame

from .fakes import ListingMemory, ReadingAgent, agent_app


def agent_loop(base_url, game, stream=False, edit_at=None):
    """A plain OpenAI-client agent loop: it always sends its whole conversation."""
    client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
    msgs = [{"role": "system", "content": AGENT_SYSTEM}, {"role": "user", "content": TASK}]
    obs = game.observation()
    while obs is not None:
        msgs.append({"role": "user", "content": obs})
        if stream:
            parts = client.chat.completions.create(model="m", messages=msgs, stream=True)
            text = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
        else:
            text = client.chat.completions.create(model="m", messages=msgs).choices[0].message.content
        msgs.append({"role": "assistant", "content": text})
        if edit_at is not None and game.t == edit_at:
            msgs[2]["content"] += " (edited)"  # the framework rewrote an early turn
        obs = game.step(text)
    return msgs


@pytest.fixture
def upstream():
    received = []
    with ServerThread(agent_app(ReadingAgent(), received)) as srv:
        yield srv, received


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stream", [False, True])
def test_proxy_compresses_and_the_agent_still_succeeds(upstream, stream):
    srv, received = upstream
    memory = ListingMemory()
    app = create_proxy_app(ProxyConfig(srv.base_url, interval=4, k=1), memory)
    with ServerThread(app) as proxy:
        game = VaultGame(VaultConfig(32, 2, 1, seed=2))
        agent_loop(proxy.base_url, game, stream=stream)
        stats = app.state.proxy.stats
    assert game.success
    assert memory.calls == 32 // 4 - 1 and stats["memory_errors"] == 0
    assert stats["compressed"] >= 32 - 4 - 1 - 1
    # what reached the agent server: the late prompts hold a summary and only a few raw turns
    last = received[-1]
    assert "Memory: " in last[1]["content"] and len(last) <= 2 + 2 * (4 + 1) + 1
    assert len(received) == 32


def test_memory_server_down_means_full_history_not_failure(upstream):
    srv, received = upstream
    down = BackendMemory(OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", model="m", timeout=2))
    app = create_proxy_app(ProxyConfig(srv.base_url, interval=4, k=1), down)
    with ServerThread(app) as proxy:
        game = VaultGame(VaultConfig(20, 1, 1, seed=3))
        sent = agent_loop(proxy.base_url, game)
        stats = app.state.proxy.stats
    assert game.success and stats["memory_errors"] > 0 and stats["compressed"] == 0
    assert received[-1] == sent[:-1]  # forwarded exactly as sent


def test_edited_history_is_not_summarised_away(upstream):
    srv, received = upstream
    app = create_proxy_app(ProxyConfig(srv.base_url, interval=4, k=1), ListingMemory())
    with ServerThread(app) as proxy:
        game = VaultGame(VaultConfig(24, 1, 1, seed=4))
        agent_loop(proxy.base_url, game, edit_at=10)
    assert game.success
    after = received[11]  # the first request after the client rewrote turn 0
    assert "Memory: " not in after[1]["content"] and after[2]["content"].endswith("(edited)")
    assert "Memory: " in received[-1][1]["content"]  # and compression resumes from the new history


def test_parallel_sessions_with_the_same_task_keep_their_own_memory(upstream):
    import threading

    srv, received = upstream
    memory = ListingMemory()
    app = create_proxy_app(ProxyConfig(srv.base_url, interval=4, k=1), memory)
    games = [VaultGame(VaultConfig(28, 2, 1, seed=s)) for s in (11, 12, 13)]
    with ServerThread(app) as proxy:
        threads = [threading.Thread(target=agent_loop, args=(proxy.base_url, g)) for g in games]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = app.state.proxy.stats
    assert all(g.success for g in games)
    assert memory.calls == 3 * (28 // 4 - 1) and stats["compressed"] >= 3 * (28 - 6)


def test_bad_requests_get_openai_shaped_errors(upstream):
    import httpx

    srv, _ = upstream
    app = create_proxy_app(ProxyConfig(srv.base_url), ListingMemory())
    with ServerThread(app) as proxy:
        json_type = {"content-type": "application/json"}
        r = httpx.post(proxy.base_url + "/chat/completions", content=b"{not json", headers=json_type)
        assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
        # a web page can post text/plain anywhere without asking; the proxy would re-send it as JSON
        r = httpx.post(proxy.base_url + "/chat/completions", content=b'{"messages": []}')
        assert r.status_code == 415 and r.json()["error"]["message"]
        r = httpx.post(proxy.base_url + "/chat/completions", content=b"x" * 64, headers=json_type)
        assert r.status_code == 400
        r = httpx.post(proxy.base_url + "/chat/completions", json={"model": "m"})
        assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
        models = OpenAI(base_url=proxy.base_url, api_key="x").models.list()
        assert models.data[0].id == "reading-agent"


def test_body_limit_and_host_check(upstream):
    import httpx

    srv, _ = upstream
    cfg = ProxyConfig(srv.base_url, max_body_bytes=1000, allowed_hosts=("127.0.0.1", "localhost"))
    with ServerThread(create_proxy_app(cfg, ListingMemory())) as proxy:
        big = {"model": "m", "messages": [{"role": "user", "content": "x" * 2000}]}
        assert httpx.post(proxy.base_url + "/chat/completions", json=big).status_code == 413
        evil = {"host": "attacker.example"}
        r = httpx.post(proxy.base_url + "/chat/completions", json={"model": "m"}, headers=evil)
        assert r.status_code == 421 and r.json()["error"]["message"]


def test_cli_proxy_process_forwards_and_reports_health(upstream):
    """`tenfold comem proxy` as its own process (how the bench and users run it)."""
    import httpx

    from tenfold.core.server import ServerProcess

    srv, received = upstream
    down = f"http://127.0.0.1:{free_port()}/v1"  # no memory server: the proxy must still answer
    args = ("--agent-url", srv.base_url, "--memory-url", down, "--interval", "4", "--k", "1")
    with ServerProcess(None, command=("comem", "proxy", *args), startup_timeout=60) as proxy:
        game = VaultGame(VaultConfig(14, 1, 1, seed=5))
        sent = agent_loop(proxy.base_url, game)
        health = httpx.get(proxy.base_url.removesuffix("/v1") + "/health").json()
    assert game.success and received[-1] == sent[:-1]
    assert health["requests"] == 14 and health["memory_errors"] >= 1 and health["compressed"] == 0
    assert health["status"] == "degraded" and health["upstreams"]["agent"]["ok"]  # memory down alone


@pytest.mark.parametrize(
    "bad",
    [
        {"memory_input": "everything"},
        {"interval": 0},
        {"k": 0},
        {"memory_timeout": 0},
        {"memory_timeout": float("nan")},
        {"agent_timeout": 0},
    ],
)
def test_bad_proxy_config_is_refused(bad):
    from tenfold.core.errors import TenfoldError

    with pytest.raises(TenfoldError, match="memory_input|interval"):
        ProxyConfig("http://127.0.0.1:1/v1", **bad)

#!/usr/bin/env python
"""Hardening battery: how `tenfold serve`, the Cake KV store, the CoMem proxy and checkpoint loading
behave under hostile or careless use, as figures.

Run it against any tree of tenfold by pointing PYTHONPATH at that tree's `src` (the servers it starts
with `python -m tenfold` inherit it):

    PYTHONPATH=/tmp/before/src .venv/bin/python tools/hardening_battery.py --out before.json --md before.md

Every check gives one row {"point", "check", "value", "target", "ok"}; ok is true/false, or null when
the check could not be measured (a feature the tree lacks is a false row saying "not supported").
The battery never stops on a failing check: each point runs with its own deadline, every process it
starts is killed at the end, and everything it writes goes to a fresh temporary directory.
Loopback only (127.0.0.1); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

PY = sys.executable
HOST = "127.0.0.1"

# -------------------------------------------------------------------------------------------------
# results


class Results:
    def __init__(self):
        self.rows: list[dict] = []
        self.lock = threading.Lock()

    def add(self, point: int, check: str, value, target: str, ok: bool | None) -> None:
        if isinstance(value, float):
            value = round(value, 3)
        row = {"point": point, "check": check, "value": value, "target": target, "ok": ok}
        with self.lock:
            self.rows.append(row)
        mark = {True: "PASS", False: "FAIL", None: "n/a"}[ok]
        print(f"  [{point:2d}] {mark:4s} {check}: {value}  (target {target})", file=sys.stderr, flush=True)


R = Results()


def ms(s: float) -> str:
    return f"{s * 1000:.0f} ms"


def secs(s: float) -> str:
    return f"{s:.2f} s"


def short(x, n: int = 160) -> str:
    s = str(x).replace("\n", " ").replace("|", "/")
    return s if len(s) <= n else s[: n - 3] + "..."


# -------------------------------------------------------------------------------------------------
# processes


_PROCS: list[subprocess.Popen] = []
_PROCS_LOCK = threading.Lock()


def child_env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def popen(cmd: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "w") as log:
        p = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(), stdin=subprocess.DEVNULL
        )
    with _PROCS_LOCK:
        _PROCS.append(p)
    return p


def kill(p: subprocess.Popen | None, grace: float = 5.0) -> None:
    if p is None or p.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        p.terminate()
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


def kill_all() -> None:
    with _PROCS_LOCK:
        procs = list(_PROCS)
    for p in procs:
        kill(p, grace=3)


def run_cli(args: list[str], timeout: float = 90.0) -> tuple[int | None, str, str, float]:
    """`python -m tenfold ARGS`: (exit code or None on timeout, stdout, stderr, seconds)."""
    t = time.perf_counter()
    p = subprocess.Popen(
        [PY, "-m", "tenfold", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=child_env(),
        text=True,
    )
    with _PROCS_LOCK:
        _PROCS.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err, time.perf_counter() - t
    except subprocess.TimeoutExpired:
        kill(p, grace=1)
        out, err = p.communicate()
        return None, out, err, time.perf_counter() - t


def last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Proc:
    """A `python -m tenfold ...` server that takes `--port` and answers GET /health."""

    def __init__(self, name: str, args: list[str], workdir: Path, startup: float = 90.0):
        self.name, self.args, self.workdir, self.startup = name, args, workdir, startup
        self.port = free_port()
        self.log = workdir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> Proc:
        self.proc = popen([PY, "-m", "tenfold", *self.args, "--port", str(self.port)], self.log)
        deadline = time.monotonic() + self.startup
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                kill(self.proc)
                raise RuntimeError(f"{self.name} not healthy after {self.startup:.0f} s: {self.log_tail()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self, timeout: float = 5.0) -> dict | None:
        try:
            r = httpx.get(self.url + "/health", timeout=timeout)
            return r.json() if r.headers.get("content-type", "").startswith("application/json") else None
        except (httpx.HTTPError, ValueError):
            return None

    def wait_idle(self, limit: float = 10.0) -> dict | None:
        """Poll /health until running == waiting == 0 (or `limit` s); the last health seen."""
        deadline, h = time.monotonic() + limit, None
        while time.monotonic() < deadline:
            h = self.health()
            if h is not None and not h.get("running") and not h.get("waiting"):
                return h
            time.sleep(0.1)
        return h

    def log_tail(self, n: int = 600) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        kill(self.proc)


# -------------------------------------------------------------------------------------------------
# what the tree under test supports


class Env:
    def __init__(self, work: Path):
        self.work = work
        self.helps: dict[str, str] = {}
        self._main: Proc | None = None

    def help(self, *cmd: str) -> str:
        key = " ".join(cmd)
        if key not in self.helps:
            text = ""
            try:
                from typer.testing import CliRunner

                from tenfold.cli import app

                r = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
                text = r.output
            except Exception:  # noqa: BLE001 - fall back to a subprocess
                text = ""
            if "--help" not in text:
                rc, out, err, _ = run_cli([*cmd, "--help"], timeout=60)
                text = out + err
            self.helps[key] = text
        return self.helps[key]

    def has_option(self, option: str, *cmd: str) -> bool:
        return option in self.help(*cmd)

    def serve(self, name: str, *extra: str) -> Proc:
        return Proc(name, ["serve", "--model", "tiny", "--threads", "1", *extra], self.work).start()

    def main(self) -> Proc:
        """The shared server (points 2, 3, 4-disconnects, 5, 6, 7): restarted if dead or still busy."""
        m = self._main
        if m is not None and m.alive():
            h = m.wait_idle(10)
            if h is not None and not h.get("running") and not h.get("waiting"):
                return m
            print("  (shared server busy or unhealthy: restarting it)", file=sys.stderr)
            m.stop()
        elif m is not None:
            print(f"  (shared server died: restarting it) {m.log_tail(300)}", file=sys.stderr)
        self._main = self.serve("main")
        return self._main

    def close(self) -> None:
        if self._main is not None:
            self._main.stop()


def body(obj) -> bytes:
    return json.dumps(obj).encode()


def jpost(
    client: httpx.Client, url: str, payload, timeout: float = 30.0, headers=None
) -> tuple[int | None, object, float]:
    """POST raw bytes or a JSON-able object: (status or None, parsed JSON or text or exception, seconds)."""
    t = time.perf_counter()
    data = payload if isinstance(payload, bytes) else body(payload)
    h = {"Content-Type": "application/json", **(headers or {})}
    try:
        r = client.post(url, content=data, headers=h, timeout=timeout)
    except httpx.HTTPError as e:
        return None, e, time.perf_counter() - t
    try:
        out = r.json()
    except ValueError:
        out = r.text
    return r.status_code, out, time.perf_counter() - t


def is_openai_error(obj) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("error"), dict)
        and isinstance(obj["error"].get("message"), str)
    )


def failed(status, out) -> bool:
    if status != 200:
        return True
    if isinstance(out, dict):
        if "error" in out:
            return True
        return any(c.get("finish_reason") == "error" for c in out.get("choices", []) if isinstance(c, dict))
    return isinstance(out, str) and '"error"' in out


# -------------------------------------------------------------------------------------------------
# server points


def point1(env: Env) -> None:
    """One request fails another."""
    srv = env.serve("p1")
    try:
        url = srv.url + "/v1/completions"
        long_req = {"model": "tiny", "prompt": "a", "max_tokens": 200, "temperature": 0, "ignore_eos": True}
        bads = {
            "top_p 1e-300": {
                "model": "tiny",
                "prompt": "b",
                "max_tokens": 20,
                "top_p": 1e-300,
                "temperature": 1.0,
            },
            "temperature 5e-324": {"model": "tiny", "prompt": "b", "max_tokens": 20, "temperature": 5e-324},
            "temperature 1e-300": {"model": "tiny", "prompt": "b", "max_tokens": 20, "temperature": 1e-300},
        }
        others_failed = 0
        for name, bad in bads.items():
            got: dict = {}

            def run_long(got=got):
                with httpx.Client() as c:
                    got["long"] = jpost(c, url, long_req, timeout=60)

            t = threading.Thread(target=run_long, daemon=True)
            t.start()
            overlap = False
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and t.is_alive():
                h = srv.health(2)
                if h and h.get("running", 0) >= 1:
                    overlap = True
                    break
                time.sleep(0.02)
            with httpx.Client() as c:
                bs, bo, bt = jpost(c, url, bad, timeout=30)
            t.join(65)
            ls, lo, lt = got.get("long", (None, "no answer", 0.0))
            lf = failed(ls, lo)
            others_failed += lf
            ntok = lo.get("usage", {}).get("completion_tokens") if isinstance(lo, dict) else None
            err = short(
                lo.get("error", {}).get("message") if isinstance(lo, dict) and "error" in lo else "", 90
            )
            R.add(
                1,
                f"long greedy request while a `{name}` request runs",
                f"long: {ls} ({ntok} tokens, {secs(lt)}){' ' + err if err else ''}; bad one: {bs} ({secs(bt)}); "
                f"overlapped: {overlap}",
                "long request 200 with 200 tokens",
                (not lf) if overlap else None,
            )
        R.add(1, "requests failed by another request", others_failed, "0", others_failed == 0)
        h = srv.wait_idle(5)
        rw = (h or {}).get("running"), (h or {}).get("waiting")
        R.add(1, "/health running/waiting once idle", f"{rw[0]}/{rw[1]}", "0/0", rw == (0, 0))
    finally:
        srv.stop()


SURROGATE = b'{"model":"tiny","prompt":"a\\ud800b","max_tokens":2}'
DEEP = b'{"model":"tiny","prompt":"a","max_tokens":2,"x":' + b"[" * 10000 + b"]" * 10000 + b"}"
CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

# (name, path, body, expected-status description, loose-type case?)
CLIENT_MISTAKES = [
    ("lone surrogate \\ud800 in prompt", COMP, SURROGATE, "400", False),
    ("JSON nested 10,000 deep", COMP, DEEP, "400", False),
    (
        'chat content part {"type":"text","text":null}',
        CHAT,
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": [{"type": "text", "text": None}]}],
            "max_tokens": 2,
        },
        "400",
        False,
    ),
    ("invalid UTF-8 bytes", COMP, b'{"model":"tiny","prompt":"a\xff\xfeb","max_tokens":2}', "400", False),
    ("body not JSON", COMP, b"hello, not json", "400", False),
    ('max_tokens: "4"', COMP, {"model": "tiny", "prompt": "a", "max_tokens": "4"}, "400", True),
    ("max_tokens: true", COMP, {"model": "tiny", "prompt": "a", "max_tokens": True}, "400", True),
    (
        'temperature: "0.5"',
        COMP,
        {"model": "tiny", "prompt": "a", "max_tokens": 2, "temperature": "0.5"},
        "400",
        True,
    ),
    ('stream: "yes"', COMP, {"model": "tiny", "prompt": "a", "max_tokens": 2, "stream": "yes"}, "400", True),
    (
        "temperature: NaN",
        COMP,
        b'{"model":"tiny","prompt":"a","max_tokens":2,"temperature":NaN}',
        "400",
        False,
    ),
    ("n: 0", COMP, {"model": "tiny", "prompt": "a", "max_tokens": 2, "n": 0}, "400", False),
    (
        "tools (tool_choice required)",
        CHAT,
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "weather in Paris?"}],
            "max_tokens": 8,
            "tools": TOOLS,
            "tool_choice": "required",
        },
        "4xx or tool_calls",
        False,
    ),
    (
        'response_format {"type":"json_object"}',
        CHAT,
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "json please"}],
            "max_tokens": 8,
            "response_format": {"type": "json_object"},
        },
        "4xx or JSON output",
        False,
    ),
    (
        "logit_bias with token id 99999999",
        COMP,
        {"model": "tiny", "prompt": "a", "max_tokens": 2, "logit_bias": {"99999999": 5}},
        "400",
        False,
    ),
    ("unknown model", COMP, {"model": "no-such-model", "prompt": "a", "max_tokens": 2}, "404", False),
]

VALID = {"model": "tiny", "prompt": "a", "max_tokens": 2}


def point2(env: Env) -> None:
    """Client mistakes: 5xx, loosely accepted types, keep-alive after a 500."""
    srv = env.main()
    n5xx, loose, after500 = 0, 0, []
    with httpx.Client(base_url=srv.url) as c:
        for name, path, payload, target, loose_case in CLIENT_MISTAKES:
            s, out, t = jpost(c, path, payload, timeout=30)
            shaped = is_openai_error(out)
            extra = ""
            if s is not None and s >= 500:
                n5xx += 1
                vs, vo, _ = jpost(c, COMP, VALID, timeout=30)
                after500.append(vs == 200 and not failed(vs, vo))
                extra = (
                    f"; next valid request on the same connection: {vs if vs is not None else short(vo, 60)}"
                )
            if loose_case and s == 200:
                loose += 1
            msg = out["error"]["message"] if shaped else (out if isinstance(out, str) else "")
            if target == "400":
                ok = s == 400 and shaped
            elif target == "404":
                ok = s == 404 and shaped
            elif target.startswith("4xx or tool_calls"):
                tc = isinstance(out, dict) and any(
                    (ch.get("message") or {}).get("tool_calls") for ch in out.get("choices", [])
                )
                ok = (s is not None and 400 <= s < 500) or (s == 200 and bool(tc))
                if s == 200 and not tc:
                    extra += "; 200 without tool_calls (tools silently ignored)"
            else:  # JSON output
                content = None
                if isinstance(out, dict) and out.get("choices"):
                    content = (out["choices"][0].get("message") or {}).get("content")
                try:
                    json.loads(content or "")
                    is_json = True
                except ValueError:
                    is_json = False
                ok = (s is not None and 400 <= s < 500) or (s == 200 and is_json)
                if s == 200 and not is_json:
                    extra += f"; 200 with non-JSON content {short(repr(content), 40)} (ignored)"
            value = f"{s if s is not None else short(out, 60)} ({ms(t)})" + (
                f" {short(msg, 90)}" if msg and s != 200 else ""
            )
            R.add(2, name, value + extra, target, ok)
    R.add(2, "5xx responses to client mistakes", n5xx, "0", n5xx == 0)
    R.add(2, "loosely accepted wrong types (string/bool)", loose, "0", loose == 0)
    if after500:
        R.add(
            2,
            "valid request on the same keep-alive connection after a 500",
            f"{sum(after500)}/{len(after500)} succeeded",
            "all",
            all(after500),
        )
    else:
        R.add(2, "valid request on the same keep-alive connection after a 500", "no 500 seen", "all", True)
    if not srv.alive():
        R.add(
            2, "server alive after the client mistakes", f"died: {short(srv.log_tail(200))}", "alive", False
        )


class HealthPoller:
    """Poll /health every 0.2 s in a thread while the `with` block runs: latencies and failures."""

    def __init__(self, url: str):
        self.url, self.lat, self.errors = url, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client() as c:
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    c.get(self.url + "/health", timeout=60)
                except httpx.HTTPError:
                    self.errors += 1
                self.lat.append(time.perf_counter() - t)
                self._stop.wait(0.2)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(65)

    @property
    def worst(self) -> float:
        return max(self.lat) if self.lat else float("nan")


def health_during_long_requests(srv, n: int = 8) -> None:
    """/health latency while `n` long requests (700 tokens each) decode together."""
    failed = [0]
    body = {"model": "tiny", "prompt": "long", "max_tokens": 700, "temperature": 0, "ignore_eos": True}

    def one():
        try:
            httpx.post(srv.url + COMP, json=body, timeout=120)
        except httpx.HTTPError:
            failed[0] += 1

    workers = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    with HealthPoller(srv.url) as hp:
        for w in workers:
            w.start()
        for w in workers:
            w.join(180)
    R.add(
        3,
        f"max /health latency while {n} long requests decode",
        f"{ms(hp.worst)} over {len(hp.lat)} polls ({hp.errors} failed)",
        "< 1 s",
        bool(hp.lat) and hp.worst < 1.0 and not hp.errors and not failed[0],
    )


def point3(env: Env) -> None:
    """A 20 MB body: /health latency meanwhile, time to answer, RSS before/after."""
    srv = env.main()
    rss0 = rss_mb(srv.pid)
    prompt = "a" * (20 * 2**20)
    payload = b'{"model":"tiny","prompt":"' + prompt.encode() + b'","max_tokens":1}'
    del prompt
    with HealthPoller(srv.url) as hp, httpx.Client() as c:
        s, out, t = jpost(c, srv.url + COMP, payload, timeout=120)
        time.sleep(0.5)
    del payload
    time.sleep(2.0)
    srv.wait_idle(10)
    rss1 = rss_mb(srv.pid)
    msg = short(out["error"]["message"], 80) if is_openai_error(out) else short(out, 80)
    R.add(
        3,
        "max /health latency during a 20 MB request",
        f"{ms(hp.worst)} over {len(hp.lat)} polls ({hp.errors} failed)",
        "< 1 s",
        hp.worst < 1.0 and not hp.errors,
    )
    R.add(
        3,
        "20 MB request: status and time to answer",
        f"{s} in {secs(t)}: {msg}",
        "4xx, quickly",
        s is not None and 400 <= s < 500 and t < 5,
    )
    health_during_long_requests(srv)
    if rss0 is not None and rss1 is not None:
        R.add(
            3,
            "server RSS before -> after",
            f"{rss0:.0f} MB -> {rss1:.0f} MB (+{rss1 - rss0:.0f} MB)",
            "< +100 MB",
            rss1 - rss0 < 100,
        )
    else:
        R.add(3, "server RSS before -> after", "could not read /proc", "< +100 MB", None)


def _raw_request(port: int, path: str, payload: dict) -> socket.socket:
    data = body(payload)
    s = socket.create_connection((HOST, port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    s.sendall(head + data)
    return s


def _disconnect(srv: Proc, stream: bool) -> tuple[str, bool | None]:
    payload = {
        "model": "tiny",
        "prompt": "a",
        "max_tokens": 2000,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
    }
    h0 = srv.health() or {}
    ab0 = h0.get("aborted", 0)
    s = _raw_request(srv.port, COMP, payload)
    try:
        time.sleep(1.0)
        if stream:
            s.settimeout(2)
            with contextlib.suppress(OSError):
                s.recv(4096)
        h = srv.health() or {}
        running = h.get("running", 0)
    finally:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
    t0 = time.perf_counter()
    if not running:
        return f"request not running 1 s after sending (health {h})", None
    while time.perf_counter() - t0 < 30:
        h = srv.health(2) or {}
        if h.get("running", 1) == 0 or h.get("aborted", 0) > ab0:
            dt = time.perf_counter() - t0
            how = "aborted" if h.get("aborted", 0) > ab0 else "finished"
            return f"slot freed {secs(dt)} after disconnect ({how})", dt < 1.0
        time.sleep(0.05)
    return "still running 30 s after disconnect", False


def point4(env: Env) -> None:
    """Client disconnects, a chat without max_tokens, SIGTERM during a long request."""
    srv = env.main()
    for stream in (False, True):
        try:
            v, ok = _disconnect(srv, stream)
        except Exception as e:  # noqa: BLE001
            v, ok = f"error {type(e).__name__}: {e}", None
        R.add(
            4,
            f"client disconnect, {'streaming' if stream else 'non-streaming'} (max_tokens 2000)",
            v,
            "freed < 1 s",
            ok,
        )
        srv.wait_idle(40)
    # a dedicated server: a chat without max_tokens, then SIGTERM while a long request runs
    grace_opt = next(
        (
            o
            for o in (
                "--shutdown-timeout",
                "--graceful-timeout",
                "--timeout-graceful-shutdown",
                "--drain-timeout",
            )
            if env.has_option(o, "serve")
        ),
        None,
    )
    deadline = 10.0 if grace_opt else 30.0
    extra = [grace_opt, str(int(deadline))] if grace_opt else []
    s4 = env.serve("p4", *extra)
    try:
        got: dict = {}
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}

        def run_chat():
            with httpx.Client() as c:
                got["chat"] = jpost(c, s4.url + CHAT, chat, timeout=120)

        th = threading.Thread(target=run_chat, daemon=True)
        th.start()
        th.join(30)
        if "chat" in got:
            cs, co, ct = got["chat"]
            u = co.get("usage", {}) if isinstance(co, dict) else {}
            fr = co["choices"][0].get("finish_reason") if isinstance(co, dict) and co.get("choices") else None
            R.add(
                4,
                "chat without max_tokens",
                f"{cs} in {secs(ct)}: {u.get('completion_tokens')} tokens, finish {fr}",
                "answers within 30 s",
                cs == 200 and ct < 30,
            )
            long_payload = {
                "model": "tiny",
                "prompt": "a",
                "max_tokens": 5000,
                "temperature": 0,
                "ignore_eos": True,
            }
            th = threading.Thread(
                target=lambda: got.update(
                    long=jpost(httpx.Client(), s4.url + COMP, long_payload, timeout=120)
                ),
                daemon=True,
            )
            th.start()
            time.sleep(1.0)
        else:
            R.add(
                4,
                "chat without max_tokens",
                "no answer within 30 s (still generating: ctx-sized default)",
                "answers within 30 s",
                False,
            )
        h = s4.health() or {}
        t0 = time.perf_counter()
        s4.proc.send_signal(signal.SIGTERM)
        try:
            rc = s4.proc.wait(timeout=70)
            dt = time.perf_counter() - t0
            v = f"exited in {secs(dt)} (rc {rc}; {h.get('running')} running at SIGTERM)"
            ok = dt <= deadline + 5
        except subprocess.TimeoutExpired:
            s4.proc.kill()
            s4.proc.wait(10)
            v, ok = f"still running 70 s after SIGTERM ({h.get('running')} running at SIGTERM): killed", False
        R.add(
            4,
            "SIGTERM while a long request runs" + (f" ({grace_opt} {int(deadline)})" if grace_opt else ""),
            v,
            f"exits <= {deadline + 5:.0f} s",
            ok,
        )
    finally:
        s4.stop()


def point5(env: Env) -> None:
    srv = env.main()
    payload = {"model": "tiny", "prompt": ["x"] * 500, "n": 16, "max_tokens": 1}
    with httpx.Client() as c:
        s, out, t = jpost(c, srv.url + COMP, payload, timeout=60)
    msg = short(out["error"]["message"], 80) if is_openai_error(out) else ""
    n = len(out.get("choices", [])) if isinstance(out, dict) else None
    v = f"{s if s is not None else 'no answer in 60 s'} in {secs(t)}" + (
        f": {msg}" if msg else f" ({n} choices)" if n else ""
    )
    R.add(5, 'prompt ["x"]*500 with n 16 (8,000 sequences)', v, "400", s == 400)
    if s is None or s == 200:
        env._main.stop() if env._main else None  # noqa: B018 - do not leave 8,000 sequences behind


def point6(env: Env) -> None:
    srv = env.main()
    with httpx.Client() as c:
        s, out, t = jpost(c, srv.url + COMP, VALID, headers={"Host": "evil.example.com"})
        R.add(6, "Host: evil.example.com", f"{s}", "rejected (400/403/421)", s in (400, 403, 421))
        try:
            r = c.post(
                srv.url + COMP, content=body(VALID), headers={"Content-Type": "text/plain"}, timeout=30
            )
            s2 = r.status_code
        except httpx.HTTPError as e:
            s2 = f"error {type(e).__name__}"
        R.add(6, "JSON sent as Content-Type: text/plain", f"{s2}", "rejected (415/400)", s2 in (400, 415))
    if not env.has_option("--api-key", "serve"):
        for check, target in (("without key", "401"), ("wrong key", "401"), ("right key", "200")):
            R.add(6, f"--api-key: {check}", "not supported (serve has no --api-key)", target, False)
        return
    key = "battery-secret-key"
    s6 = Proc("p6", ["serve", "--model", "tiny", "--threads", "1", "--api-key", key], env.work)
    try:
        s6.start()
    except Exception as e:  # noqa: BLE001
        R.add(6, "--api-key server start", f"failed: {short(e)}", "starts", False)
        return
    try:
        with httpx.Client() as c:
            for check, hdr, want in (
                ("without key", {}, 401),
                ("wrong key", {"Authorization": "Bearer wrong"}, 401),
                ("right key", {"Authorization": f"Bearer {key}"}, 200),
            ):
                s, out, _ = jpost(c, s6.url + COMP, VALID, headers=hdr)
                R.add(6, f"--api-key: {check}", f"{s}", str(want), s == want)
    finally:
        s6.stop()


def _token_id(text: str) -> int | None:
    try:
        from tenfold.core.tokenizer import Tokenizer

        tok = Tokenizer.byte_level()
        i = tok.token_to_id(text)
        if i is not None:
            return i
        ids = tok.encode(text)
        return ids[0] if len(ids) == 1 else None
    except Exception:  # noqa: BLE001
        return None


def _greedy_token(prompt: str) -> tuple[int | None, object]:
    """The tiny preset's greedy first token id after `prompt` (and its raw logprob), computed here."""
    try:
        import torch

        from tenfold.core.models import load_model
        from tenfold.core.sampler import encode_prompt

        lm, tok = load_model("tiny", "cpu")
        ids = encode_prompt(tok, prompt)
        with torch.no_grad():
            logits = lm(torch.tensor([ids])).logits[0, -1].float()
        tid = int(logits.argmax())
        return tid, round(float(torch.log_softmax(logits, -1)[tid]), 4)
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {short(e, 60)}"


def _max_repeat(text: str) -> int:
    from collections import Counter

    return max(Counter(text).values()) if text else 0


def point7(env: Env) -> None:
    srv = env.main()
    base = {"model": "tiny", "prompt": "a", "temperature": 0, "ignore_eos": True}
    with httpx.Client(base_url=srv.url) as c:
        s, out, _ = jpost(c, COMP, {**base, "max_tokens": 3, "logprobs": 5})
        tl = None
        if isinstance(out, dict) and out.get("choices"):
            lp = out["choices"][0].get("logprobs") or {}
            tl = lp.get("top_logprobs")
        good = isinstance(tl, list) and len(tl) == 3 and all(isinstance(x, dict) and len(x) >= 1 for x in tl)
        R.add(
            7,
            "logprobs 5 returns top_logprobs",
            f"{s}: top_logprobs = {short(tl, 80)}",
            "5 alternatives per token",
            good and all(len(x) == 5 for x in tl),
        )

        # logit_bias -100 on the greedy first token (found in-process with the same preset weights)
        tid, want_lp = _greedy_token("a")
        s0, o0, _ = jpost(c, COMP, {**base, "max_tokens": 1, "logprobs": 1})
        s1, o1, _ = jpost(
            c,
            COMP,
            {**base, "max_tokens": 1, "logprobs": 1, "logit_bias": {str(tid): -100}}
            if tid is not None
            else VALID,
        )

        def first(o):
            if not isinstance(o, dict) or not o.get("choices"):
                return None
            lp = o["choices"][0].get("logprobs") or {}
            toks, lps = lp.get("tokens") or [None], lp.get("token_logprobs") or [None]
            return toks[0], (round(lps[0], 4) if isinstance(lps[0], (int, float)) else lps[0])

        f0, f1 = first(o0), first(o1)
        if tid is None:
            R.add(
                7,
                "logit_bias -100 on the greedy token",
                f"could not find the greedy token in-process ({want_lp})",
                "changes output or 400",
                None,
            )
        else:
            changed = s1 == 200 and f0 is not None and f1 != f0
            R.add(
                7,
                f"logit_bias -100 on the greedy token (id {tid})",
                f"{s1}: first token (text, logprob) {f0} -> {f1}",
                "changes output or 400",
                changed or s1 == 400,
            )

        s0, o0, _ = jpost(c, COMP, {**base, "max_tokens": 80})
        t0 = o0["choices"][0]["text"] if isinstance(o0, dict) and o0.get("choices") else None
        for pen in ("frequency_penalty", "presence_penalty"):
            s1, o1, _ = jpost(c, COMP, {**base, "max_tokens": 80, pen: 2.0})
            t1 = o1["choices"][0]["text"] if isinstance(o1, dict) and o1.get("choices") else None
            if s1 == 200 and t0 is not None and t1 is not None:
                v = f"200: most repeated char x{_max_repeat(t0)} -> x{_max_repeat(t1)}; output {'changed' if t1 != t0 else 'identical'}"
                ok = t1 != t0 and _max_repeat(t1) <= _max_repeat(t0)
            else:
                v, ok = f"{s1}", s1 == 400
            R.add(7, f"{pen} 2.0 on 80 greedy tokens", v, "less repetition or 400", ok)

        try:
            r = c.get("/openapi.json", timeout=10)
            spec = r.json()
            declared = [
                p
                for p in (COMP, CHAT)
                if "requestBody" in ((spec.get("paths", {}).get(p) or {}).get("post") or {})
            ]
            R.add(
                7,
                "/openapi.json declares request bodies",
                f"{r.status_code}: {len(declared)}/2 POST endpoints",
                "2/2",
                len(declared) == 2,
            )
        except Exception as e:  # noqa: BLE001
            R.add(7, "/openapi.json declares request bodies", f"error {short(e, 80)}", "2/2", False)
        try:
            r = c.get("/metrics", timeout=10)
            prom = r.status_code == 200 and ("# TYPE" in r.text or "# HELP" in r.text)
            R.add(
                7,
                "/metrics with Prometheus text",
                f"{r.status_code} {r.headers.get('content-type', '')}",
                "200 text/plain with # TYPE",
                prom,
            )
        except Exception as e:  # noqa: BLE001
            R.add(7, "/metrics with Prometheus text", f"error {short(e, 80)}", "200 with # TYPE", False)


# -------------------------------------------------------------------------------------------------
# Cake store points


def _spec_and_chunk(seed: int = 0):
    import torch

    from tenfold.cake.store import ChunkSpec

    spec = ChunkSpec(layers=2, kv_heads=3, tokens=8, head_dim=4, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    shape = (spec.kv_heads, spec.tokens, spec.head_dim)
    kv = [(torch.randn(shape, generator=g), torch.randn(shape, generator=g)) for _ in range(spec.layers)]
    return spec, kv


def _key(i: int) -> str:
    from tenfold.cake.store import prefix_keys

    return prefix_keys("battery", list(range(8 * (i + 1))), 8)[-1]


def _foreign_files(root: Path) -> list[Path]:
    from tenfold.core.models import build_preset, save_model

    model, tok = build_preset("tiny")
    save_model(model, tok, root / "my-finetune")
    (root / "ab").mkdir(exist_ok=True)
    (root / "ab" / "notes.safetensors").write_bytes(b"my notes, not a KV chunk")
    (root / "README.txt").write_text("my store notes")
    foreign = [p for p in (root / "my-finetune").rglob("*") if p.is_file()]
    return foreign + [root / "ab" / "notes.safetensors", root / "README.txt"]


def point8(env: Env) -> None:
    from tenfold.cake.store import KVStore

    root = env.work / "store8"
    store = KVStore(root)
    spec, kv = _spec_and_chunk()
    store.put(_key(0), kv)
    foreign = _foreign_files(root)
    rc, out, err, t = run_cli(["cake", "store", str(root), "--clear"], timeout=60)
    gone = [p for p in foreign if not p.exists()]
    chunk_gone = not store.contains(_key(0))
    R.add(
        8,
        "`cake store DIR --clear`: foreign files deleted",
        f"{len(gone)} of {len(foreign)} (rc {rc}; {', '.join(str(p.relative_to(root)) for p in gone) or 'none'}); own chunk removed: {chunk_gone}",
        "0",
        len(gone) == 0 and rc == 0,
    )
    shutil.rmtree(root, ignore_errors=True)
    store = KVStore(root)
    store.put(_key(0), kv)
    foreign = _foreign_files(root)
    rc, out, err, t = run_cli(["cake", "store", str(root), "--max-gb", "1e-9"], timeout=60)
    gone = [p for p in foreign if not p.exists()]
    R.add(
        8,
        "eviction with a tiny cap (`--max-gb 1e-9`): foreign files deleted",
        f"{len(gone)} of {len(foreign)} (rc {rc}; {', '.join(str(p.relative_to(root)) for p in gone) or 'none'}; {short(last_line(out).replace(str(root), 'DIR'), 60)})",
        "0",
        len(gone) == 0 and rc == 0,
    )


def _rewrite_metadata(data: bytes, meta) -> bytes:
    hlen = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + hlen])
    header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + hlen :]


def point9(env: Env) -> None:
    from tenfold.cake.store import KVStore, encode_chunk

    root = env.work / "store9"
    store = KVStore(root)
    spec, kv = _spec_and_chunk()
    k = _key(0)
    path = store.path(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_rewrite_metadata(encode_chunk(k, kv), "not-a-dict"))
    try:
        got = store.get(k, spec)
        R.add(
            9,
            "KVStore.get on a chunk whose __metadata__ is a string",
            f"returned {'a miss' if got is None else 'a HIT'}",
            "a miss, no exception",
            got is None,
        )
    except Exception as e:  # noqa: BLE001
        R.add(
            9,
            "KVStore.get on a chunk whose __metadata__ is a string",
            f"raised {type(e).__name__}: {short(e, 80)}",
            "a miss, no exception",
            False,
        )

    # the same inside `cake run --mode io_only`
    root2 = env.work / "store9run"
    prompt = "the quick brown fox jumps over the lazy dog, twice"
    chunk_tokens = 16
    try:
        from tenfold.cake.loader import CakeLoader
        from tenfold.core.models import load_model
        from tenfold.core.sampler import encode_prompt

        lm, tok = load_model("tiny", "cpu")
        store2 = KVStore(root2)
        loader = CakeLoader(lm, store2, chunk_tokens)
        keys = loader.keys(encode_prompt(tok, prompt))
        good = [(t_k.contiguous(), t_v.contiguous()) for t_k, t_v in _spec_kv_for(loader.spec)]
        for kk in keys:
            store2.path(kk).parent.mkdir(parents=True, exist_ok=True)
            store2.path(kk).write_bytes(_rewrite_metadata(encode_chunk(kk, good), "not-a-dict"))
    except Exception as e:  # noqa: BLE001
        R.add(
            9,
            "`cake run --mode io_only` with such chunks in the store",
            f"setup failed: {type(e).__name__}: {short(e, 80)}",
            "exit 0, no traceback",
            None,
        )
        return
    rc, out, err, t = run_cli(
        [
            "cake",
            "run",
            prompt,
            "--store",
            str(root2),
            "--model",
            "tiny",
            "--mode",
            "io_only",
            "--max-tokens",
            "2",
            "--chunk-tokens",
            str(chunk_tokens),
        ],
        timeout=90,
    )
    tb = "Traceback" in err
    R.add(
        9,
        f"`cake run --mode io_only` with {len(keys)} such chunks in the store",
        f"exit {rc}{', traceback' if tb else ''}: {short(last_line(err), 110)}",
        "exit 0, no traceback",
        rc == 0 and not tb,
    )


def _spec_kv_for(spec):
    import torch

    g = torch.Generator().manual_seed(1)
    shape = (spec.kv_heads, spec.tokens, spec.head_dim)
    return [
        (torch.randn(shape, generator=g).to(spec.dtype), torch.randn(shape, generator=g).to(spec.dtype))
        for _ in range(spec.layers)
    ]


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


_KILLED_WRITER = """
import os, sys, time, torch
from tenfold.cake.store import ChunkSpec, KVStore
store = KVStore(sys.argv[1])
def hang(*args, **kw):
    print("written", flush=True)
    time.sleep(3600)
os.replace = hang  # the writer dies between writing its temp file and renaming it
shape = (3, 8, 4)
store.put(sys.argv[2], [(torch.zeros(shape), torch.zeros(shape)) for _ in range(2)], overwrite=True)
"""


def point10(env: Env) -> None:
    import dataclasses

    from tenfold.cake.store import KVStore, StoreStats

    root = env.work / "store10"
    store = KVStore(root)
    spec, kv = _spec_and_chunk()
    k = _key(0)
    store.put(k, kv)
    data = bytearray(store.path(k).read_bytes())
    data[-5] ^= 0x01
    store.path(k).write_bytes(bytes(data))
    cap = _Capture()
    root_logger = logging.getLogger()
    old = root_logger.level
    root_logger.addHandler(cap)
    root_logger.setLevel(logging.DEBUG)
    try:
        got = store.get(k, spec)
    except Exception as e:  # noqa: BLE001
        got = e
    finally:
        root_logger.removeHandler(cap)
        root_logger.setLevel(old)
    fields = [f.name for f in dataclasses.fields(StoreStats)]
    stats = dataclasses.asdict(store.stats)
    corrupt_fields = {f: stats[f] for f in fields if "corrupt" in f}
    counted = any((v == 1 or (isinstance(v, list) and len(v) == 1)) for v in corrupt_fields.values())
    R.add(
        10,
        "bit-flipped chunk counted in StoreStats",
        f"get -> {'miss' if got is None else short(got, 40)}; {corrupt_fields}",
        "counted",
        counted and got is None,
    )
    logged = [r for r in cap.records if r.levelno >= logging.WARNING]
    R.add(
        10,
        "bit-flipped chunk logged (WARNING or above)",
        f"{len(logged)} record(s)" + (f": {short(logged[0].getMessage(), 80)}" if logged else ""),
        ">= 1",
        bool(logged),
    )
    # a killed writer's temporary file: a real writer process, SIGKILLed after writing its temp file and
    # before renaming it (whatever temp name the code under test uses)
    k1 = _key(1)
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(root), k1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = writer.stdout.readline()
    writer.kill()
    writer.wait()
    dead = writer.pid
    tmps = [p for p in root.rglob("*.tmp") if k1 in p.name]
    if not line.startswith("written") or not tmps:
        R.add(
            10, "killed writer's temp file", f"writer did not leave one: {short(line, 80)}", "cleaned", None
        )
        return
    tmp = tmps[0]
    rc, out, err, t = run_cli(["cake", "store", str(root)], timeout=60)
    cleaned = not tmp.exists()
    said = out.replace(str(root), "DIR").lower()
    mentioned = ".tmp" in said or "temp" in said
    R.add(
        10,
        f"killed writer's temp file (pid {dead}, fresh mtime) after `cake store DIR`",
        f"{'removed' if cleaned else 'still there'}{' (reported)' if mentioned else ''}; rc {rc}: {short(last_line(out).replace(str(root), 'DIR'), 70)}",
        "cleaned",
        cleaned,
    )


# -------------------------------------------------------------------------------------------------
# CoMem proxy points


class FakeAgent:
    """A scripted OpenAI-compatible chat server; mode "die" cuts a stream off mid-body."""

    def __init__(self):
        self.mode = "ok"
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send_json(self, obj, status=200):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path.endswith("/models"):
                    self._send_json(
                        {"object": "list", "data": [{"id": "fake-agent", "object": "model", "owned_by": "x"}]}
                    )
                else:
                    self._send_json({"status": "ok"})

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    req = json.loads(raw)
                except ValueError:
                    self._send_json({"error": {"message": "bad json"}}, 400)
                    return
                base = {"id": "x", "created": int(time.time()), "model": "fake-agent"}
                if not req.get("stream"):
                    self._send_json(
                        {
                            **base,
                            "object": "chat.completion",
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": "ok, go on."},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                        }
                    )
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunk(text: str):
                    b = text.encode()
                    self.wfile.write(f"{len(b):x}\r\n".encode() + b + b"\r\n")
                    self.wfile.flush()

                ev = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}],
                }
                chunk(f"data: {json.dumps(ev)}\n\n")
                if outer.mode == "die":
                    time.sleep(0.2)
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    self.connection.close()
                    return
                end = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
                chunk(f"data: {json.dumps(end)}\n\n")
                chunk("data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer((HOST, 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HungServer:
    """Accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.5)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                continue

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def close(self):
        self.stop.set()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        with contextlib.suppress(OSError):
            self.sock.close()


class ProxyRig:
    def __init__(self, env: Env):
        self.env = env
        self.agent = FakeAgent()
        self.memory = HungServer()
        args = [
            "comem",
            "proxy",
            "--agent-url",
            self.agent.url,
            "--memory-url",
            self.memory.url,
            "--interval",
            "2",
            "--k",
            "1",
            "--memory-model",
            "m",
        ]
        self.memory_timeout = env.has_option("--memory-timeout", "comem", "proxy")
        if self.memory_timeout:
            args += ["--memory-timeout", "1"]
        self.proc = Proc("proxy", args, env.work).start()

    def close(self):
        self.proc.stop()
        self.agent.close()
        self.memory.close()


def point11(env: Env, rig: ProxyRig) -> None:
    msgs = [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "Task: find the exit."},
    ]
    times, statuses = [], []
    worst = (0.0, -1)
    with httpx.Client() as c:
        for turn in range(6):
            msgs.append({"role": "user", "content": f"room {turn}: a corridor."})
            s, out, t = jpost(c, rig.proc.url + CHAT, {"model": "m", "messages": msgs}, timeout=12)
            times.append(t)
            statuses.append(s)
            if t > worst[0]:
                worst = (t, turn)
            if s != 200 or not isinstance(out, dict) or not out.get("choices"):
                break
            msgs.append({"role": "assistant", "content": out["choices"][0]["message"]["content"]})
    timed_out = statuses[-1] is None
    v = (
        f"slowest turn {worst[1]}: {'> 12 s (client timeout)' if timed_out else secs(worst[0])}; "
        f"turns {', '.join(secs(t) for t in times)}; statuses {statuses}"
        + ("; --memory-timeout 1" if rig.memory_timeout else "; no --memory-timeout option (default wait)")
    )
    R.add(
        11,
        "turns with a hung memory server (summary every 2 turns, k 1)",
        v,
        "every turn < 5 s",
        not timed_out and worst[0] < 5,
    )


PROXY_BAD = [
    ("invalid UTF-8", b'{"model":"m","messages":[{"role":"user","content":"a\xff\xfeb"}]}'),
    ("lone surrogate", b'{"model":"m","messages":[{"role":"user","content":"a\\ud800b"}]}'),
    (
        "JSON nested 10,000 deep",
        b'{"model":"m","messages":[{"role":"user","content":"a"}],"x":' + b"[" * 10000 + b"]" * 10000 + b"}",
    ),
    ("temperature: NaN", b'{"model":"m","messages":[{"role":"user","content":"a"}],"temperature":NaN}'),
]


def point12(env: Env, rig: ProxyRig) -> None:
    for name, raw in PROXY_BAD:
        with httpx.Client() as c:  # a fresh connection each: one failure must not explain the next
            s, out, t = jpost(c, rig.proc.url + CHAT, raw, timeout=15)
            shaped = is_openai_error(out)
            msg = short(out["error"]["message"], 70) if shaped else short(out, 50)
            R.add(
                12,
                f"proxy: {name}",
                f"{s}, {'OpenAI JSON' if shaped else 'not OpenAI JSON'}: {msg}",
                "400 JSON",
                s == 400 and shaped,
            )
    # an agent that dies mid-stream
    rig.agent.mode = "die"
    events, exc = [], None
    try:
        with (
            httpx.Client() as c,
            c.stream(
                "POST",
                rig.proc.url + CHAT,
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                timeout=15,
            ) as r,
        ):
            st = r.status_code
            for line in r.iter_lines():
                if line.startswith("data:"):
                    events.append(line[5:].strip())
    except httpx.HTTPError as e:
        exc = e
        st = locals().get("st")
    err_ev = [e for e in events if e.startswith("{") and '"error"' in e]
    v = f"status {st}; {len(events)} events; error event: {'yes' if err_ev else 'no'}" + (
        f"; client saw {type(exc).__name__}" if exc else ""
    )
    R.add(12, "agent dies mid-stream: client gets an SSE error event", v, "error event", bool(err_ev))
    rig.agent.mode = "ok"
    # the agent goes away
    rig.agent.close()
    try:
        r = httpx.get(rig.proc.url + "/health", timeout=10)
        try:
            j = r.json()
        except ValueError:
            j = {}
        healthy = r.status_code == 200 and j.get("status") == "ok"
        R.add(
            12,
            "proxy /health with the agent down",
            f"{r.status_code} status={j.get('status')!r}",
            "not 200 ok",
            not healthy,
        )
    except httpx.HTTPError as e:
        R.add(12, "proxy /health with the agent down", f"error {type(e).__name__}", "not 200 ok", None)


# -------------------------------------------------------------------------------------------------
# checkpoints


def point13(env: Env) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from tenfold.core.models import build_preset, save_model

    base = env.work / "ckpt" / "base"
    model, tok = build_preset("tiny")
    save_model(model, tok, base)
    weights = base / "model.safetensors"
    if not weights.is_file():
        files = sorted(base.glob("*.safetensors"))
        weights = files[0] if files else weights

    def variant(name: str) -> Path:
        d = env.work / "ckpt" / name
        shutil.copytree(base, d)
        return d

    cases: dict[str, Path] = {}
    d = variant("missing-tensor")
    sd = load_file(d / weights.name)
    drop = next(k for k in sd if "layers.1." in k and k.endswith("weight"))
    del sd[drop]
    save_file(sd, d / weights.name, metadata={"format": "pt"})
    cases[f"(a) tensor {drop} removed"] = d

    d = variant("nan-weight")
    sd = load_file(d / weights.name)
    name = next(k for k in sd if "layers.0." in k and "q_proj" in k)
    t = sd[name].clone()
    t.view(-1)[: max(1, t.numel() // 10)] = float("nan")
    sd[name] = t
    save_file(sd, d / weights.name, metadata={"format": "pt"})
    cases[f"(b) NaN in {name}"] = d

    d = variant("flipped-bytes")
    raw = bytearray((d / weights.name).read_bytes())
    mid = len(raw) // 2
    for i in range(mid, mid + 64):
        raw[i] ^= 0xFF
    (d / weights.name).write_bytes(bytes(raw))
    cases["(c) 64 bytes flipped mid-file"] = d

    d = variant("no-tokenizer")
    (d / "tokenizer.json").unlink(missing_ok=True)
    cases["(d) tokenizer.json removed"] = d

    def run(item):
        label, path = item
        return label, run_cli(["generate", "x", "--model", str(path), "--max-tokens", "2"], timeout=90)

    with ThreadPoolExecutor(2) as pool:
        for label, (rc, _out, err, _t) in pool.map(run, cases.items()):
            err = (err or "").replace(str(env.work / "ckpt"), "CKPT")
            tb = "Traceback" in err
            lines = [ln for ln in (err or "").splitlines() if ln.strip()]
            at = next((i for i, ln in enumerate(lines) if ln.startswith("error")), None)
            if at is None:
                v = f"exit {rc}{', traceback' if tb else ''}: last stderr line {short(last_line(err), 100)!r}"
                one_line = False
            else:
                n = len(lines) - at
                v = f"exit {rc}{', traceback' if tb else ''}: {short(lines[at], 100)}" + (
                    f" (+{n - 1} more lines)" if n > 1 else ""
                )
                one_line = rc == 2 and not tb and n == 1
            R.add(13, f"generate with a checkpoint: {label}", v, "exit 2, one-line error", one_line)
    del torch


# -------------------------------------------------------------------------------------------------
# driver

POINTS: dict[int, tuple[str, float]] = {
    1: ("one request fails another", 150),
    2: ("client mistakes", 120),
    3: ("20 MB body", 150),
    4: ("disconnects, default max_tokens, SIGTERM", 240),
    5: ("500 prompts x n 16", 120),
    6: ("access control", 120),
    7: ("sampling features, openapi, metrics", 120),
    8: ("cake store: foreign files", 120),
    9: ("cake store: malformed metadata", 150),
    10: ("cake store: corrupt chunks, stale temp files", 90),
    11: ("comem proxy: hung memory server", 90),
    12: ("comem proxy: bad bodies, dead agent", 90),
    13: ("checkpoint damage", 180),
}
ORDER = [1, 2, 6, 7, 4, 3, 5, 8, 9, 10, 11, 12, 13]  # the shared server's heavy checks last


def run_point(n: int, fn: Callable[[], None]) -> None:
    title, limit = POINTS[n]
    print(f"[{n}] {title} (deadline {limit:.0f} s)", file=sys.stderr, flush=True)
    box: dict = {}

    def target():
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            box["error"] = e
            box["tb"] = traceback.format_exc()

    t0 = time.perf_counter()
    th = threading.Thread(target=target, daemon=True, name=f"point-{n}")
    th.start()
    th.join(limit)
    if th.is_alive():
        R.add(n, f"point {n} ({title}) deadline", f"did not finish in {limit:.0f} s", "finishes", None)
    elif "error" in box:
        e = box["error"]
        print(box["tb"], file=sys.stderr)
        R.add(
            n,
            f"point {n} ({title}) could not run to the end",
            f"{type(e).__name__}: {short(e, 140)}",
            "runs",
            None,
        )
    print(f"    ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Hardening battery: tenfold at `{meta.get('tenfold')}` (commit {meta.get('commit')}), {meta.get('date')}, {meta.get('seconds')} s",
        "",
        "| # | check | value | target | ok |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        mark = {True: "PASS", False: "FAIL", None: "n/a"}[r["ok"]]
        lines.append(
            f"| {r['point']} | {short(r['check'], 200)} | {short(r['value'], 400)} | {short(r['target'], 80)} | {mark} |"
        )
    passed = sum(r["ok"] is True for r in rows)
    failed_ = sum(r["ok"] is False for r in rows)
    lines += ["", f"{passed} pass, {failed_} fail, {len(rows) - passed - failed_} n/a of {len(rows)} checks"]
    return "\n".join(lines)


def tree_info() -> dict:
    out = {"python": PY}
    try:
        r = subprocess.run(
            [PY, "-c", "import tenfold, sys; print(tenfold.__file__)"],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        out["tenfold"] = r.stdout.strip() or r.stderr.strip()[-200:]
        src = Path(out["tenfold"]).resolve().parent
        c = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
        )
        out["commit"] = (c.stdout.strip() or "?") + ("+dirty" if dirty.stdout.strip() else "")
    except Exception as e:  # noqa: BLE001
        out.setdefault("tenfold", f"? ({e})")
        out.setdefault("commit", "?")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    ap.add_argument("--md", type=Path, help="write the markdown table here too")
    ap.add_argument("--only", help="comma-separated points to run, e.g. 1,2,8")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    a = ap.parse_args(argv)
    points = ORDER
    if a.only:
        want = {int(x) for x in a.only.split(",") if x.strip()}
        points = [p for p in ORDER if p in want]
    meta = tree_info()
    meta["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"tenfold under test: {meta['tenfold']} ({meta['commit']})", file=sys.stderr, flush=True)
    here = str(Path(meta["tenfold"]).resolve().parent.parent)
    if os.path.isdir(here) and here not in sys.path:
        sys.path.insert(0, here)  # in-process checks import the same tree as the subprocesses
    work = Path(tempfile.mkdtemp(prefix="tenfold-battery-"))
    env = Env(work)
    t0 = time.perf_counter()
    rig: ProxyRig | None = None
    try:
        for n in points:
            if n in (11, 12):
                if rig is None:
                    box: dict = {}

                    def start_rig(box=box):
                        box["rig"] = ProxyRig(env)

                    run_point(n, start_rig)
                    rig = box.get("rig")
                    if rig is None:
                        continue
                run_point(n, (lambda n=n, rig=rig: (point11 if n == 11 else point12)(env, rig)))
                continue
            fn = globals()[f"point{n}"]
            run_point(n, lambda fn=fn: fn(env))
    except KeyboardInterrupt:
        R.add(0, "battery", "interrupted", "complete", None)
    finally:
        with contextlib.suppress(Exception):
            if rig is not None:
                rig.close()
        with contextlib.suppress(Exception):
            env.close()
        kill_all()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    rows = sorted(R.rows, key=lambda r: r["point"])
    md = markdown(rows, meta)
    print(md)
    if a.out:
        a.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    if a.md:
        a.md.write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Running the `tenfold serve` app: as the CLI does (`serve`), in a thread, or in a subprocess.

- `serve`: load a model and serve it with uvicorn until interrupted (`tenfold serve`).
- `ServerThread`: the app in this process, on a loopback port, in a background thread (tests,
  benchmarks, notebooks); cheap to start, shares this process's model.
- `ServerProcess`: `tenfold serve` (or another `tenfold` server command) in a subprocess, optionally
  pinned to one CPU core: what benchmarks measure, and what tests use to exercise signals and crashes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tenfold.core.errors import TenfoldError
from tenfold.core.http import LOOPBACK_HOSTS

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tenfold.core.server import ServerConfig


class ServerThread:
    """Run the app with uvicorn on a loopback port in a background thread (benchmarks, notebooks).

    `with ServerThread(app) as srv: srv.base_url` -> "http://127.0.0.1:PORT/v1".
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        sock = self.server.servers[0].sockets[0]
        self.host, self.port = sock.getsockname()[:2]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    max_batch: int = 64,
    served_name: str | None = None,
    make_prefill: Callable | None = None,
    stream_interval: float = 0.0,
    config: ServerConfig | None = None,
) -> None:
    """Load `model` (preset or local checkpoint) and serve it until interrupted.

    `make_prefill(model)`, when given, builds the engine's prefill plug-in once the model is loaded.
    Bound to loopback (the default), the server answers only Host headers that name loopback or one of
    `config.allowed_hosts`; bound elsewhere, only `config.allowed_hosts` when given, else any.
    SIGTERM/SIGINT: no new connections; running requests get `config.shutdown_timeout` seconds, then
    are cut and the process exits.
    """
    import uvicorn

    from tenfold.core.models import load_model, model_name
    from tenfold.core.server import ServerConfig, create_app  # here: server.py re-exports this module

    cfg = config or ServerConfig()
    if host.strip("[]") in LOOPBACK_HOSTS:  # loopback names always, plus any the user allows
        cfg = replace(cfg, allowed_hosts=(*LOOPBACK_HOSTS, *(cfg.allowed_hosts or ())))
    lm, tok = load_model(model, device)
    prefill = make_prefill(lm) if make_prefill is not None else None
    app = create_app(
        lm,
        tok,
        served_name or model_name(model),
        max_batch=max_batch,
        prefill=prefill,
        stream_interval=stream_interval,
        config=cfg,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=cfg.shutdown_timeout,
    )


class ServerProcess:
    """`tenfold serve` in a subprocess (one torch thread), optionally pinned to one CPU core.

    `with ServerProcess("tiny", "--prefix-cache-gb", "1", cpu=0) as srv: srv.base_url`. The server's
    log goes to a file (a chatty server never blocks on a full pipe); it is shown if the server dies.
    `command` runs another `tenfold` sub-command that takes `--port` and answers `/health` instead
    (e.g. `command=("comem", "proxy", "--agent-url", url, ...)`); `model` is then ignored.
    """

    def __init__(
        self,
        model: str | None,
        *args: str,
        cpu: int | None = None,
        startup_timeout: float = 120.0,
        command: Sequence[str] | None = None,
    ):
        self.model, self.args, self.cpu, self.startup_timeout = model, args, cpu, startup_timeout
        self.command = tuple(command) if command is not None else None

    def __enter__(self) -> ServerProcess:
        import os
        import socket
        import subprocess
        import sys
        import tempfile

        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        with tempfile.NamedTemporaryFile(prefix="tenfold-serve-", suffix=".log", delete=False) as f:
            self.log_path = f.name
        sub = self.command or ("serve", "--model", str(self.model), "--threads", "1")
        cmd = [sys.executable, "-m", "tenfold", *sub, "--port", str(self.port), *self.args]
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        pin = self.cpu is not None and len(cpus) > 1
        core = sorted(cpus)[self.cpu % len(cpus)] if pin else None
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
                preexec_fn=(lambda: os.sched_setaffinity(0, {core})) if pin else None,
            )
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise TenfoldError(f"{self._name} exited ({self.proc.returncode}): {self._log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise TenfoldError(
                    f"{self._name} not healthy after {self.startup_timeout:.0f} s: {self._log_tail()}"
                )
            time.sleep(0.1)

    @property
    def _name(self) -> str:
        return "tenfold " + " ".join(self.command[:2] if self.command else ("serve",))

    def _log_tail(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def __exit__(self, *exc) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

"""Scripted stand-ins for the agent and memory models: they read the messages they are given, so a
policy that drops a needed fact from the agent's view makes them fail, as a real model would."""

import asyncio
import re

from tenfold.comem.quality import FACT
from tenfold.comem.quality import ListingMemory as _Listing
from tenfold.core.backends import Completion


class ReadingAgent:
    """Answers each room from whatever facts are visible in its prompt."""

    model = "reading-agent"

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls, self.prompt_chars = delay, 0, []

    async def chat(self, messages, **kw):
        self.calls += 1
        text = "\n".join(m["content"] for m in messages)
        self.prompt_chars.append(len(text))
        await asyncio.sleep(self.delay)
        obs = messages[-1]["content"]
        facts = FACT.findall(text)
        act = "go"
        if m := re.search(r"door (\w+), keypad", obs):
            act = next(
                (f"code {f.split()[-1]}" for f in facts if f.startswith(f"door {m.group(1)} ")), "code 0"
            )
        elif m := re.search(r"fork (\d+), left or right", obs):
            act = next((f.split()[-1] for f in facts if f.startswith(f"fork {m.group(1)} ")), "left")
        elif obs.endswith("exit."):
            act = "exit"
        return Completion(f"think: ok. act: {act}", "stop", len(text), 5)

    async def aclose(self):
        pass


class ListingMemory(_Listing):
    """Keeps every fact in the transcript (a perfect, if verbose, memory); counts and records its calls,
    waits `delay`, and fails when asked to."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.delay, self.fail, self.calls, self.views = delay, fail, 0, []

    async def summarize(self, messages):
        self.calls += 1
        self.views.append(messages)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("memory server down")
        return await super().summarize(messages)


class ForgetfulMemory(ListingMemory):
    async def summarize(self, messages):
        await super().summarize(messages)
        return "nothing to keep."


def agent_app(agent: ReadingAgent, received: list):
    """An OpenAI-compatible server around ReadingAgent that records the messages it is sent."""
    import json
    import time

    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "reading-agent", "object": "model", "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        received.append(body["messages"])
        c = await agent.chat(body["messages"])
        base = {"id": "x", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            return {
                **base,
                "object": "chat.completion",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": c.text}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": 5,
                    "total_tokens": c.prompt_tokens + 5,
                },
            }

        def events():
            for piece in (c.text[:8], c.text[8:]):
                delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [delta]})}\n\n"
            end = {"index": 0, "delta": {}, "finish_reason": "stop"}
            yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [end]})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class RawServer:
    """A loopback TCP server run in a thread, for upstreams that misbehave below HTTP.

    `handle(conn)` gets each accepted socket; `hung()` accepts and never answers (a hung, not dead,
    server); `dying_stream()` starts an SSE response, sends one event and half of the next, then closes
    the connection (an agent server that crashes mid-stream).
    """

    def __init__(self, handle):
        import socket
        import threading

        self.handle, self.conns = handle, []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.conns.append(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()
        for c in self.conns:
            c.close()

    @classmethod
    def hung(cls):
        return cls(lambda conn: None)  # the connection stays open; nothing is ever read or sent

    @classmethod
    def dying_stream(cls):
        import json

        def handle(conn):
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            while len(body) < length:
                body += conn.recv(65536)
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
            chunk["choices"] = [{"index": 0, "delta": {"content": "think: "}, "finish_reason": None}]
            event = f"data: {json.dumps(chunk)}\n\n".encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            for part in (event, event[:20]):  # one whole event, then half of the next
                conn.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            conn.close()  # no terminating chunk: the agent died

        return cls(handle)

"""HTTP pieces shared by tenfold's OpenAI-compatible servers (`tenfold serve`, the CoMem proxy).

- `openai_error`: the OpenAI error body {"error": {"message", "type", "param", "code"}} as a response.
- `sse_error`: the same body as one server-sent event (an error after a stream began).
- `parse_json_body`: request bytes -> a JSON object, every client mistake (invalid UTF-8, lone
  surrogates, deep nesting, NaN/Infinity, not an object) a 400 `APIError` instead of a 500.
"""

from __future__ import annotations

import json
import logging
import secrets

from fastapi.responses import JSONResponse

log = logging.getLogger("tenfold.http")

MAX_JSON_DEPTH = 64  # no OpenAI request nests deeper than ~6; 10,000 deep would blow Python's stack


class APIError(Exception):
    """An error answered in the OpenAI shape with this HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_


def error_body(message: str, type_: str = "invalid_request_error", param=None, code=None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def openai_error(
    status: int, message: str, param=None, code=None, type_: str = "invalid_request_error"
) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def install_openai_errors(app) -> None:
    """Answer `APIError` and Starlette's HTTP errors (unknown route, wrong method) in the OpenAI shape."""
    from starlette.exceptions import HTTPException

    async def api_error(_request, exc: APIError):
        return openai_error(exc.status, exc.message, exc.param, exc.code, exc.type)

    async def http_error(_request, exc: HTTPException):
        return openai_error(exc.status_code, str(exc.detail), code=str(exc.status_code))

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(HTTPException, http_error)


def sse_error(message: str, type_: str = "server_error") -> str:
    return f"data: {json.dumps(error_body(message, type_))}\n\n"


def _depth(raw: str) -> int:
    """Deepest bracket nesting outside strings (a linear scan: cheaper than a recursive parse)."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in raw:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (JSON numbers must be finite)")


def _has_lone_surrogate(obj) -> bool:
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(obj, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_lone_surrogate(v) for v in obj)
    return False


def parse_json_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict:
    """Decode a request body into a JSON object; any client mistake raises a 400 `APIError`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(400, f"request body is not valid UTF-8: {exc}") from exc
    # the scans below only when they can find something: fewer brackets than the limit cannot nest
    # deeper, and a lone surrogate can only come from a \uD8xx-\uDFxx escape (the text is valid UTF-8)
    if text.count("[") + text.count("{") > max_depth and _depth(text) > max_depth:
        raise APIError(400, f"request body nests deeper than {max_depth} levels")
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise APIError(400, f"request body must be a JSON object, got {type(body).__name__}")
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(
        body
    ):  # "\ud800" parses, but is no character: no tokenizer can take it
        raise APIError(400, "request body contains a lone UTF-16 surrogate (\\ud800-\\udfff), not text")
    return body


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_allowed(host_header: str, allowed: tuple[str, ...]) -> bool:
    """Whether a Host header (`name`, `name:port`, `[v6]:port`) names one of `allowed`."""
    h = host_header.strip().lower()
    if h.startswith("["):  # [::1]:8000
        h = h[1 : h.find("]")] if "]" in h else h
    elif h.count(":") == 1:
        h = h.split(":")[0]
    return h in allowed


class Guard:
    """Pure-ASGI middleware in front of an OpenAI-compatible app: what must hold before any endpoint runs,
    and a last line of defence after it.

    - `allowed_hosts`: when set (a server bound to loopback), a request whose Host header names another
      host is refused (421). A web page the user opens cannot then reach the server by DNS rebinding.
    - `api_key`: `/v1/*` needs `Authorization: Bearer <key>` (401 otherwise), as vLLM's `--api-key`.
    - POST bodies must be declared `application/json` (415): browsers send `text/plain` cross-origin
      without asking, JSON they must ask for (a CORS preflight, which this server never grants).
    - bodies larger than `max_body_bytes` are refused (413) from their Content-Length, before reading.
    - an unexpected exception becomes a 500 in the OpenAI shape and is not re-raised, so the server
      keeps the client's kept-alive connection (Starlette's outermost handler would reset it).
    `on_response(path, status)` is called once per answered request (metrics).
    """

    def __init__(
        self,
        app,
        api_key: str | None = None,
        allowed_hosts: tuple[str, ...] | None = None,
        max_body_bytes: int | None = None,
        on_response=None,
    ):
        self.app, self.api_key, self.allowed_hosts = app, api_key, allowed_hosts
        self.max_body_bytes, self.on_response = max_body_bytes, on_response

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, status = scope.get("path", ""), [None]

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        async def refuse(code: int, message: str, type_: str, err_code: str | None = None):
            response = openai_error(code, message, code=err_code, type_=type_)
            await response(scope, receive, send_tracked)

        try:
            problem = self._check(scope)
            if problem is not None:
                await refuse(*problem)
            else:
                await self.app(scope, receive, send_tracked)
        except Exception as exc:  # noqa: BLE001 - the last line: answer, log, keep serving
            log.exception("unexpected error on %s", path)
            if status[0] is None:
                await refuse(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")
        finally:
            if self.on_response is not None:
                self.on_response(path, status[0] or 499)  # no response: the client went away

    def _check(self, scope) -> tuple | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed_hosts is not None and not host_allowed(headers.get("host", ""), self.allowed_hosts):
            return (421, f"host {headers.get('host', '')!r} is not served here", "invalid_request_error")
        path = scope.get("path", "")
        if self.api_key is not None and path.startswith("/v1/"):
            auth = headers.get("authorization", "")
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not given or not secrets.compare_digest(given.encode(), self.api_key.encode()):
                return (
                    401,
                    "invalid or missing API key (Authorization: Bearer ...)",
                    "invalid_request_error",
                    "invalid_api_key",
                )
        if scope.get("method") == "POST":
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return (
                    415,
                    f"request body must be application/json, got {ctype or 'no content type'!r}",
                    "invalid_request_error",
                )
            length = headers.get("content-length")
            if self.max_body_bytes is not None and length is not None:
                try:
                    too_big = int(length) > self.max_body_bytes
                except ValueError:
                    return (400, f"bad Content-Length {length!r}", "invalid_request_error")
                if too_big:
                    return (
                        413,
                        f"request body is {int(length)} bytes; the limit is {self.max_body_bytes}",
                        "invalid_request_error",
                    )
        return None


async def read_body(request, limit: int | None) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes (also without Content-Length)."""
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if limit is not None and size > limit:
            raise APIError(413, f"request body is larger than the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)

"""HTTP pieces shared by tenfold's OpenAI-compatible servers (`tenfold serve`, the CoMem proxy).

- `openai_error`: the OpenAI error body {"error": {"message", "type", "param", "code"}} as a response.
- `sse_error`: the same body as one server-sent event (an error after a stream began).
- `parse_json_body`: request bytes -> a JSON object, every client mistake (invalid UTF-8, lone
  surrogates, deep nesting, NaN/Infinity, not an object) a 400 `APIError` instead of a 500.
"""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse

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
    if _depth(text) > max_depth:
        raise APIError(400, f"request body nests deeper than {max_depth} levels")
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise APIError(400, f"request body must be a JSON object, got {type(body).__name__}")
    if _has_lone_surrogate(body):  # "\ud800" parses, but is no character: no tokenizer can take it
        raise APIError(400, "request body contains a lone UTF-16 surrogate (\\ud800-\\udfff), not text")
    return body


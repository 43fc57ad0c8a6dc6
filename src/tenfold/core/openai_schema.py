"""Typed request bodies of `tenfold serve`, strict where the OpenAI API is strict.

Types are strict (no coercion): `max_tokens: "4"` or `true`, `temperature: "0.5"` and `stream: "yes"`
are refused with a 400, as OpenAI refuses them. Unknown fields are ignored (as vLLM does; clients send
`user`, `metadata`, ...), but fields whose meaning we do not implement are refused rather than ignored
(`tools`, `response_format` other than text, `suffix`, `best_of` > n, ...): a client that asked for
JSON mode must not silently get free text. These schemas are what `/openapi.json` publishes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tenfold.core.http import APIError
from tenfold.core.sampler import MAX_TOP_LOGPROBS

_STRICT = ConfigDict(extra="ignore", strict=True)
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class ThinkingCutoffOption(BaseModel):
    """tenfold's extension `thinking_cutoff`: T2PO's thinking intervention for this request
    (`tenfold.core.thinking.ThinkingCutoff`; omitted fields take its defaults)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # a misspelt knob must not pass silently
    alpha: float = Field(0.6, ge=0.0, le=1.0)
    eps: float = Field(1e-4, ge=0.0)
    patience: int = Field(20, ge=1)
    budget: int | None = Field(200, ge=0)
    cut: bool = True
    min_position: int = Field(0, ge=0)
    end_outside: bool = True
    reset_at_tags: bool = False


class _Common(BaseModel):
    model_config = _STRICT
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, max_length=4)
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)  # torch generators' range (n > 1 adds the index)
    frequency_penalty: Penalty = 0.0
    presence_penalty: Penalty = 0.0
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = Field(None, max_length=300)
    ignore_eos: bool = False  # vLLM's extension: decode exactly max_tokens tokens
    thinking_cutoff: ThinkingCutoffOption | None = None  # tenfold's extension (see server docstring)

    # refused, not ignored: we do not do what they ask
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None

    def check_supported(self) -> None:
        for name in ("tools", "functions"):
            if getattr(self, name):
                raise APIError(400, f"`{name}` (function calling) is not supported by this server", name)
        for name in ("tool_choice", "function_call"):
            v = getattr(self, name)
            if v is not None and v not in ("none", "auto"):
                raise APIError(400, f"`{name}` is not supported by this server (no tools)", name)
        fmt = self.response_format
        if fmt is not None and fmt.get("type") != "text":
            raise APIError(
                400,
                f"response_format type {fmt.get('type')!r} is not supported by this server (only 'text')",
                "response_format",
            )
        if self.stream_options is not None and not self.stream:
            raise APIError(400, "stream_options is only allowed when stream is true", "stream_options")

    def bias_ids(self, vocab_size: int) -> dict[int, float] | None:
        """`logit_bias` keyed by token id (JSON keys are strings), each id checked against the vocabulary."""
        if not self.logit_bias:
            return None
        out = {}
        for key, value in self.logit_bias.items():
            try:
                tok = int(key)
            except ValueError:
                raise APIError(400, f"logit_bias keys must be token ids, got {key!r}", "logit_bias") from None
            if not 0 <= tok < vocab_size:
                raise APIError(400, f"logit_bias token id {tok} is outside [0, {vocab_size})", "logit_bias")
            out[tok] = float(value)
        return out


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)  # the OpenAI default for completions
    logprobs: int | None = Field(None, ge=0, le=5)  # the legacy API's cap
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)

    def check_supported(self) -> None:
        super().check_supported()
        if self.suffix:
            raise APIError(400, "`suffix` (insertion) is not supported by this server", "suffix")
        if self.best_of is not None and self.best_of != self.n:
            raise APIError(400, "`best_of` other than n is not supported by this server", "best_of")


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The message's text (OpenAI content parts are concatenated)."""
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    def check_supported(self) -> None:
        super().check_supported()
        if self.top_logprobs and not self.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", "top_logprobs")

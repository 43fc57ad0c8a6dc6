"""The counters behind `tenfold serve`'s `GET /metrics`, rendered in the Prometheus text format.

The server's own counters (responses by path and status, prompt tokens, disconnects) live here and are
updated on the event loop; the engine's (tokens, running/waiting sequences, steps) are read from
`Engine.stats` at render time, so the two never disagree about what the engine did.
"""

from __future__ import annotations

from collections import Counter

# Paths counted by name; any other path (a typo, a scanner) is counted as "other", so the label set stays small.
KNOWN_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")


class Metrics:
    """Counters for `/metrics` (Prometheus text format), updated on the event loop."""

    def __init__(self):
        self.responses: Counter[tuple[str, int]] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.disconnects = 0

    def on_response(self, path: str, status: int) -> None:
        self.responses[(path if path in KNOWN_PATHS else "other", status)] += 1

    def render(self, engine, extra: dict[str, float]) -> str:
        """The text of `/metrics`: ours, then `engine.stats`, then `extra` (e.g. the prefill plug-in's)."""
        lines = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.extend([f"# HELP tenfold_{name} {help_}", f"# TYPE tenfold_{name} {kind}"])
            lines.extend(f"tenfold_{name}{labels} {value:g}" for labels, value in samples)

        metric(
            "http_responses_total",
            "counter",
            "HTTP responses by path and status (499: the client left first)",
            [(f'{{path="{p}",status="{s}"}}', n) for (p, s), n in sorted(self.responses.items())],
        )
        errors = sum(n for (_, s), n in self.responses.items() if s >= 500)
        metric("http_server_errors_total", "counter", "5xx responses", [("", errors)])
        metric(
            "prompt_tokens_total", "counter", "prompt tokens of accepted requests", [("", self.prompt_tokens)]
        )
        metric("generation_tokens_total", "counter", "tokens generated", [("", engine.stats["tokens"])])
        metric(
            "requests_disconnected_total",
            "counter",
            "non-streamed requests whose client left first",
            [("", self.disconnects)],
        )
        stats = engine.stats
        metric("sequences_running", "gauge", "sequences in the decode batch", [("", stats["running"])])
        metric("sequences_waiting", "gauge", "sequences queued for the batch", [("", stats["waiting"])])
        metric(
            "sequences_aborted_total", "counter", "sequences stopped (client gone)", [("", stats["aborted"])]
        )
        metric("sequences_failed_total", "counter", "sequences ended by an error", [("", stats["failed"])])
        metric("engine_steps_total", "counter", "decode steps", [("", stats["steps"])])
        for name, value in sorted(extra.items()):
            metric(
                name,
                "gauge" if not name.endswith("_total") else "counter",
                name.replace("_", " "),
                [("", value)],
            )
        return "\n".join(lines) + "\n"

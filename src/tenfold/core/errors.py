"""Exceptions with messages that name the bad value and what is accepted.

The CLI turns any `TenfoldError` into a one-line message and exit status 2; the server turns it into
a 4xx JSON error in the OpenAI error shape.
"""


def one_line(exc: BaseException | str, limit: int = 400) -> str:
    """An error's text on one line (the CLI prints one line per error), cut at `limit` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TenfoldError(ValueError):
    """Base class for user-facing errors (bad input, bad configuration)."""


class UnknownModelError(TenfoldError):
    """A model name that is neither a trained model (tenfold-base), a preset nor a local checkpoint directory."""


class ContextLengthError(TenfoldError):
    """A prompt (plus requested new tokens) that does not fit in the model's context window."""


class CheckpointError(TenfoldError):
    """A checkpoint directory that is missing files or holds inconsistent data."""

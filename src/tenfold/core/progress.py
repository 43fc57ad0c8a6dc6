"""Rich progress bars that switch themselves off when output is not a terminal or `quiet` is set."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None, task_id):
        self._p, self._id = progress, task_id

    def advance(self, n: int = 1, **fields) -> None:
        if self._p is not None:
            info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            self._p.update(self._id, advance=n, info=info)


@contextmanager
def progress_bar(description: str, total: int | None, quiet: bool = False):
    """`with progress_bar("train", total=500) as bar: bar.advance(1, loss=0.3)`."""
    if quiet or not sys.stderr.isatty():
        yield _Bar(None, None)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, transient=False) as p:
        yield _Bar(p, p.add_task(description, total=total, info=""))

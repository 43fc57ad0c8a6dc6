"""Cache of trained artefacts under `$TENFOLD_CACHE` (default `~/.cache/tenfold`).

An artefact (say, a tiny model trained on a generated task) is keyed by a hash of its training config
and its data generator's version, so changing either retrains and old entries are never served for a
new recipe. Entries are built in a temporary directory and renamed into place, so a crash mid-training
leaves no half-written entry; two processes building the same entry both succeed (the last rename wins).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tenfold.core.io import atomic_write_text

DONE_FILE = "artefact.json"


def cache_root() -> Path:
    return Path(os.environ.get("TENFOLD_CACHE", Path.home() / ".cache" / "tenfold")).expanduser()


def artefact_key(kind: str, config: dict, version: str) -> str:
    blob = json.dumps({"kind": kind, "config": config, "version": version}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def cached_artefact(
    kind: str, config: dict, version: str, build: Callable[[Path], None], retrain: bool = False
) -> Path:
    """Directory of the artefact; calls `build(tmp_dir)` to create it when missing (or `retrain`)."""
    path = cache_root() / artefact_key(kind, config, version)
    if (path / DONE_FILE).is_file() and not retrain:
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        atomic_write_text(
            tmp / DONE_FILE, json.dumps({"kind": kind, "config": config, "version": version}, default=str)
        )
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        try:
            tmp.rename(path)
        except OSError:  # another process won the race with an identical artefact
            if not (path / DONE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path

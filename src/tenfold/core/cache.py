"""Trained artefacts: shipped with the repo, cached under `$TENFOLD_CACHE`, or trained on first use.

An artefact (say, a tiny model trained on a generated task) is keyed by a hash of its training config
and its data generator's version, so changing either gives a new key and an old entry is never served
for a new recipe. `cached_artefact` looks in three places, in this order:

1. the shipped folder (`artefacts/` at the repo root, or `$TENFOLD_ARTEFACTS`): read-only entries listed
   in its `manifest.json` with each file's size and sha256, verified once per process. A damaged entry
   is reported in one line and skipped; a shipped entry whose key no longer matches the recipe is stale,
   reported in one line (which fields changed, how long a rebuild takes) and never served;
2. the user cache (`$TENFOLD_CACHE`, default `~/.cache/tenfold`);
3. training: `build(tmp_dir)` in a temporary directory renamed into place, so a crash mid-training leaves
   no half-written entry; two processes building the same entry both succeed (the last rename wins).
   An interrupted build's directory is kept (hidden, named by its process id); the next build of the
   same key adopts it, so trainers that keep step checkpoints resume instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tenfold.core.errors import TenfoldError, one_line
from tenfold.core.io import atomic_write_text, file_sha256

DONE_FILE = "artefact.json"
MANIFEST_FILE = "manifest.json"


class ArtefactError(TenfoldError):
    """A trained artefact that cannot be found, verified, built or stored."""


def cache_root() -> Path:
    return Path(os.environ.get("TENFOLD_CACHE", Path.home() / ".cache" / "tenfold")).expanduser()


def shipped_root() -> Path:
    """The folder of artefacts shipped with the code (read-only at run time)."""
    env = os.environ.get("TENFOLD_ARTEFACTS")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[3] / "artefacts"


def artefact_key(kind: str, config: dict, version: str) -> str:
    blob = json.dumps({"kind": kind, "config": config, "version": version}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def notice(msg: str) -> None:
    """One line on stderr: what the artefact look-up decided (training, a damaged or stale entry)."""
    print(f"[artefacts] {msg}", file=sys.stderr, flush=True)


# seconds spent in builds so far in this process: a build's own time leaves out its first stages'
_build_clock = {"seconds": 0.0}


def machine() -> str:
    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    threads = torch.get_num_threads()
    return (
        f"{os.cpu_count()} CPU cores ({platform.machine()}){gpu}, "
        f"{threads} torch thread{'s' if threads != 1 else ''}, torch {torch.__version__}"
    )


# ---- the shipped folder -------------------------------------------------------------------------


def read_manifest(root: Path | None = None) -> dict[str, dict]:
    """{key: entry} of the shipped folder; {} when there is none. Raises ArtefactError when the
    manifest exists but cannot be used."""
    path = (root or shipped_root()) / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtefactError(f"cannot read {path}: {one_line(exc)}") from exc
    entries = data.get("artefacts") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("files"), dict) and isinstance(e.get("kind"), str)
        for e in entries.values()
    ):
        raise ArtefactError(
            f"{path} is not a manifest: expected {{'artefacts': {{key: {{kind, files, ...}}}}}}"
        )
    return entries


def check_files(entry_dir: Path, files: dict[str, dict], hashes: bool = True) -> str | None:
    """None when every listed file is present with its size (and sha256); else what is wrong."""
    for rel, rec in files.items():  # cheap checks first: a missing or truncated file is named at once
        f = entry_dir / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            return f"file name {rel!r} leaves the entry"
        if not f.is_file():
            return f"{rel} is missing"
        if f.stat().st_size != rec.get("size"):
            return f"{rel} has {f.stat().st_size} bytes, the manifest says {rec.get('size')}"
    if hashes:
        for rel, rec in files.items():
            if file_sha256(entry_dir / rel) != rec.get("sha256"):
                return f"{rel} does not match its sha256 (changed or damaged)"
    return None


_manifest_memo: dict[Path, dict[str, dict] | None] = {}
_verified: dict[Path, str | None] = {}  # entry dir -> None (good) or the problem, once per process
_told: set[str] = set()


def forget_shipped() -> None:
    """Drop what this process remembers of the shipped folder (after it was rewritten, or in tests)."""
    _manifest_memo.clear()
    _verified.clear()
    _told.clear()


def _tell_once(tag: str, msg: str) -> None:
    if tag not in _told:
        _told.add(tag)
        notice(msg)


def shipped_manifest() -> dict[str, dict]:
    """The shipped manifest, read once per process; a manifest that cannot be read is reported once
    and the shipped folder ignored (look-ups go on to the user cache)."""
    root = shipped_root()
    if root not in _manifest_memo:
        try:
            _manifest_memo[root] = read_manifest(root)
        except ArtefactError as exc:
            _tell_once(f"manifest:{root}", f"{exc}; shipped artefacts are ignored")
            _manifest_memo[root] = None
    return _manifest_memo[root] or {}


def shipped_entry(key: str) -> Path | None:
    """The verified shipped directory of `key`, or None (not shipped, or damaged: said once)."""
    entry = shipped_manifest().get(key)
    if entry is None:
        return None
    path = shipped_root() / key
    if path not in _verified:
        _verified[path] = check_files(path, entry["files"])
    problem = _verified[path]
    if problem is not None:
        _tell_once(
            f"damaged:{key}",
            f"shipped artefact {entry.get('name', key)} ({key}) is damaged: {problem}; "
            f"not using it ({rebuild_hint(entry)})",
        )
        return None
    return path


def rebuild_hint(entry: dict) -> str:
    seconds = entry.get("build_seconds")
    took = (
        f"about {seconds / 60:.0f} min on {entry.get('built_on', 'the build machine')}"
        if seconds
        else "time unknown"
    )
    return f"a rebuild takes {took}: {entry.get('rebuild', 'tenfold artefacts build --ship')}"


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The recipe fields that differ, as 'field: old -> new'."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif json.dumps(a, default=str) != json.dumps(b, default=str):
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def _report_stale(kind: str, config: dict, version: str, key: str) -> None:
    """Say once per name when a shipped entry of this kind is not today's recipe of its name."""
    from tenfold.core.artefacts import RECIPES  # the registry, filled by the system that asks

    for old_key, entry in shipped_manifest().items():
        recipe = RECIPES.get(entry.get("name", ""))
        if entry["kind"] != kind or recipe is None or old_key == key:
            continue
        today = recipe.artefact()
        if today.key != key:  # this look-up is not for the registered recipe (a first stage, say)
            continue
        changes = config_diff(entry.get("config", {}), config)
        if entry.get("version") != version:
            changes.append(f"data version: {entry.get('version')!r} -> {version!r}")
        _tell_once(
            f"stale:{old_key}",
            f"shipped artefact {entry['name']} is stale (recipe changed: {'; '.join(changes[:4]) or 'key'}); "
            f"training it into the user cache, {rebuild_hint(entry)}",
        )


# ---- the look-up ----------------------------------------------------------------------------------


def cached_artefact(
    kind: str,
    config: dict,
    version: str,
    build: Callable[[Path], object],
    retrain: bool = False,
    shipped: bool = True,
) -> Path:
    """Directory of the artefact: the shipped entry, else the user cache entry, else `build(tmp_dir)`
    into the user cache (always with `retrain`; `shipped=False` skips the shipped folder)."""
    key = artefact_key(kind, config, version)
    if shipped and not retrain:
        found = shipped_entry(key)
        if found is not None:
            return found
    path = cache_root() / key
    if (path / DONE_FILE).is_file() and not retrain:
        return path
    if shipped and not retrain:
        _report_stale(kind, config, version, key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    leftovers = _interrupted_builds(path)  # newest first
    for old in leftovers[0 if retrain else 1 :]:  # --retrain starts afresh; only the newest is resumed
        shutil.rmtree(old, ignore_errors=True)
    leftover = None if retrain or not leftovers else leftovers[0]
    if leftover is not None:
        notice(f"resuming an interrupted build of {key} (its checkpoints are kept) in {cache_root()}")
    else:
        notice(f"training {key} into {cache_root()}" + (" (--retrain)" if retrain else ""))
    try:
        if leftover is not None and leftover != tmp:
            try:
                leftover.rename(tmp)
            except FileNotFoundError:  # another process took it over first: start afresh
                leftover = None
        if leftover is None:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtefactError(
            f"cannot write the artefact cache {cache_root()} ({one_line(exc)}); "
            "set TENFOLD_CACHE to a writable directory"
        ) from exc
    t0, nested0 = time.perf_counter(), _build_clock["seconds"]
    build(tmp)  # on failure tmp stays, for the next build of this key to resume from
    try:
        elapsed = time.perf_counter() - t0
        first_stages = _build_clock["seconds"] - nested0  # artefacts this build built on its way
        _build_clock["seconds"] = nested0 + elapsed  # what an enclosing build counts as its first stages
        record = {"kind": kind, "config": config, "version": version}
        record |= {"build_seconds": round(elapsed - first_stages, 1), "built_on": machine()}
        if first_stages:
            record["first_stages_seconds"] = round(first_stages, 1)
        atomic_write_text(tmp / DONE_FILE, json.dumps(record, default=str))
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


def _interrupted_builds(path: Path) -> list[Path]:
    """Build directories of this entry left by processes that are gone (or by this process, from a
    build that raised), newest first. A live process's directory is its own: never taken."""
    found = []
    for d in path.parent.glob(f".{path.name}.*.tmp"):
        pid = d.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            found.append(d)
    return sorted(found, key=lambda d: d.stat().st_mtime, reverse=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@dataclass(frozen=True)
class Artefact:
    """One trained artefact: what identifies it (kind, recipe config, data version) and how it is built."""

    kind: str
    config: dict
    version: str
    build: Callable[[Path], object]

    @property
    def key(self) -> str:
        return artefact_key(self.kind, self.config, self.version)

    def path(self, retrain: bool = False, shipped: bool = True) -> Path:
        return cached_artefact(self.kind, self.config, self.version, self.build, retrain, shipped)

    def available(self) -> str | None:
        """'shipped' or 'cache' when the look-up would find it without training, else None."""
        if shipped_entry(self.key) is not None:
            return "shipped"
        return "cache" if (cache_root() / self.key / DONE_FILE).is_file() else None

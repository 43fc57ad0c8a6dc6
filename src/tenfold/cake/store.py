"""A disk-backed prefix KV store: one safetensors file per fixed-size token chunk.

Keys form a hash chain: chunk i's key hashes chunk i-1's key with chunk i's tokens, and chunk 0's
"previous key" hashes the model fingerprint and the chunk size. A stored chunk is therefore reused
only after the identical prefix, by the identical model.

Each file is a valid safetensors file (tensors `k.<layer>` / `v.<layer>`, shape kv_heads x tokens x
head_dim) whose metadata carries the chunk key and a CRC-32 of the tensor bytes. A read checks the
header against the shape the caller expects, the file length and the checksum; a chunk failing any
check, or that cannot be read or parsed at all, is corrupt: it is deleted, counted, logged and
reported as missing, so the caller recomputes it and never serves it.

Writes are atomic (unique temporary file, fsync, rename), so two processes writing the same prefix
race harmlessly: each rename installs a complete file. The store keeps under `max_bytes` by deleting
least-recently-used chunks (recency = file mtime, refreshed on every hit, so it is shared between
processes). Reads can bypass the page cache (posix_fadvise DONTNEED before reading) so that a
benchmark measures the storage device, and can be paced by a `Throttle` to emulate a slower tier.

Ownership: the store deletes only files it wrote. Its root holds a marker file (`MARKER`, naming the
format), written when the store is created, and only files of the store's own name patterns are
ever counted or deleted: `<2 hex>/<64 hex>.safetensors` under the subdirectory named by the key's
first two digits, and its temporary files `<2 hex>/.<64 hex>.<pid>.<hex>.tmp`. Anything else in the
tree (a model saved into a subfolder, notes, symlinks) is never counted in the store's size and never
touched. An existing directory without a marker is adopted (the marker is written) only when it holds
nothing but such files; otherwise, or when the marker names another format, the store is read-only:
stored chunks are served, but nothing is written, evicted or deleted, and `clear` raises.

Temporary files of writers that died (the writer's pid on this machine is no longer alive, or the file
is older than `_STALE_TMP_S`) are removed whenever the store scans its files: on open, on eviction,
on `clear` and `usage`. A live writer's temporary file is never removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import stat
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tenfold.core.errors import TenfoldError

log = logging.getLogger("tenfold.cake.store")

FORMAT = "tenfold-kv-1"
SUFFIX = ".safetensors"
MARKER = ".tenfold-kv-store"  # in the store's root; its first line is FORMAT
_MARKER_TEXT = (
    f"{FORMAT}\n"
    "This directory is a tenfold prefix KV store. Files named <2 hex>/<64 hex>.safetensors and\n"
    "<2 hex>/.<64 hex>.<pid>.<hex>.tmp in it may be deleted at any time; other files are never touched.\n"
)
_SUBDIR_RE = re.compile(r"[0-9a-f]{2}")
_CHUNK_RE = re.compile(r"([0-9a-f]{64})\.safetensors")
_TMP_RE = re.compile(r"\.([0-9a-f]{64})\.([0-9]{1,20})\.([0-9a-f]{8,32})\.tmp")
_MARKER_TMP_RE = re.compile(re.escape(MARKER) + r"\.([0-9]{1,20})\.([0-9a-f]{8,32})\.tmp")
# which machine wrote a temporary file: its pid is only meaningful on that machine (a store may be
# shared over a network file system)
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_MAX_HEADER = 1 << 24  # bytes of JSON header a chunk may have
_KEEP_CORRUPT_KEYS = 64  # StoreStats.corrupt_keys keeps the most recent ones
_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
}
_FROM_NAME = {v: k for k, v in _DTYPES.items()}
_STALE_TMP_S = 3600.0  # a temporary file this old belongs to a writer that died


def tmp_name(key: str, pid: int | None = None) -> str:
    """The name of a writer's temporary file for chunk `key`: `.<key>.<pid>.<host tag><random>.tmp`."""
    return f".{key}.{os.getpid() if pid is None else pid}.{HOST_TAG}{uuid.uuid4().hex[:8]}.tmp"


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False  # no writer has such a pid; and kill(0 or -1, ...) would address process groups
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no cheap check: rely on the age rule
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    except (OverflowError, ValueError):
        return False  # not a pid at all
    except OSError:
        return True  # unknown: keep the file (the age rule still applies)
    return True


def _stale_tmp(pid: int, tag: str, mtime: float, now: float) -> bool:
    """A temporary file is stale when it is older than `_STALE_TMP_S`, or when it was written on this
    machine (host tag) by a process that no longer exists."""
    if now - mtime > _STALE_TMP_S:
        return True
    return len(tag) == 16 and tag[:8] == HOST_TAG and not _pid_alive(pid)


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes} B" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""


class CorruptChunk(Exception):
    """A stored chunk that failed a check (internal: `KVStore.get` turns it into a miss)."""


@dataclass(frozen=True)
class ChunkSpec:
    """The shape every tensor of a chunk must have: layers x (K, V) of (kv_heads, tokens, head_dim)."""

    layers: int
    kv_heads: int
    tokens: int
    head_dim: int
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return 2 * self.layers * self.kv_heads * self.tokens * self.head_dim * self.dtype.itemsize


def prefix_keys(
    fingerprint: str, tokens: list[int], chunk_tokens: int, n_chunks: int | None = None
) -> list[str]:
    """Hash-chain keys of the first `n_chunks` full chunks of `tokens` (default: every full chunk)."""
    if chunk_tokens <= 0:
        raise TenfoldError(f"chunk_tokens must be positive, got {chunk_tokens}")
    full = len(tokens) // chunk_tokens
    n = full if n_chunks is None else n_chunks
    if not 0 <= n <= full:
        raise TenfoldError(f"n_chunks={n_chunks} is outside 0..{full} for {len(tokens)} tokens")
    prev = hashlib.sha256(f"{FORMAT}|{fingerprint}|{chunk_tokens}".encode()).digest()
    keys = []
    for i in range(n):
        chunk = tokens[i * chunk_tokens : (i + 1) * chunk_tokens]
        prev = hashlib.sha256(prev + struct.pack(f"<{len(chunk)}q", *chunk)).digest()
        keys.append(prev.hex())
    return keys


def encode_chunk(key: str, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> bytes:
    """Serialise one chunk (per layer (K, V), each kv_heads x tokens x head_dim) as safetensors bytes."""
    header: dict = {}
    blobs: list[bytes] = []
    offset = 0
    for layer, (k, v) in enumerate(kv):
        for name, t in ((f"k.{layer}", k), (f"v.{layer}", v)):
            if t.dtype not in _DTYPES:
                raise TenfoldError(f"cannot store KV of dtype {t.dtype}; supported: {list(_DTYPES)}")
            # bfloat16 has no numpy dtype: view the raw bytes as int16 first
            raw = t.detach().to("cpu").contiguous()
            data = (
                raw.view(torch.int16).numpy().tobytes()
                if t.dtype == torch.bfloat16
                else raw.numpy().tobytes()
            )
            header[name] = {
                "dtype": _DTYPES[t.dtype],
                "shape": list(t.shape),
                "data_offsets": [offset, offset + len(data)],
            }
            blobs.append(data)
            offset += len(data)
    body = b"".join(blobs)
    header["__metadata__"] = {"format": FORMAT, "key": key, "crc32": f"{zlib.crc32(body):08x}"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8-byte alignment
    return struct.pack("<Q", len(text)) + text + body


def decode_chunk(
    buf: bytearray | bytes, key: str, spec: ChunkSpec
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Check and parse a chunk file's bytes; the tensors share `buf`'s memory. Raises CorruptChunk
    for any file that is not exactly a chunk `key` of shape `spec` written by `encode_chunk`."""
    if len(buf) < 8:
        raise CorruptChunk(f"file of {len(buf)} bytes is too short")
    (hlen,) = struct.unpack("<Q", bytes(buf[:8]))
    if hlen > len(buf) - 8 or hlen > _MAX_HEADER:
        raise CorruptChunk(f"header length {hlen} exceeds the file ({len(buf)} bytes)")
    try:
        header = json.loads(bytes(buf[8 : 8 + hlen]))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CorruptChunk(f"header is not JSON: {type(exc).__name__}: {exc}") from exc
    if not isinstance(header, dict):
        raise CorruptChunk(f"header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict):
        raise CorruptChunk(f"header's __metadata__ is {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT or meta.get("key") != key:
        raise CorruptChunk("header names another format or key")
    names = [f"{kv}.{layer}" for layer in range(spec.layers) for kv in ("k", "v")]  # the file's order
    if set(header) != set(names):
        raise CorruptChunk(f"header holds tensors {sorted(header)[:8]}, expected k.0 .. v.{spec.layers - 1}")
    body = memoryview(buf)[8 + hlen :]
    want = spec.nbytes
    if len(body) != want:
        raise CorruptChunk(f"tensor data is {len(body)} bytes, expected {want} (truncated?)")
    if f"{zlib.crc32(body):08x}" != meta.get("crc32"):
        raise CorruptChunk("checksum mismatch")
    shape = [spec.kv_heads, spec.tokens, spec.head_dim]
    per = want // len(names)  # bytes of one tensor
    tensors = []
    for i, name in enumerate(names):
        h = header[name]
        if not isinstance(h, dict):
            raise CorruptChunk(f"{name}'s header entry is {type(h).__name__}, not an object")
        dtype, dims, offsets = h.get("dtype"), h.get("shape"), h.get("data_offsets")
        if (
            not isinstance(dtype, str)
            or _FROM_NAME.get(dtype) != spec.dtype
            or not _ints(dims)
            or dims != shape
        ):
            raise CorruptChunk(f"{name} is {dtype!r} {dims!r}, expected {spec.dtype} {shape}")
        if not _ints(offsets) or offsets != [i * per, (i + 1) * per]:
            raise CorruptChunk(f"{name} has bad data offsets {offsets!r}")
        t = torch.frombuffer(body, dtype=spec.dtype, count=per // spec.dtype.itemsize, offset=i * per)
        tensors.append(t.view(shape))
    return [(tensors[2 * layer], tensors[2 * layer + 1]) for layer in range(spec.layers)]


def _ints(x) -> bool:
    """A JSON list of integers (not floats, not booleans)."""
    return isinstance(x, list) and all(type(v) is int for v in x)


class Throttle:
    """Paces reads to at most `gbps` gigabits per second (None: no limit), as the Cake paper emulated
    slower storage tiers: a chunk of b bytes takes at least b / bandwidth. The limit can be changed
    while a request is loading (`set_gbps`), to emulate bandwidth shifting mid-request."""

    def __init__(self, gbps: float | None = None):
        self._cond = threading.Condition()
        self.set_gbps(gbps)

    def set_gbps(self, gbps: float | None) -> None:
        if gbps is not None and not gbps > 0:
            raise TenfoldError(
                f"bandwidth must be a positive number of Gbps (or None for no limit), got {gbps}"
            )
        with self._cond:
            self.gbps = gbps
            self._cond.notify_all()  # transfers in flight continue at the new rate

    def wake(self) -> None:
        """Wake every paced transfer so it re-checks its cancel event."""
        with self._cond:
            self._cond.notify_all()

    def pace(self, nbytes: int, started: float, cancel: threading.Event | None = None) -> None:
        """Sleep until a transfer of `nbytes` that began at `started` (perf_counter) may complete, or
        `cancel` is set (then call `wake`). Progress accrues at the bandwidth of each moment."""
        left, last = nbytes * 8.0, started
        with self._cond:
            while self.gbps is not None and not (cancel is not None and cancel.is_set()):
                now = time.perf_counter()
                left -= (now - last) * self.gbps * 1e9
                last = now
                if left <= 0:
                    return
                # one wait per transfer unless the bandwidth changes: few wake-ups, little GIL traffic
                self._cond.wait(left / (self.gbps * 1e9))


@dataclass
class StoreStats:
    """Counters since the store was opened (plain attributes, for a server's /metrics)."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0  # chunks that failed a check or could not be read: dropped, recomputed
    puts: int = 0
    evictions: int = 0
    stale_tmp_removed: int = 0  # temporary files of dead writers deleted
    stale_tmp_bytes_removed: int = 0
    write_errors: int = 0  # puts that failed with an OSError (disk full, permissions, ...)
    bytes_read: int = 0
    read_seconds: float = 0.0
    corrupt_keys: list[str] = field(default_factory=list)  # the most recent ones


@dataclass
class StoreUsage:
    """What a scan of the store's directory found."""

    chunks: int = 0
    chunk_bytes: int = 0
    tmp_files: int = 0  # temporary files left in place: writers still running (or on another machine)
    tmp_bytes: int = 0
    foreign: int = 0  # entries that are not the store's files: never counted, never deleted


@dataclass
class _Scan:
    chunks: list[tuple[float, int, Path]] = field(default_factory=list)  # (mtime, size, path)
    tmp: list[tuple[bool, int, Path]] = field(default_factory=list)  # (stale, size, path)
    foreign: list[str] = field(default_factory=list)  # paths relative to the root


class KVStore:
    """Chunk files under `root`, at most `max_bytes` of them (None: unbounded), LRU-evicted.

    `bypass_page_cache` drops each file's cached pages before reading it so the device is measured,
    not RAM; `throttle` caps read bandwidth. Thread-safe, and safe for several processes sharing `root`.
    Only files of the store's own name patterns are ever deleted, and only in a directory it owns
    (`owned`; see the module docstring): otherwise it is read-only and `unowned_reason` says why.
    """

    def __init__(
        self,
        root: str | Path,
        max_bytes: int | None = None,
        bypass_page_cache: bool = True,
        throttle: Throttle | None = None,
    ):
        if max_bytes is not None and max_bytes <= 0:
            raise TenfoldError(f"max_bytes must be positive (or None for no cap), got {max_bytes}")
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise TenfoldError(f"KV store path {self.root} exists and is not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TenfoldError(f"cannot create the KV store directory {self.root}: {exc.strerror}") from exc
        self.max_bytes = max_bytes
        self.bypass_page_cache = bypass_page_cache and hasattr(os, "posix_fadvise")
        self.throttle = throttle or Throttle(None)
        self.stats = StoreStats()
        self._lock = threading.Lock()
        scan = self._scan()
        self.owned, self.unowned_reason = self._claim(scan)
        if not self.owned:
            log.warning(
                "KV store %s is used read-only (nothing is written, evicted or deleted): %s",
                self.root,
                self.unowned_reason,
            )
        self._settle(scan)
        self._approx_bytes: int | None = sum(size for _, size, _ in scan.chunks)  # refreshed by evict

    # ownership ---------------------------------------------------------------------------------------
    def _claim(self, scan: _Scan) -> tuple[bool, str | None]:
        """(owned, why not): a marker naming our format, or a directory holding only our files (then
        the marker is written)."""
        marker = self.root / MARKER
        try:
            with open(marker, "rb") as f:
                first = f.read(256).decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            first = None
        except OSError as exc:
            return False, f"its marker {MARKER} cannot be read ({exc.strerror})"
        if first is not None:
            name = first[0].strip() if first else ""
            if name == FORMAT:
                return True, None
            return False, f"its marker {MARKER} names the format {name!r}, not {FORMAT!r}"
        if scan.foreign:
            foreign = sorted(scan.foreign, key=lambda p: (p.count("/"), p))  # top-level entries first
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            return False, (
                f"it has no {MARKER} marker and holds {len(foreign)} "
                f"{'entry' if len(foreign) == 1 else 'entries'} the store did not "
                f"write ({shown}); use an empty or new directory, or move those out"
            )
        tmp = self.root / f"{MARKER}.{os.getpid()}.{HOST_TAG}{uuid.uuid4().hex[:8]}.tmp"
        try:
            tmp.write_text(_MARKER_TEXT, encoding="utf-8")
            os.replace(tmp, marker)  # atomic: a concurrent opener reads all of it or nothing
        except OSError as exc:
            return False, f"its marker {MARKER} cannot be written ({exc.strerror})"
        finally:
            tmp.unlink(missing_ok=True)
        return True, None

    def _remove(self, path: Path) -> bool:
        """Delete one of the store's files (the caller matched its name): only a regular file, only in
        an owned store. False if it was not deleted."""
        if not self.owned:
            return False
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return False  # a directory or symlink under our name: not something the store wrote
            os.unlink(path)
        except FileNotFoundError:
            return False  # another process removed it meanwhile
        except OSError as exc:
            log.warning("cannot delete %s: %s", path, exc.strerror)
            return False
        return True

    # paths -------------------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise TenfoldError(f"not a chunk key (64 lowercase hex digits): {key!r}")
        return self.root / key[:2] / (key + SUFFIX)

    def contains(self, key: str) -> bool:
        path = self.path(key)
        try:
            return path.is_file()
        except OSError:
            return False

    # reading -----------------------------------------------------------------------------------------
    def read_bytes(
        self, key: str, cancel: threading.Event | None = None, limit: int | None = None
    ) -> bytearray | None:
        """The raw file, read from the device (page cache dropped first) and paced; None if absent.
        Raises CorruptChunk for something that is not a regular file or is larger than `limit`."""
        started = time.perf_counter()
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path(key), flags)  # a FIFO must not block us, a symlink is not ours
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CorruptChunk("not a regular file")
            size = st.st_size
            if limit is not None and size > limit:
                raise CorruptChunk(f"file of {size} bytes is larger than a chunk can be ({limit})")
            if self.bypass_page_cache:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            buf = bytearray(size)
            view, got = memoryview(buf), 0
            while got < size:
                n = os.readv(fd, [view[got:]])
                if n == 0:
                    break
                got += n
            del view
            if got < size:
                del buf[got:]
        finally:
            os.close(fd)
        self.throttle.pace(len(buf), started, cancel)
        with self._lock:
            self.stats.bytes_read += len(buf)
            self.stats.read_seconds += time.perf_counter() - started
        return buf

    def get(
        self, key: str, spec: ChunkSpec, cancel: threading.Event | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """A stored chunk's per-layer (K, V), or None if it is absent or corrupt. Corrupt means anything
        that goes wrong reading or parsing it: the file is then deleted, counted and logged, so the
        caller recomputes it. `cancel` cuts the bandwidth pacing short (the caller no longer needs it)."""
        self.path(key)  # a bad key is the caller's error, not a corrupt chunk
        try:
            buf = self.read_bytes(key, cancel, limit=8 + _MAX_HEADER + spec.nbytes)
            kv = None if buf is None else decode_chunk(buf, key, spec)
        except Exception as exc:  # noqa: BLE001 - whatever makes a chunk unreadable makes it corrupt
            self._corrupt(key, exc)
            return None
        if kv is None:
            with self._lock:
                self.stats.misses += 1
            return None
        self._touch(key)
        with self._lock:
            self.stats.hits += 1
        return kv

    def _corrupt(self, key: str, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, CorruptChunk) else f"{type(exc).__name__}: {exc}"
        if len(reason) > 300:
            reason = reason[:300] + "..."
        dropped = self._remove(self.path(key))
        with self._lock:
            self.stats.corrupt += 1
            self.stats.corrupt_keys.append(key)
            del self.stats.corrupt_keys[:-_KEEP_CORRUPT_KEYS]
        if dropped:
            log.warning("dropped corrupt KV chunk %s (%s); it will be recomputed", key, reason)
        else:
            log.warning("corrupt KV chunk %s (%s) was not deleted; treated as missing", key, reason)

    def _touch(self, key: str) -> None:
        try:
            os.utime(self.path(key))  # LRU recency, visible to every process sharing the store
        except OSError:
            pass  # gone meanwhile, or not ours to touch: recency is only a hint

    # writing -----------------------------------------------------------------------------------------
    def put(self, key: str, kv: list[tuple[torch.Tensor, torch.Tensor]], overwrite: bool = False) -> bool:
        """Store a chunk atomically; False if it was already present (and `overwrite` is off), or the
        store is read-only (not `owned`). Raises OSError if the write fails (counted)."""
        path = self.path(key)
        if not self.owned:
            return False
        if not overwrite and self.contains(key):
            self._touch(key)
            return False
        data = encode_chunk(key, kv)
        tmp = path.with_name(tmp_name(key))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError:
            with self._lock:
                self.stats.write_errors += 1
            raise
        with self._lock:
            self.stats.puts += 1
            if self._approx_bytes is not None:
                self._approx_bytes += len(data)
        if self.max_bytes is not None and (self._approx_bytes is None or self._approx_bytes > self.max_bytes):
            self.evict()
        return True

    def discard(self, key: str) -> bool:
        """Delete a chunk (owned stores only); False if there was none to delete."""
        return self._remove(self.path(key))

    # capacity ----------------------------------------------------------------------------------------
    def _scan(self) -> _Scan:
        """Classify every entry of the store's tree: chunks, temporary files (stale or not), foreign."""
        out, now = _Scan(), time.time()
        try:
            top = list(os.scandir(self.root))
        except OSError:
            return out
        for e in top:
            if e.name == MARKER:
                continue
            m = _MARKER_TMP_RE.fullmatch(e.name)
            if m and e.is_file(follow_symlinks=False):
                self._scan_tmp(out, e, int(m[1]), m[2], now)
                continue
            if not (_SUBDIR_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False)):
                out.foreign.append(e.name)
                continue
            try:
                entries = list(os.scandir(e.path))
            except OSError:
                continue  # removed meanwhile, or unreadable: nothing of it is counted or deleted
            for f in entries:
                if not f.is_file(follow_symlinks=False):
                    out.foreign.append(f"{e.name}/{f.name}")
                    continue
                m = _CHUNK_RE.fullmatch(f.name)
                if m and m[1][:2] == e.name:
                    try:
                        st = f.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # evicted or renamed by another process meanwhile
                    out.chunks.append((st.st_mtime, st.st_size, Path(f.path)))
                    continue
                m = _TMP_RE.fullmatch(f.name)
                if m and m[1][:2] == e.name:
                    self._scan_tmp(out, f, int(m[2]), m[3], now)
                    continue
                out.foreign.append(f"{e.name}/{f.name}")
        return out

    @staticmethod
    def _scan_tmp(out: _Scan, entry: os.DirEntry, pid: int, tag: str, now: float) -> None:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return  # renamed into place meanwhile
        out.tmp.append((_stale_tmp(pid, tag, st.st_mtime, now), st.st_size, Path(entry.path)))

    def _settle(self, scan: _Scan) -> StoreUsage:
        """Delete the stale temporary files a scan found (owned stores only); what is left."""
        n = nbytes = 0
        usage = StoreUsage(foreign=len(scan.foreign))
        for stale, size, path in scan.tmp:
            if stale and self._remove(path):
                n, nbytes = n + 1, nbytes + size
            else:
                usage.tmp_files += 1
                usage.tmp_bytes += size
        if n:
            with self._lock:
                self.stats.stale_tmp_removed += n
                self.stats.stale_tmp_bytes_removed += nbytes
            log.info(
                "removed %d stale temporary files (%s) of dead writers from %s", n, _size(nbytes), self.root
            )
        usage.chunks = len(scan.chunks)
        usage.chunk_bytes = sum(size for _, size, _ in scan.chunks)
        return usage

    def usage(self) -> StoreUsage:
        """Chunks, bytes, temporary files and foreign entries now (stale temporary files removed first)."""
        return self._settle(self._scan())

    def size_bytes(self) -> int:
        return self.usage().chunk_bytes

    def __len__(self) -> int:
        return self.usage().chunks

    def evict(self) -> int:
        """Delete least-recently-used chunks until the store fits in `max_bytes`; returns how many.
        A read-only store evicts nothing."""
        if not self.owned:
            return 0
        scan = self._scan()
        self._settle(scan)
        entries = sorted(scan.chunks)
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in entries:
            if self.max_bytes is None or total <= self.max_bytes:
                break
            if self._remove(path):
                total -= size
                removed += 1
        with self._lock:
            self._approx_bytes = total
            self.stats.evictions += removed
        return removed

    def clear(self) -> int:
        """Delete every chunk and every stale temporary file; returns how many chunks. Raises
        TenfoldError for a store that is not `owned` (nothing is deleted there)."""
        if not self.owned:
            raise TenfoldError(f"refusing to clear the KV store at {self.root}: {self.unowned_reason}")
        scan = self._scan()
        self._settle(scan)
        removed = sum(self._remove(path) for _, _, path in scan.chunks)
        with self._lock:
            self._approx_bytes = None  # other processes may be writing: the next put rescans
        return removed

"""A disk-backed prefix KV store: one safetensors file per fixed-size token chunk.

Keys form a hash chain: chunk i's key hashes chunk i-1's key with chunk i's tokens, and chunk 0's
"previous key" hashes the model fingerprint and the chunk size. A stored chunk is therefore reused
only after the identical prefix, by the identical model.

Each file is a valid safetensors file (tensors `k.<layer>` / `v.<layer>`, shape kv_heads x tokens x
head_dim) whose metadata carries the chunk key and a CRC-32 of the tensor bytes. A read checks the
header against the shape the caller expects, the file length and the checksum; a chunk failing any
check is deleted and reported as missing, so the caller recomputes it and never serves it.

Writes are atomic (unique temporary file, fsync, rename), so two processes writing the same prefix
race harmlessly: each rename installs a complete file. The store keeps under `max_bytes` by deleting
least-recently-used chunks (recency = file mtime, refreshed on every hit, so it is shared between
processes). Reads can bypass the page cache (posix_fadvise DONTNEED before reading) so that a
benchmark measures the storage device, and can be paced by a `Throttle` to emulate a slower tier.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tenfold.core.errors import TenfoldError

FORMAT = "tenfold-kv-1"
SUFFIX = ".safetensors"
_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
}
_FROM_NAME = {v: k for k, v in _DTYPES.items()}
_STALE_TMP_S = 3600.0  # a temporary file this old belongs to a writer that died


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
    """Check and parse a chunk file's bytes; the tensors share `buf`'s memory. Raises CorruptChunk."""
    if len(buf) < 8:
        raise CorruptChunk(f"file of {len(buf)} bytes is too short")
    (hlen,) = struct.unpack("<Q", bytes(buf[:8]))
    if hlen > len(buf) - 8 or hlen > 1 << 24:
        raise CorruptChunk(f"header length {hlen} exceeds the file ({len(buf)} bytes)")
    try:
        header = json.loads(bytes(buf[8 : 8 + hlen]))
        meta = header.pop("__metadata__")
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptChunk(f"unreadable header: {exc}") from exc
    if meta.get("format") != FORMAT or meta.get("key") != key:
        raise CorruptChunk("header names another format or key")
    body = memoryview(buf)[8 + hlen :]
    want = spec.nbytes
    if len(body) != want:
        raise CorruptChunk(f"tensor data is {len(body)} bytes, expected {want} (truncated?)")
    if f"{zlib.crc32(body):08x}" != meta.get("crc32"):
        raise CorruptChunk("checksum mismatch")
    shape = [spec.kv_heads, spec.tokens, spec.head_dim]
    per = want // (2 * spec.layers)  # bytes of one tensor; files are laid out k.0, v.0, k.1, ...
    out = []
    try:
        for layer in range(spec.layers):
            pair = []
            for j, name in enumerate((f"k.{layer}", f"v.{layer}")):
                h = header[name]
                if h["shape"] != shape or _FROM_NAME.get(h["dtype"]) != spec.dtype:
                    raise CorruptChunk(f"{name} is {h['dtype']} {h['shape']}, expected {spec.dtype} {shape}")
                a, b = h["data_offsets"]
                if [a, b] != [(2 * layer + j) * per, (2 * layer + j + 1) * per]:
                    raise CorruptChunk(f"{name} has bad data offsets {a}..{b}")
                t = torch.frombuffer(body, dtype=spec.dtype, count=(b - a) // spec.dtype.itemsize, offset=a)
                pair.append(t.view(shape))
            out.append((pair[0], pair[1]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptChunk(f"malformed header entry: {exc}") from exc
    return out


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
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    puts: int = 0
    evictions: int = 0
    bytes_read: int = 0
    read_seconds: float = 0.0
    corrupt_keys: list[str] = field(default_factory=list)


class KVStore:
    """Chunk files under `root`, at most `max_bytes` of them (None: unbounded), LRU-evicted.

    `bypass_page_cache` drops each file's cached pages before reading it so the device is measured,
    not RAM; `throttle` caps read bandwidth. Thread-safe, and safe for several processes sharing `root`.
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
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.bypass_page_cache = bypass_page_cache and hasattr(os, "posix_fadvise")
        self.throttle = throttle or Throttle(None)
        self.stats = StoreStats()
        self._lock = threading.Lock()
        self._approx_bytes: int | None = None  # refreshed from disk whenever eviction runs

    # paths -------------------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise TenfoldError(f"not a chunk key (64 lowercase hex digits): {key!r}")
        return self.root / key[:2] / (key + SUFFIX)

    def contains(self, key: str) -> bool:
        return self.path(key).is_file()

    # reading -----------------------------------------------------------------------------------------
    def read_bytes(self, key: str, cancel: threading.Event | None = None) -> bytearray | None:
        """The raw file, read from the device (page cache dropped first) and paced; None if absent."""
        started = time.perf_counter()
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
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
        """A stored chunk's per-layer (K, V), or None if it is absent or fails a check (then deleted).
        `cancel` cuts the bandwidth pacing short (the caller no longer needs the chunk)."""
        buf = self.read_bytes(key, cancel)
        if buf is None:
            with self._lock:
                self.stats.misses += 1
            return None
        try:
            kv = decode_chunk(buf, key, spec)
        except CorruptChunk:
            self.discard(key)
            with self._lock:
                self.stats.corrupt += 1
                self.stats.corrupt_keys.append(key)
            return None
        self._touch(key)
        with self._lock:
            self.stats.hits += 1
        return kv

    def _touch(self, key: str) -> None:
        try:
            os.utime(self.path(key))  # LRU recency, visible to every process sharing the store
        except FileNotFoundError:
            pass

    # writing -----------------------------------------------------------------------------------------
    def put(self, key: str, kv: list[tuple[torch.Tensor, torch.Tensor]], overwrite: bool = False) -> bool:
        """Store a chunk atomically; False if it was already present (and `overwrite` is off)."""
        path = self.path(key)
        if path.is_file() and not overwrite:
            self._touch(key)
            return False
        data = encode_chunk(key, kv)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self.stats.puts += 1
            if self._approx_bytes is not None:
                self._approx_bytes += len(data)
        if self.max_bytes is not None and (self._approx_bytes is None or self._approx_bytes > self.max_bytes):
            self.evict()
        return True

    def discard(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    # capacity ----------------------------------------------------------------------------------------
    def _scan(self) -> list[tuple[float, int, Path]]:
        entries, now = [], time.time()
        for sub in self.root.iterdir() if self.root.is_dir() else []:
            if not sub.is_dir():
                continue
            for e in os.scandir(sub):
                try:
                    st = e.stat()
                except FileNotFoundError:
                    continue  # evicted or renamed by another process meanwhile
                if e.name.endswith(".tmp"):
                    if now - st.st_mtime > _STALE_TMP_S:
                        Path(e.path).unlink(missing_ok=True)
                    continue
                if e.name.endswith(SUFFIX):
                    entries.append((st.st_mtime, st.st_size, Path(e.path)))
        return entries

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._scan())

    def __len__(self) -> int:
        return len(self._scan())

    def evict(self) -> int:
        """Delete least-recently-used chunks until the store fits in `max_bytes`; returns how many."""
        entries = sorted(self._scan())
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in entries:
            if self.max_bytes is None or total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        with self._lock:
            self._approx_bytes = total
            self.stats.evictions += removed
        return removed

    def clear(self) -> None:
        for _, _, path in self._scan():
            path.unlink(missing_ok=True)
        with self._lock:
            self._approx_bytes = 0

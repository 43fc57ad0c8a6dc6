"""KVStore: hash-chain keys, the safetensors chunk format, corruption handling, LRU, pacing, two writers."""

import json
import logging
import multiprocessing as mp
import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

import tenfold.cake.store as store_mod
from tenfold.cake.store import FORMAT, ChunkSpec, KVStore, Throttle, decode_chunk, encode_chunk, prefix_keys
from tenfold.core.errors import TenfoldError

SPEC = ChunkSpec(layers=2, kv_heads=3, tokens=8, head_dim=4, dtype=torch.float32)


def chunk(seed: int, spec: ChunkSpec = SPEC):
    g = torch.Generator().manual_seed(seed)
    shape = (spec.kv_heads, spec.tokens, spec.head_dim)
    return [
        (torch.randn(shape, generator=g).to(spec.dtype), torch.randn(shape, generator=g).to(spec.dtype))
        for _ in range(spec.layers)
    ]


def same(a, b):
    return all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b, strict=True))


MARKER = ".tenfold-kv-store"


def key(i: int) -> str:
    return prefix_keys("fp", list(range(8 * (i + 1))), 8)[-1]


# keys --------------------------------------------------------------------------------------------
def test_keys_form_a_hash_chain():
    toks = list(range(100))
    keys = prefix_keys("model-a", toks, 10)
    assert len(keys) == 10 and len(set(keys)) == 10
    assert prefix_keys("model-a", toks[:35], 10) == keys[:3]  # a prefix gets the prefix's keys
    changed = toks.copy()
    changed[42] = 999  # changes chunk 4, hence every later key, and no earlier one
    k2 = prefix_keys("model-a", changed, 10)
    assert k2[:4] == keys[:4] and all(a != b for a, b in zip(k2[4:], keys[4:], strict=True))
    assert not set(prefix_keys("model-b", toks, 10)) & set(keys)  # another model shares nothing
    assert prefix_keys("model-a", toks, 20)[0] not in keys  # nor does another chunk size
    # the same chunk after a different prefix is a different key
    assert prefix_keys("m", [1] * 10 + [5] * 10, 10)[1] != prefix_keys("m", [2] * 10 + [5] * 10, 10)[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_chunk_files_are_standard_safetensors(tmp_path, dtype):
    spec = ChunkSpec(2, 3, 8, 4, dtype)
    kv = chunk(1, spec)
    data = encode_chunk(key(0), kv)
    (tmp_path / "c.safetensors").write_bytes(data)
    other = load_file(tmp_path / "c.safetensors")  # the reference reader agrees with ours
    for layer, (k, v) in enumerate(kv):
        assert torch.equal(other[f"k.{layer}"], k) and torch.equal(other[f"v.{layer}"], v)
    assert same(decode_chunk(bytearray(data), key(0), spec), kv)


# corruption --------------------------------------------------------------------------------------
def _corruptions(data: bytes):
    hlen = int.from_bytes(data[:8], "little")
    flip = bytearray(data)
    flip[len(data) - 5] ^= 0x01  # one bit in the tensor data
    flip_header = bytearray(data)
    at = data.index(b'"shape":[3') + 9
    flip_header[at] = ord("4")  # a shape in the header
    return {
        "bit flip": bytes(flip),
        "truncated": data[: len(data) - 100],
        "header only": data[: 8 + hlen],
        "empty": b"",
        "garbage": os.urandom(len(data)),
        "header shape": bytes(flip_header),
        "appended": data + b"\0" * 16,
    }


@pytest.mark.parametrize("kind", list(_corruptions(encode_chunk(key(0), chunk(0)))))
def test_corrupt_chunk_is_dropped_never_served(tmp_path, kind):
    store = KVStore(tmp_path)
    store.put(key(0), chunk(0))
    store.path(key(0)).write_bytes(_corruptions(encode_chunk(key(0), chunk(0)))[kind])
    assert store.get(key(0), SPEC) is None
    assert not store.contains(key(0)) and store.stats.corrupt == 1  # deleted, so it gets recomputed
    store.put(key(0), chunk(0))
    assert same(store.get(key(0), SPEC), chunk(0))


def test_a_chunk_under_another_key_or_shape_is_rejected(tmp_path):
    store = KVStore(tmp_path)
    store.put(key(0), chunk(0))
    store.path(key(1)).parent.mkdir(parents=True, exist_ok=True)
    os.replace(store.path(key(0)), store.path(key(1)))
    assert store.get(key(1), SPEC) is None  # a file renamed to another key does not pass
    store.put(key(2), chunk(2))
    assert store.get(key(2), ChunkSpec(2, 3, 8, 4, torch.float16)) is None


# capacity ----------------------------------------------------------------------------------------
def test_lru_eviction_keeps_recently_used(tmp_path):
    size = len(encode_chunk(key(0), chunk(0)))
    store = KVStore(tmp_path, max_bytes=3 * size)
    for i in range(3):
        store.put(key(i), chunk(i))
        time.sleep(0.02)
    assert store.get(key(0), SPEC) is not None  # chunk 0 becomes the most recently used
    time.sleep(0.02)
    store.put(key(3), chunk(3))
    assert [store.contains(key(i)) for i in range(4)] == [True, False, True, True]
    assert store.size_bytes() <= 3 * size and store.stats.evictions == 1


def test_put_is_idempotent_and_leaves_no_temporary_files(tmp_path):
    store = KVStore(tmp_path)
    assert store.put(key(0), chunk(0)) is True
    assert store.put(key(0), chunk(5)) is False  # present: not rewritten
    assert same(store.get(key(0), SPEC), chunk(0))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def _writer(root: str, rounds: int) -> int:
    store = KVStore(root)
    for _ in range(rounds):
        for i in range(6):
            store.put(key(i), chunk(i), overwrite=True)
    return store.stats.puts


def test_two_processes_writing_the_same_prefix(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        jobs = [pool.apply_async(_writer, (str(tmp_path), 15)) for _ in range(2)]
        reader = KVStore(tmp_path)
        seen = 0
        while not all(j.ready() for j in jobs):  # a concurrent reader never sees a torn file
            for i in range(6):
                got = reader.get(key(i), SPEC)
                if got is not None:
                    assert same(got, chunk(i))
                    seen += 1
        assert [j.get() for j in jobs] == [90, 90]
    assert reader.stats.corrupt == 0
    assert all(same(reader.get(key(i), SPEC), chunk(i)) for i in range(6))
    assert not [p for p in tmp_path.rglob("*.tmp")]


# pacing and bad input ----------------------------------------------------------------------------
def test_throttle_paces_reads_to_the_bandwidth(tmp_path):
    store = KVStore(tmp_path, throttle=Throttle(0.01))  # 10 Mbit/s
    store.put(key(0), chunk(0))
    nbytes = store.path(key(0)).stat().st_size
    t = time.perf_counter()
    assert store.get(key(0), SPEC) is not None
    assert time.perf_counter() - t >= nbytes * 8 / 0.01e9  # never faster than the emulated tier
    store.throttle.set_gbps(None)
    assert store.get(key(0), SPEC) is not None


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_bad_bandwidth_is_rejected(bad):
    with pytest.raises(TenfoldError, match="bandwidth"):
        Throttle(bad)


def test_bad_store_arguments(tmp_path):
    with pytest.raises(TenfoldError, match="max_bytes"):
        KVStore(tmp_path, max_bytes=0)
    (tmp_path / "f").write_text("x")
    with pytest.raises(TenfoldError, match="not a directory"):
        KVStore(tmp_path / "f")
    with pytest.raises(TenfoldError, match="chunk key"):
        KVStore(tmp_path / "s").path("../../etc/passwd")
    with pytest.raises(TenfoldError, match="chunk_tokens"):
        prefix_keys("fp", [1, 2], 0)


# ownership: the store deletes only files it wrote (issue point 8) ---------------------------------
def _foreign_files(root):
    """A model saved into the store directory, and safetensors files that only look like chunks."""
    files = [
        root / "my-finetune" / "model.safetensors",  # a model saved one folder below the store
        root / "ab" / "notes.safetensors",  # in a chunk subdirectory, but not a chunk name
        root / "ab" / ("cd" * 32 + ".safetensors"),  # a chunk name in the wrong subdirectory
        root / "ab" / "cd" / ("ab" * 32 + ".safetensors"),  # nested one level deeper
    ]
    for i, f in enumerate(files):
        f.parent.mkdir(parents=True, exist_ok=True)
        save_file({"w": torch.full((64,), float(i))}, f)
    return {f: f.read_bytes() for f in files}


def _untouched(files):
    return all(f.is_file() and f.read_bytes() == data for f, data in files.items())


def test_clear_and_eviction_delete_only_chunks(tmp_path):
    store = KVStore(tmp_path)
    assert store.owned and (tmp_path / MARKER).read_text().splitlines()[0] == FORMAT
    size = len(encode_chunk(key(0), chunk(0)))
    for i in range(3):
        store.put(key(i), chunk(i))
    foreign = _foreign_files(tmp_path)
    assert len(store) == 3 and store.size_bytes() == 3 * size  # foreign files are not counted
    tiny = KVStore(tmp_path, max_bytes=size)
    assert tiny.owned and tiny.evict() == 2 and len(tiny) == 1 and _untouched(foreign)
    store.put(key(3), chunk(3))  # a cap of one chunk: each put evicts down to it
    assert tiny.put(key(4), chunk(4)) and len(tiny) == 1 and _untouched(foreign)
    assert store.clear() == 1
    assert len(store) == 0 and store.size_bytes() == 0 and _untouched(foreign)
    assert (tmp_path / MARKER).is_file()  # still a store


def test_a_directory_holding_other_files_is_never_written_or_deleted(tmp_path, caplog):
    foreign = _foreign_files(tmp_path)
    (tmp_path / key(0)[:2]).mkdir(exist_ok=True)
    store_path = tmp_path / key(0)[:2] / (key(0) + ".safetensors")
    store_path.write_bytes(encode_chunk(key(0), chunk(0)))  # a chunk that was already there
    with caplog.at_level(logging.WARNING, logger="tenfold.cake.store"):
        store = KVStore(tmp_path, max_bytes=1)
    assert not store.owned and "my-finetune" in store.unowned_reason
    assert "read-only" in caplog.text and not (tmp_path / MARKER).exists()
    assert same(store.get(key(0), SPEC), chunk(0))  # stored chunks are still served
    assert store.put(key(1), chunk(1)) is False and not store.contains(key(1))  # nothing is written
    assert store.evict() == 0
    with pytest.raises(TenfoldError, match="my-finetune"):
        store.clear()
    store_path.write_bytes(b"\0" * 64)
    assert store.get(key(0), SPEC) is None and store.stats.corrupt == 1  # a miss, but not deleted
    assert store_path.is_file() and _untouched(foreign)


def test_a_store_without_marker_holding_only_chunks_is_adopted(tmp_path):
    for i in range(2):  # a store written before the marker existed
        p = tmp_path / key(i)[:2] / (key(i) + ".safetensors")
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(encode_chunk(key(i), chunk(i)))
    (tmp_path / "ff").mkdir()  # an empty chunk subdirectory is fine too
    store = KVStore(tmp_path)
    assert store.owned and (tmp_path / MARKER).read_text().splitlines()[0] == FORMAT
    assert len(store) == 2 and same(store.get(key(1), SPEC), chunk(1))
    (tmp_path / MARKER).write_text("tenfold-kv-999\n")  # a marker of another format is not ours
    other = KVStore(tmp_path)
    assert not other.owned and "tenfold-kv-999" in other.unowned_reason
    with pytest.raises(TenfoldError, match="tenfold-kv-999"):
        other.clear()
    assert len(store) == 2


# any unreadable chunk is a corrupt chunk (issue point 9) ------------------------------------------
def _with_header(data: bytes, mutate) -> bytes:
    """`data` with its JSON header replaced by `mutate(header)` (a dict to edit in place, or a return
    value that replaces it; str or bytes are raw header text); tensor bytes and CRC unchanged."""
    hlen = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + hlen])
    out = mutate(header)
    new = header if out is None else out
    if isinstance(new, str):
        new = new.encode()
    text = new if isinstance(new, bytes) else json.dumps(new).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + hlen :]


_PER = SPEC.nbytes // (2 * SPEC.layers)
MALFORMED = {
    "metadata is a string": lambda h: h.update(__metadata__="oops"),
    "metadata is a list": lambda h: h.update(__metadata__=[1, 2]),
    "metadata is null": lambda h: h.update(__metadata__=None),
    "metadata missing": lambda h: h.pop("__metadata__"),
    "header is a number": lambda h: 5,
    "header is a list": lambda h: [h],
    "header is a string": lambda h: '"k.0"',
    "deeply nested": lambda h: "[" * 100_000 + "]" * 100_000,
    "not utf-8": lambda h: b'{"\xff": 1}',
    "key missing": lambda h: h["__metadata__"].pop("key"),
    "crc is a number": lambda h: h["__metadata__"].update(crc32=123),
    "format is a dict": lambda h: h["__metadata__"].update(format={"a": 1}),
    "tensor entry is null": lambda h: h.update({"k.0": None}),
    "tensor entry is a string": lambda h: h.update({"v.1": "F32"}),
    "tensor missing": lambda h: h.pop("v.1"),
    "extra tensor": lambda h: h.update({"k.9": h["k.0"]}),
    "shape is a string": lambda h: h["k.0"].update(shape="3x8x4"),
    "shape is null": lambda h: h["k.1"].update(shape=None),
    "dtype is a list": lambda h: h["k.0"].update(dtype=["F32"]),
    "dtype unknown": lambda h: h["k.0"].update(dtype="I64"),
    "offsets negative": lambda h: h["k.0"].update(data_offsets=[-_PER, 0]),
    "offsets reversed": lambda h: h["k.0"].update(data_offsets=[_PER, 0]),
    "offsets are floats": lambda h: h["k.0"].update(data_offsets=[0.0, float(_PER)]),
    "offsets are strings": lambda h: h["k.0"].update(data_offsets=["0", str(_PER)]),
    "offsets too many": lambda h: h["k.0"].update(data_offsets=[0, _PER, 2 * _PER]),
    "offsets past the end": lambda h: h["v.1"].update(data_offsets=[SPEC.nbytes, SPEC.nbytes + _PER]),
    "offsets are an int": lambda h: h["k.0"].update(data_offsets=7),
}


def _malformed(kind: str, k: str | None = None) -> bytes:
    return _with_header(encode_chunk(k or key(0), chunk(0)), MALFORMED[kind])


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_header_is_a_corrupt_chunk(tmp_path, caplog, kind):
    store = KVStore(tmp_path)
    store.put(key(0), chunk(0))
    store.path(key(0)).write_bytes(_malformed(kind))
    with caplog.at_level(logging.WARNING, logger="tenfold.cake.store"):
        assert store.get(key(0), SPEC) is None
    assert store.stats.corrupt == 1 and store.stats.corrupt_keys == [key(0)]
    assert not store.contains(key(0))  # dropped, so it is recomputed and stored again
    warnings = [r for r in caplog.records if r.name == "tenfold.cake.store" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and key(0) in warnings[0].getMessage()
    store.put(key(0), chunk(0))
    assert same(store.get(key(0), SPEC), chunk(0)) and store.stats.corrupt == 1


def test_an_unreadable_file_is_a_corrupt_chunk(tmp_path):
    store = KVStore(tmp_path)
    store.put(key(0), chunk(0))
    path = store.path(key(0))
    path.unlink()
    path.mkdir()  # a directory where a chunk should be: reading it fails
    assert store.get(key(0), SPEC) is None and store.stats.corrupt == 1
    assert path.is_dir()  # not a file the store wrote: left alone
    path.rmdir()
    huge = tmp_path / "huge"
    with open(huge, "wb") as f:
        f.truncate(1 << 40)  # a sparse 1 TiB file: rejected by its size, never read into memory
    store.put(key(1), chunk(1))
    os.replace(huge, store.path(key(1)))
    assert store.get(key(1), SPEC) is None and store.stats.corrupt == 2 and not store.contains(key(1))


# temporary files of killed writers (issue point 10) -----------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _tmp(root, k: str, pid: int, host: str | None = None, nbytes: int = 1000, age: float = 0.0):
    name = store_mod.tmp_name(k, pid)
    if host is not None:  # a writer on another machine: another host tag
        parts = name.split(".")
        parts[3] = host + parts[3][len(host) :]
        name = ".".join(parts)
    p = root / k[:2] / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(b"\0" * nbytes)
    if age:
        t = time.time() - age
        os.utime(p, (t, t))
    return p


def test_stale_temp_files_are_removed_on_open_and_counted(tmp_path, caplog):
    KVStore(tmp_path).put(key(0), chunk(0))
    dead = _tmp(tmp_path, key(1), _dead_pid(), nbytes=1000)
    old = _tmp(tmp_path, key(2), os.getpid(), nbytes=500, age=store_mod._STALE_TMP_S + 60)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = _tmp(tmp_path, key(3), child.pid)
        mine = _tmp(tmp_path, key(4), os.getpid())
        remote = _tmp(tmp_path, key(5), _dead_pid(), host="0badc0de")  # pid means nothing here
        foreign = [tmp_path / "ab" / ".notes.tmp", tmp_path / "my-dir" / (store_mod.tmp_name(key(6), 1))]
        for f in foreign:
            f.parent.mkdir(exist_ok=True)
            f.write_bytes(b"x")
            os.utime(f, (0, 0))  # very old, but not a file of ours
        with caplog.at_level(logging.INFO, logger="tenfold.cake.store"):
            store = KVStore(tmp_path)
        assert not dead.exists() and not old.exists()
        assert store.stats.stale_tmp_removed == 2 and store.stats.stale_tmp_bytes_removed == 1500
        assert "2 stale temporary files" in caplog.text
        assert live.exists() and mine.exists() and remote.exists() and all(f.exists() for f in foreign)
        u = store.usage()
        assert (u.chunks, u.tmp_files, u.tmp_bytes) == (1, 3, 3000) and u.foreign == 2
        assert store.clear() == 1 and live.exists() and mine.exists()  # never a live writer's file
        child.kill()
        child.wait()
        store.clear()  # now its writer is dead
        assert not live.exists() and mine.exists() and store.stats.stale_tmp_removed == 3
    finally:
        child.kill()
        child.wait()


def test_pid_liveness():
    assert store_mod._pid_alive(os.getpid())
    assert not store_mod._pid_alive(_dead_pid())
    assert not store_mod._pid_alive(0) and not store_mod._pid_alive(-1)  # never signal a process group
    assert not store_mod._pid_alive(2**40)
    assert store_mod._pid_alive(1)  # init: alive, even where signalling it is not permitted

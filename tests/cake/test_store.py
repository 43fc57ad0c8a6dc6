"""KVStore: hash-chain keys, the safetensors chunk format, corruption handling, LRU, pacing, two writers."""

import multiprocessing as mp
import os
import time

import pytest
import torch
from safetensors.torch import load_file

from tenfold.cake.store import ChunkSpec, KVStore, Throttle, decode_chunk, encode_chunk, prefix_keys
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

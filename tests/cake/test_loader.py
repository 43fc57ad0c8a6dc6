"""The three loaders against a full prefill, under partial, gapped and corrupt stores; the meeting point."""

import json
import threading

import pytest
import torch

from tenfold.cake import CakeLoader, KVStore, ideal_split, model_fingerprint
from tenfold.core.errors import ContextLengthError, TenfoldError
from tenfold.core.models import build_preset

C = 32  # chunk tokens in these tests


def prompt(n: int, seed: int = 0) -> list[int]:
    return torch.randint(8, 264, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.fixture(scope="module")
def model():
    return build_preset("tiny")[0].eval()


def reference(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
    return out.logits[0, -1].float(), out.past_key_values


def assert_matches(r, ref, n_tokens):
    logits, cache = ref
    assert (r.logits - logits).abs().max() < 1e-4
    assert r.first_token == int(logits.argmax())
    for mine, theirs in zip(r.cache.layers, cache.layers, strict=True):
        assert mine.keys.shape[-2] == n_tokens
        assert (mine.keys - theirs.keys).abs().max() < 1e-4
        assert (mine.values - theirs.values).abs().max() < 1e-4


@pytest.mark.parametrize("n", [1, 2, C, C + 1, 2 * C + 1, 5 * C, 5 * C + 7])
def test_every_mode_equals_full_prefill(model, tmp_path, n):
    ids = prompt(n, n)
    ref = reference(model, ids)
    loader = CakeLoader(model, KVStore(tmp_path), chunk_tokens=C)
    cold = loader.prefill(ids, "cake")  # nothing stored yet: all computed, then stored
    assert_matches(cold, ref, n)
    assert cold.saved == (n - 1) // C and not cold.loaded
    for mode in ("compute_only", "io_only", "cake"):
        r = loader.prefill(ids, mode)
        assert_matches(r, ref, n)
        if mode == "io_only":
            assert r.loaded == list(range((n - 1) // C))


def test_partially_cached_prefix(model, tmp_path):
    shared = prompt(3 * C + 5, 1)
    loader = CakeLoader(model, KVStore(tmp_path), chunk_tokens=C)
    loader.prefill(shared, "compute_only")  # stores chunks 0..2 of the shared prefix
    ids = shared[: 3 * C] + prompt(4 * C, 2)  # same first 3 chunks, then new text
    ref = reference(model, ids)
    for mode in ("io_only", "cake"):
        r = loader.prefill(ids, mode, save=False)
        assert_matches(r, ref, len(ids))
        assert set(r.loaded) <= {0, 1, 2} and r.tail_end <= 3
    io = loader.prefill(ids, "io_only")
    assert io.loaded == [0, 1, 2] and io.saved == 3  # the new chunks are stored afterwards
    assert loader.stored(ids) == [True] * 6


def test_gap_in_the_store(model, tmp_path):
    ids = prompt(6 * C + 3, 3)
    ref = reference(model, ids)
    store = KVStore(tmp_path)
    loader = CakeLoader(model, store, chunk_tokens=C)
    loader.prefill(ids, "compute_only")
    keys = loader.keys(ids)
    store.discard(keys[2])  # evicted from the middle
    store.discard(keys[5])  # and the last
    cake = loader.prefill(ids, "cake", save=False)
    assert_matches(cake, ref, len(ids))
    assert cake.tail_end == 5 and set(cake.loaded) <= {3, 4}  # only the run right before the gap
    io = loader.prefill(ids, "io_only", save=False)
    assert_matches(io, ref, len(ids))
    assert io.loaded == [0, 1]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
@pytest.mark.parametrize("mode", ["io_only", "cake"])
def test_corrupt_chunk_still_gives_the_right_answer(model, tmp_path, damage, mode):
    ids = prompt(6 * C + 3, 4)
    ref = reference(model, ids)
    store = KVStore(tmp_path)
    loader = CakeLoader(model, store, chunk_tokens=C)
    loader.prefill(ids, "compute_only")
    bad = 0 if mode == "io_only" else 5  # the first chunk each mode reads
    path = store.path(loader.keys(ids)[bad])
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-3] ^= 0xFF
    else:
        del data[len(data) // 2 :]
    path.write_bytes(bytes(data))
    r = loader.prefill(ids, mode)
    assert_matches(r, ref, len(ids))
    assert r.corrupt == [bad] and bad not in r.loaded and store.stats.corrupt == 1
    assert loader.stored(ids)[bad]  # recomputed and stored again, intact
    assert_matches(loader.prefill(ids, mode), ref, len(ids))


def _join_io_workers():
    for t in threading.enumerate():
        if t.name == "cake-io":
            t.join(10)


def _metadata_a_string(path):
    data = path.read_bytes()
    hlen = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + hlen])
    header["__metadata__"] = "oops"  # valid JSON, valid length, wrong type
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + hlen :])


@pytest.mark.parametrize("mode", ["io_only", "cake"])
def test_a_malformed_header_is_recomputed_and_repaired(model, tmp_path, monkeypatch, mode):
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    ids = prompt(6 * C + 3, 8)
    ref = reference(model, ids)
    store = KVStore(tmp_path)
    loader = CakeLoader(model, store, chunk_tokens=C)
    loader.prefill(ids, "compute_only")
    bad = 0 if mode == "io_only" else 5
    _metadata_a_string(store.path(loader.keys(ids)[bad]))
    for _ in range(2):  # the first request drops and recomputes it, the next one loads it again
        r = loader.prefill(ids, mode)
        _join_io_workers()
        assert_matches(r, ref, len(ids))
        assert not thread_errors and store.stats.corrupt == 1
    assert bad in r.loaded or (mode == "cake" and r.split_chunk > bad)
    assert store.stats.corrupt_keys == [loader.keys(ids)[bad]]


@pytest.mark.parametrize("mode", ["io_only", "cake"])
def test_an_unexpected_store_error_becomes_a_recompute(model, tmp_path, monkeypatch, mode):
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    ids = prompt(6 * C + 3, 9)
    ref = reference(model, ids)
    store = KVStore(tmp_path)
    loader = CakeLoader(model, store, chunk_tokens=C)
    loader.prefill(ids, "compute_only")

    def broken(*_a, **_kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "get", broken)
    r = loader.prefill(ids, mode, save=False)
    _join_io_workers()
    assert_matches(r, ref, len(ids))
    assert not thread_errors and r.corrupt == [0 if mode == "io_only" else 5] and not r.loaded


def test_loader_is_model_specific(model, tmp_path):
    other = build_preset("tiny", seed=1)[0]
    assert model_fingerprint(model) == model_fingerprint(build_preset("tiny")[0])
    assert model_fingerprint(model) != model_fingerprint(other)
    ids = prompt(4 * C, 5)
    CakeLoader(model, KVStore(tmp_path), chunk_tokens=C).prefill(ids, "compute_only")
    r = CakeLoader(other, KVStore(tmp_path), chunk_tokens=C).prefill(ids, "io_only", save=False)
    assert r.loaded == []  # another model's KV is never reused
    assert_matches(r, reference(other, ids), len(ids))


def test_bad_input(model, tmp_path):
    loader = CakeLoader(model, KVStore(tmp_path), chunk_tokens=C)
    with pytest.raises(TenfoldError, match="empty"):
        loader.prefill([], "cake")
    with pytest.raises(TenfoldError, match="unknown prefill mode"):
        loader.prefill([1, 2], "both")
    with pytest.raises(ContextLengthError, match="context"):
        loader.prefill([9] * loader.context, "cake")
    with pytest.raises(TenfoldError, match="chunk_tokens"):
        CakeLoader(model, None, chunk_tokens=0)
    assert CakeLoader(model, None, chunk_tokens=C).prefill(prompt(70), "cake").loaded == []  # no store


# the ideal split and the meeting point -------------------------------------------------------------
def test_ideal_split_matches_closed_forms():
    # uniform compute (paper): TTFT* = Tc*Tio/(Tc+Tio); Tc = 1 s over 300 chunks, Tio = 2 s
    m, t = ideal_split([1 / 300] * 300, 2 / 300)
    assert m == 200 and t == pytest.approx(2 / 3, rel=1e-3)
    # linear compute f(i) = a + b*i: the optimum balances a*m + b*m(m-1)/2 = (n-m)*g
    a, b, g, n = 0.01, 0.002, 0.05, 64
    m, t = ideal_split([a + b * i for i in range(n)], g)
    balance = [abs(a * k + b * k * (k - 1) / 2 - (n - k) * g) for k in range(n + 1)]
    assert abs(m - balance.index(min(balance))) <= 1
    assert ideal_split([1.0] * 4, 100.0) == (4, 4.0)  # storage hopeless: compute everything
    assert ideal_split([1.0] * 4, 0.01) == (0, pytest.approx(0.04))  # storage instant: load everything


@pytest.fixture(scope="module")
def small():
    return build_preset("small")[0].eval()


def _meeting_setup(small, tmp_path, gbps):
    ids = prompt(16 * 64 + 4, 6)
    store = KVStore(tmp_path)
    loader = CakeLoader(small, store, chunk_tokens=64)
    loader.prefill(ids, "compute_only")
    comp = loader.prefill(ids, "compute_only", save=False)
    per_chunk_bits = 8 * loader.spec.nbytes
    if gbps is None:  # loading a chunk takes as long as computing an average one
        gbps = per_chunk_bits / 1e9 / (sum(comp.compute_times.values()) / comp.n_chunks)
    store.throttle.set_gbps(gbps)
    return ids, loader, comp, gbps


def test_meeting_point_is_within_one_chunk_of_the_ideal(small, tmp_path):
    ids, loader, comp, _ = _meeting_setup(small, tmp_path, None)
    r = loader.prefill(ids, "cake", save=False)
    assert 0 < r.split_chunk < r.n_chunks and r.loaded and r.computed
    # the ideal from the per-chunk times measured in this very run (compute-only run for chunks it skipped)
    f = [r.compute_times.get(i, comp.compute_times[i]) for i in range(r.n_chunks)]
    g = sum(r.load_times.values()) / len(r.load_times)
    m_star, _ = ideal_split(f, g)
    assert abs(r.split_chunk - m_star) <= 1, (r.split_chunk, m_star, f, g)


def test_meeting_point_follows_bandwidth_changes_mid_request(small, tmp_path):
    ids, loader, comp, gbps = _meeting_setup(small, tmp_path, None)
    steady = loader.prefill(ids, "cake", save=False)
    loader.store.throttle.set_gbps(gbps / 20)  # storage collapses...
    slow = loader.prefill(ids, "cake", save=False)
    # ...and recovers (x20 faster than the balance point) a quarter into the compute-only time
    timer = threading.Timer(comp.ttft / 4, loader.store.throttle.set_gbps, args=(gbps * 20,))
    loader.store.throttle.set_gbps(gbps / 20)
    timer.start()
    recovered = loader.prefill(ids, "cake", save=False)
    timer.join()
    assert slow.split_chunk > steady.split_chunk  # slower storage: compute goes further
    assert recovered.split_chunk < slow.split_chunk  # the meeting point moved with the change
    for r in (steady, slow, recovered):
        assert_matches(r, reference(small, ids), len(ids))


def test_io_takes_over_the_chunk_being_computed(model, tmp_path):
    """Beyond the paper: with instant storage and slow compute, the I/O worker delivers the chunk the
    compute worker is inside; compute is abandoned mid-chunk and the result is still exact."""
    ids = prompt(6 * C + 3, 7)
    loader = CakeLoader(model, KVStore(tmp_path), chunk_tokens=C)
    loader.prefill(ids, "compute_only")

    def crawl(*_):  # returns None, so the layer's inputs are untouched
        threading.Event().wait(0.05)

    slow = model.model.layers[1].register_forward_pre_hook(crawl)
    try:
        r = loader.prefill(ids, "cake", save=False)
    finally:
        slow.remove()
    assert r.preempted and r.split_chunk == 0 and r.loaded == list(range(6)) and not r.computed[:-1]
    assert_matches(r, reference(model, ids), len(ids))

"""`tenfold serve --kv-store`: the Cake prefill plug-in in the decode batch and behind the HTTP server."""

import httpx
import pytest

from tenfold.cake.serving import StorePrefill
from tenfold.core.sampler import DecodeBatch, SamplingParams, encode_prompt, generate
from tenfold.core.server import ServerThread, create_app

PREFIX = "".join(f"Section {i}: the shared system prompt of a long-context service. " for i in range(12))
GREEDY = SamplingParams(max_new_tokens=12, ignore_eos=True)


def run_batch(model, tok, prompts, prefill):
    batch = DecodeBatch(model, tok, prefill=prefill)
    seqs = [batch.new_sequence(i, encode_prompt(tok, p), GREEDY) for i, p in enumerate(prompts)]
    batch.add(seqs[:2])
    batch.step()
    batch.add(seqs[2:])  # joins a running batch
    while batch.seqs:
        batch.step()
    return [s.token_ids for s in seqs]


def test_store_prefill_matches_plain_decoding(tiny, tmp_path):
    model, tok = tiny
    prompts = [PREFIX + "Q: one?", "short", PREFIX + "Q: two, longer?"]
    plain = [g.token_ids for g in generate(model, tok, prompts, GREEDY)]
    plug = StorePrefill(model, tmp_path, chunk_tokens=64)
    assert run_batch(model, tok, prompts, plug) == plain  # cold: computed, stored in the background
    plug.loader.flush()
    assert run_batch(model, tok, prompts, plug) == plain  # warm: the shared prefix comes from the store
    warm = list(plug.recent)[-2:]
    assert all(r["loaded_chunks"] > 0 for r in warm)
    assert len(plug.recent) == 4  # "short" has no full chunk: the batch prefilled it itself


@pytest.fixture()
def kv_server(tiny, tmp_path):
    model, tok = tiny
    plug = StorePrefill(model, tmp_path / "kv", chunk_tokens=64)
    with ServerThread(create_app(model, tok, "tiny", prefill=plug)) as srv:
        yield srv.base_url, plug


def test_server_reuses_stored_prefixes(tiny, kv_server):
    url, plug = kv_server
    model, tok = tiny
    body = {"model": "tiny", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    texts = []
    for q in ("first question", "second question", "first question"):
        r = httpx.post(url + "/completions", json={**body, "prompt": PREFIX + q}, timeout=60)
        assert r.status_code == 200
        texts.append(r.json()["choices"][0]["text"])
        plug.loader.flush()
    assert (
        texts[0]
        == texts[2]
        == generate(model, tok, [PREFIX + "first question"], GREEDY)[0].text[: len(texts[0])]
    )
    assert [r["loaded_chunks"] > 0 for r in plug.recent] == [False, True, True]
    r = httpx.post(url + "/completions", json={**body, "prompt": "x" * 40000}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert httpx.get(url.removesuffix("/v1") + "/health", timeout=10).status_code == 200

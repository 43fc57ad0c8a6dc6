"""`tenfold cake store` and `tenfold cake run` against stores holding other files, corrupt chunks and
temporary files of killed writers."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import tenfold.cake.store as store_mod
from tenfold.cake.loader import CakeLoader
from tenfold.cake.store import KVStore
from tenfold.cli import app
from tenfold.core.errors import TenfoldError
from tenfold.core.models import load_model
from tenfold.core.sampler import encode_prompt

from .test_store import chunk, key

runner = CliRunner()


def _model_in(root):
    f = root / "my-finetune" / "model.safetensors"
    f.parent.mkdir(parents=True)
    save_file({"w": torch.ones(16)}, f)
    return f


def test_store_clear_and_evict_keep_other_files(tmp_path):
    store = KVStore(tmp_path)
    for i in range(3):
        store.put(key(i), chunk(i))
    model = _model_in(tmp_path)
    r = runner.invoke(app, ["cake", "store", str(tmp_path), "--max-gb", "1e-9"])
    assert r.exit_code == 0, r.output
    assert "evicted 3 chunks" in r.stdout and model.is_file() and len(store) == 0
    store.put(key(0), chunk(0))
    r = runner.invoke(app, ["cake", "store", str(tmp_path), "--clear"])
    assert r.exit_code == 0, r.output
    assert "removed 1 chunk" in r.stdout and model.is_file() and len(store) == 0
    assert "1 other" in r.stdout  # the model directory: reported, never touched


def test_store_refuses_to_clear_a_directory_it_does_not_own(tmp_path):
    model = _model_in(tmp_path)
    r = runner.invoke(app, ["cake", "store", str(tmp_path), "--clear"])
    assert isinstance(r.exception, TenfoldError) and "my-finetune" in str(r.exception)
    assert model.is_file()
    r = runner.invoke(app, ["cake", "store", str(tmp_path)])
    assert r.exit_code == 0 and "read-only" in r.stdout and model.is_file()


def test_store_reports_and_clears_temporary_files(tmp_path):
    store = KVStore(tmp_path)
    store.put(key(0), chunk(0))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / key(1)[:2] / store_mod.tmp_name(key(1), child.pid)
        live.parent.mkdir(exist_ok=True)
        live.write_bytes(b"\0" * 3000)
        r = runner.invoke(app, ["cake", "store", str(tmp_path)])
        assert r.exit_code == 0, r.output
        assert "1 chunk" in r.stdout and "1 temporary file (2.9 KiB)" in r.stdout
        child.kill()
        child.wait()  # its writer is killed: the file is now stale
        r = runner.invoke(app, ["cake", "store", str(tmp_path), "--clear"])
        assert r.exit_code == 0, r.output
        assert not live.exists() and "removed 1 stale temporary file (2.9 KiB)" in r.stdout
        assert "0 chunks" in r.stdout and "0 temporary files" in r.stdout
    finally:
        child.kill()
        child.wait()


def _header_metadata_string(path):
    data = path.read_bytes()
    hlen = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + hlen])
    header["__metadata__"] = "oops"
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + hlen :])


@pytest.mark.parametrize("mode", ["io_only", "cake"])
def test_run_with_a_corrupt_chunk_recomputes_it(tmp_path, mode):
    prompt = "The quick brown fox jumps over the lazy dog, " * 3
    args = ["cake", "run", prompt, "--store", str(tmp_path / "kv"), "--model", "tiny", "--mode", mode]
    args += ["--chunk-tokens", "16", "--max-tokens", "4", "--device", "cpu"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    lm, tok = load_model("tiny", "cpu")
    keys = CakeLoader(lm, None, 16).keys(encode_prompt(tok, prompt))
    store = KVStore(tmp_path / "kv")
    assert len(keys) > 2 and all(store.contains(k) for k in keys)
    _header_metadata_string(store.path(keys[0 if mode == "io_only" else -1]))  # the first one it reads
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.stdout == first.stdout  # the same answer, recomputed
    assert "1 corrupt chunks dropped" in again.stderr
    third = runner.invoke(app, args)  # the dropped chunk was stored again, intact
    assert third.exit_code == 0 and third.stdout == first.stdout and "0 corrupt" in third.stderr


def test_store_command_on_a_missing_directory(tmp_path):
    r = runner.invoke(app, ["cake", "store", str(tmp_path / "nope")])
    assert isinstance(r.exception, TenfoldError)
    assert not os.path.exists(tmp_path / "nope")


@pytest.mark.parametrize(
    "flag,tokens,serving_tokens", [("--quick", [4096], 4096), ("--full", [4096, 8192, 16384], 8192)]
)
def test_bench_takes_the_reproductions_settings(monkeypatch, tmp_path, flag, tokens, serving_tokens):
    """`tenfold cake bench --quick/--full` runs exactly what `tenfold reproduce cake` runs in that mode."""
    import tenfold.cake.api as api

    seen = {}

    def fake_bench(cfg, quiet=False, threads=1, serving=False):
        seen["cfg"] = cfg
        return {"configs": [], "serving": {"speedup": 2.0}}

    monkeypatch.setattr(api, "bench", fake_bench)
    monkeypatch.setattr("tenfold.cake.bench.summarize", lambda result: {"worst": (1.0, "none")})
    out = runner.invoke(app, ["cake", "bench", flag, "--json", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert seen["cfg"].tokens == tokens and seen["cfg"].serving_tokens == serving_tokens
    assert json.loads((tmp_path / "r.json").read_text())["serving"]["speedup"] == 2.0


def test_bench_refuses_a_prefix_shorter_than_a_chunk():
    out = runner.invoke(app, ["cake", "bench", "--tokens", "100"])
    assert isinstance(out.exception, TenfoldError) and "at least one chunk" in str(out.exception)

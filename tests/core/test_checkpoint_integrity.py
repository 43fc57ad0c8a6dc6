"""Checkpoint verification on load: a damaged checkpoint is refused with a one-line `CheckpointError`.

Each case starts from a tiny tenfold checkpoint written by `save_model` and damages one thing: a tensor
removed, an unexpected or wrongly shaped tensor added, a NaN/Inf in a weight, bytes flipped in the weights
file, a file of the record deleted or resized, the tokenizer deleted. Weight rewrites go through safetensors'
own writer, so the file stays well-formed and only the checks added for this catch the damage.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tenfold.core.errors import CheckpointError
from tenfold.core.models import META_FILE, build_preset, load_model, save_model

WEIGHTS = "model.safetensors"
VICTIM = "model.layers.1.mlp.up_proj.weight"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    model, tok = build_preset("tiny")
    return save_model(model, tok, tmp_path_factory.mktemp("saved") / "tiny-ckpt", note="integrity test")


@pytest.fixture
def ckpt(saved, tmp_path) -> Path:
    """A fresh copy of the saved checkpoint, free to damage."""
    return Path(shutil.copytree(saved, tmp_path / "ckpt"))


def _rewrite_weights(path: Path, edit) -> None:
    """Rewrite model.safetensors after `edit(dict)`, and drop the sha256 record (as a user's checkpoint has
    none), so that what is tested is the tensor check, not the hash check."""
    tensors = load_file(str(path / WEIGHTS))
    edit(tensors)
    save_file(tensors, str(path / WEIGHTS), metadata={"format": "pt"})
    meta_file = path / META_FILE
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        meta.pop("files", None)
        meta_file.write_text(json.dumps(meta))


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = str(err.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


def test_round_trip_same_logits(saved):
    model, tok = build_preset("tiny")
    loaded, tok2 = load_model(saved)
    ids = tok.encode("round trip")
    assert torch.equal(_logits(model, ids), _logits(loaded, ids))
    assert tok2.encode("round trip") == ids


def test_save_records_sha256_and_size_of_every_file(saved):
    meta = json.loads((saved / META_FILE).read_text())
    assert meta["note"] == "integrity test"
    files = meta["files"]
    for name in (WEIGHTS, "config.json", "tokenizer.json"):
        assert name in files
    assert META_FILE not in files
    for name, rec in files.items():
        assert rec["size"] == (saved / name).stat().st_size
        assert len(rec["sha256"]) == 64


def test_missing_tensor(ckpt):
    _rewrite_weights(ckpt, lambda t: t.pop(VICTIM))
    _refused(ckpt, "missing", VICTIM, "1 ")


def test_unexpected_tensor(ckpt):
    _rewrite_weights(ckpt, lambda t: t.update({"model.layers.9.extra.weight": torch.zeros(4, 4)}))
    _refused(ckpt, "unexpected", "model.layers.9.extra.weight")


def test_mismatched_shape(ckpt):
    _rewrite_weights(ckpt, lambda t: t.update({VICTIM: torch.zeros(4, 4)}))
    _refused(ckpt, VICTIM, "shape")


def test_nan_weight(ckpt):
    def poison(t):
        t[VICTIM][3, 7] = float("nan")

    _rewrite_weights(ckpt, poison)
    _refused(ckpt, "non-finite", VICTIM)


def test_inf_weight(ckpt):
    def poison(t):
        t["model.norm.weight"][0] = float("inf")

    _rewrite_weights(ckpt, poison)
    _refused(ckpt, "non-finite", "model.norm.weight")


def test_flipped_bytes(ckpt):
    f = ckpt / WEIGHTS
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = bytes(b ^ 0x5A for b in data[mid : mid + 8])
    f.write_bytes(bytes(data))
    _refused(ckpt, WEIGHTS, "sha256")


def test_resized_file(ckpt):
    with open(ckpt / "config.json", "a") as f:
        f.write("\n")
    _refused(ckpt, "config.json", "size")


def test_listed_file_missing(ckpt):
    (ckpt / "generation_config.json").unlink()
    _refused(ckpt, "generation_config.json", "missing")


def test_malformed_record(ckpt):
    meta = json.loads((ckpt / META_FILE).read_text())
    meta["files"] = {"../../etc/passwd": {"sha256": "0" * 64, "size": 1}}
    (ckpt / META_FILE).write_text(json.dumps(meta))
    _refused(ckpt, META_FILE)


def test_tokenizer_missing(ckpt):
    (ckpt / "tokenizer.json").unlink()
    meta = json.loads((ckpt / META_FILE).read_text())
    meta.get("files", {}).pop("tokenizer.json", None)  # so the tokenizer check speaks, not the record
    (ckpt / META_FILE).write_text(json.dumps(meta))
    msg = _refused(ckpt, "tokenizer.json")
    assert "sentencepiece" not in msg


def test_tokenizer_config_without_vocabulary(ckpt):
    """transformers 5 builds an empty tokenizer from a bare tokenizer_config.json; that must not load."""
    (ckpt / "tokenizer.json").unlink()
    (ckpt / META_FILE).unlink()
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    _refused(ckpt, "vocabulary", "tokenizer.json")


def test_checkpoint_without_record_still_loads(ckpt):
    """Checkpoints saved before the record existed (or a user's own) load, unhashed."""
    (ckpt / META_FILE).unlink()
    model, tok = load_model(ckpt)
    ref, _ = build_preset("tiny")
    ids = tok.encode("old")
    assert torch.equal(_logits(model, ids), _logits(ref, ids))


def test_files_added_after_save_are_ignored(ckpt):
    """Trainer checkpoints add optimizer state next to what `save_model` wrote; they still load."""
    (ckpt / "trainer.json").write_text("{}")
    load_model(ckpt)


def test_cli_one_line_exit_2(ckpt):
    def poison(t):
        t[VICTIM][0, 0] = float("nan")

    _rewrite_weights(ckpt, poison)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "tenfold", "generate", "--model", str(ckpt), "--max-tokens", "2", "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and VICTIM in lines[0], proc.stderr

"""tenfold-base by name: `tenfold models`, `generate` and `serve` default to it, SFT starts from it,
a missing one is a one-line error with the build command; `tenfold base` commands."""

import json

import pytest
import torch
from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core.errors import TenfoldError
from tenfold.core.models import build_preset, load_model, save_model

runner = CliRunner()


@pytest.fixture
def fake_base(tmp_path, monkeypatch):
    """A tiny checkpoint standing in for the shipped tenfold-base."""
    model, tok = build_preset("tiny", seed=7)
    path = save_model(model, tok, tmp_path / "base")
    monkeypatch.setattr("tenfold.base.train.model_dir", lambda train=True, **kw: path)
    monkeypatch.setattr("tenfold.base.api.model_dir", lambda train=True, **kw: path)  # imported by name
    monkeypatch.setattr("tenfold.base.train.model_key", lambda: "tenfold-base-fake")
    return path, model


def test_load_by_name(fake_base):
    path, model = fake_base
    loaded, tok = load_model("tenfold-base", "cpu")
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )
    assert tok.role_ids["assistant"] is not None


def test_missing_base_is_an_error_naming_the_build(tmp_path, monkeypatch):
    from tenfold.core.cache import forget_shipped

    monkeypatch.setenv("TENFOLD_ARTEFACTS", str(tmp_path / "none"))
    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path / "cache"))
    forget_shipped()
    try:
        with pytest.raises(TenfoldError, match="tenfold artefacts build tenfold-base"):
            load_model("tenfold-base")
        r = runner.invoke(app, ["generate", "hello"])
        assert isinstance(r.exception, TenfoldError) and "tenfold artefacts build tenfold-base" in str(
            r.exception
        )
        assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    finally:
        monkeypatch.undo()
        forget_shipped()


def test_generate_defaults_to_the_base(fake_base):
    r = runner.invoke(app, ["generate", "hello", "--max-tokens", "4"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["generate", "hello", "--model", "tiny", "--max-tokens", "4"])
    assert r.exit_code == 0, r.output  # the untrained presets stay available by name


def test_models_lists_the_base_first():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert "tenfold-base" in lines[1] and any(line.strip().startswith("tiny") for line in lines[2:])


def test_sft_from_the_base_starts_from_its_weights(fake_base):
    from tenfold.core.sft import SFTRecipe, start_model

    _, model = fake_base
    recipe = SFTRecipe("agent", base="tenfold-base")
    start, _ = start_model(recipe)
    assert torch.equal(start.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert recipe.cache_key()["base"] == "tenfold-base-fake"
    assert "base" not in SFTRecipe("agent").cache_key()  # recipes without a base keep their keys
    with pytest.raises(TenfoldError, match="preset"):
        start_model(SFTRecipe("agent", preset="small", base="tenfold-base"))


def test_base_mixture_and_eval_commands(fake_base, tmp_path, monkeypatch):
    r = runner.invoke(app, ["base", "mixture", "--docs", "100"])
    assert r.exit_code == 0 and "recall" in r.output and "of tokens" in r.output
    r = runner.invoke(app, ["base", "mixture", "--show", "chat"])
    assert r.exit_code == 0 and "<|assistant|>" in r.output
    from tenfold.base.probes import ProbeConfig

    small = ProbeConfig(copy_n=2, recall_episodes=1, recall_facts=2, arith_n=1, chat_n=2, loss_docs=2)
    monkeypatch.setattr(ProbeConfig, "quick", classmethod(lambda cls: small))
    out = tmp_path / "probes.json"
    r = runner.invoke(app, ["base", "eval", "--quick", "--workers", "1", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "copy@800" in json.loads(out.read_text())["probes"]
    r = runner.invoke(app, ["base", "eval", "--quick", "--over-training", str(tmp_path / "nothing")])
    assert isinstance(r.exception, TenfoldError) and "no training checkpoints" in str(r.exception)

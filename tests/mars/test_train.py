"""Pretraining the tiny LLaVA: a short run end to end, the recipe key, and the shipped model's skill."""

import json

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.core.models import trained_model_key
from tenfold.mars import data
from tenfold.mars import model as M
from tenfold.mars.train import PretrainRecipe, model_dir, pretrain


def test_a_short_pretraining_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    path = pretrain(PretrainRecipe(steps=30, batch_size=8, warmup=5), tmp_path, quiet=True)
    info = json.loads((tmp_path / "pretrain.json").read_text())
    assert len(info["losses"]) == 30 and info["losses"][-1] < info["losses"][0]
    assert set(info["held_out"]) == set(data.DOMAINS)
    model, tok = M.load(path)
    assert M.image_token_id(model) == tok.vocab_size


def test_recipe_key_names_the_base_it_starts_from():
    assert PretrainRecipe().cache_key()["language"] == trained_model_key("tenfold-base")
    assert PretrainRecipe(language="scratch").cache_key()["language"] == "scratch"
    with pytest.raises(TenfoldError, match="steps"):
        PretrainRecipe(steps=0)


def test_shipped_model_answers_source_questions_and_not_target_ones():
    """The pretrained skill MARS fine-tunes from: the source domain is learnt, the target is new."""
    info = json.loads((model_dir().parent / "pretrain.json").read_text())
    assert info["held_out"]["source"]["accuracy"] > 0.5
    assert info["held_out"]["target"]["accuracy"] == 0.0
    model, tok = M.load(model_dir())
    exs = [ex for ex in data.dataset("source", 64, "test") if ex.question == "how many shapes?"]
    score = M.score(model, M.encode(exs, tok, M.image_token_id(model)), tok.pad_id)
    assert score["accuracy"] > 0.9  # counting is the easiest skill: 100% at 1,200 steps already

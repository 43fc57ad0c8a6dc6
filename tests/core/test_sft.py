"""Cached SFT (core.sft): keys from recipes, train once then load, and the training a plain run gives."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
import torch

from tenfold.core import sft
from tenfold.core.cache import forget_shipped
from tenfold.core.errors import TenfoldError
from tenfold.core.models import build_preset, load_model
from tenfold.core.train import TrainConfig, train_lm

DRILL = sft.DrillRecipe("micro", steps=2, batch_size=2, lr=1e-3, seed=3)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty user cache and no shipped folder."""
    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TENFOLD_ARTEFACTS", str(tmp_path / "none"))
    forget_shipped()
    yield tmp_path / "cache"
    forget_shipped()


def drill_pairs(tok) -> list[tuple[str, str]]:
    return [(f"{w}|", w) for w in ("abc", "hello", "tenfold", "xyz")]


def sft_texts(tok) -> list[str]:
    return ["the cat sat", "a longer line of text to learn", "short", "one more example here"]


class Counting:
    """Examples that count how often they are made (once per training)."""

    def __init__(self, make):
        self.make, self.calls = make, 0

    def __call__(self, tok):
        self.calls += 1
        return self.make(tok)


def expected_key(kind: str, config: dict, version: str) -> str:
    """The key as the cache documents it: the kind and the first 16 hex digits of the sha256 of the
    sorted JSON of kind, config and version."""
    blob = json.dumps({"kind": kind, "config": config, "version": version}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_drill_trains_once_then_loads_from_the_cache(cache):
    data = Counting(drill_pairs)
    drill = sft.drill_model("toy-drill", DRILL, "v1", data, quiet=True)
    config = {"preset": "micro", "steps": 2, "batch_size": 2, "lr": 1e-3, "seed": 3}
    assert drill.artefact.key == expected_key("toy-drill", config, "v1")
    assert drill.available() is None
    path = drill.path()
    assert path == cache / drill.artefact.key / "train" / "last" and data.calls == 1
    assert drill.available() == "cache"
    assert sft.drill_model("toy-drill", DRILL, "v1", data, quiet=True).path() == path and data.calls == 1
    assert drill.path(retrain=True) == path and data.calls == 2
    load_model(path)  # a loadable checkpoint
    # every recipe field and the data version are in the key; `folder` only moves the checkpoint
    keys = {
        sft.drill_model("toy-drill", replace(DRILL, **change), "v1", data).artefact.key
        for change in ({}, {"steps": 3}, {"lr": 2e-3}, {"seed": 4}, {"batch_size": 4}, {"preset": "tiny"})
    }
    keys.add(sft.drill_model("toy-drill", DRILL, "v2", data).artefact.key)
    assert len(keys) == 7
    flat = sft.drill_model("toy-drill", DRILL, "v1", data, folder="")
    assert flat.artefact.key == drill.artefact.key and flat.checkpoint == "last"


def test_sft_from_a_warm_start_is_the_plain_training_of_its_recipe(cache):
    """The SFT model of a recipe with a warm start trains the warm-up, then SFT from it, with the
    TrainConfig the module docstring names; a second look-up trains nothing."""
    drills = []

    def drill(r, quiet):
        drills.append(r)
        return sft.drill_model("toy-drill", r, "v1", drill_pairs, quiet=quiet)

    recipe = sft.SFTRecipe("toy", preset="micro", steps=3, batch_size=2, lr=2e-3, max_len=64, seed=5)
    recipe = replace(recipe, warm_start=DRILL, ckpt_every=2)
    data = Counting(sft_texts)
    model = sft.sft_model("toy-model", recipe, "v1", data, drill, quiet=True)
    path = model.path()
    assert path.parent.name == "train" and (path.parent / "step-000002").is_dir()
    assert data.calls == 1 and drills == [DRILL]
    again = sft.sft_model("toy-model", recipe, "v1", data, drill, quiet=True).path()
    assert again == path and data.calls == 1 and len(drills) == 1

    # the same two stages by hand, with core.train alone
    by_hand, tok = build_preset("micro", seed=3)
    train_lm(by_hand, tok, drill_pairs(tok), TrainConfig(steps=2, batch_size=2, lr=1e-3, max_len=512, seed=3))
    cfg = TrainConfig(steps=3, batch_size=2, lr=2e-3, max_len=64, seed=5, bucket_by_length=True)
    train_lm(by_hand, tok, sft_texts(tok), cfg)
    got, want = weights(load_model(path)[0]), weights(by_hand)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_sft_key_is_the_recipe_without_its_checkpoint_interval(cache):
    recipe = sft.SFTRecipe("toy", preset="micro", steps=3, warm_start=DRILL)
    key = sft.sft_model("toy-model", recipe, "v1", sft_texts).artefact.key
    config = {
        "role": "toy",
        "preset": "micro",
        "steps": 3,
        "batch_size": 16,
        "lr": 1e-3,
        "max_len": 1024,
        "seed": 0,
        "warm_start": {"preset": "micro", "steps": 2, "batch_size": 2, "lr": 1e-3, "seed": 3},
    }
    assert key == expected_key("toy-model", config, "v1")
    same = sft.sft_model("toy-model", replace(recipe, ckpt_every=7), "v1", sft_texts).artefact.key
    other = sft.sft_model("toy-model", replace(recipe, lr=3e-3), "v1", sft_texts).artefact.key
    warm = sft.sft_model("toy-model", replace(recipe, warm_start=replace(DRILL, steps=9)), "v1", sft_texts)
    assert same == key and len({key, other, warm.artefact.key}) == 3


def test_a_warm_start_of_another_preset_is_refused_before_training(cache):
    data = Counting(sft_texts)
    recipe = sft.SFTRecipe("toy", preset="tiny", steps=2, warm_start=DRILL)
    drill_data = Counting(drill_pairs)

    def drill(r, quiet):
        return sft.drill_model("toy-drill", r, "v1", drill_data, quiet=quiet)

    with pytest.raises(TenfoldError, match="warm start is 'micro', recipe is 'tiny'"):
        sft.sft_model("toy-model", recipe, "v1", data, drill).path()
    with pytest.raises(TenfoldError, match="no drill"):
        sft.sft_model("toy-model", replace(recipe, preset="micro"), "v1", data).path()
    assert data.calls == 0 and drill_data.calls == 0 and not list(cache.rglob("trainer.json"))

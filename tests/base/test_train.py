"""The pretraining recipe: its stages run in order into their folders, each from the one before; an
interrupted build resumes; the key changes with the recipe; the probe curve chains a build's stages."""

import json

import pytest
import torch

from tenfold.base.api import checkpoints
from tenfold.base.train import BaseRecipe, base_artefact, pretrain
from tenfold.core.errors import TenfoldError
from tenfold.core.models import load_model


def small_recipe(**kw) -> BaseRecipe:
    cfg = dict(preset="micro", docs=40, max_len=1024, steps=4, batch_size=2, warmup_steps=1, ckpt_every=2)
    return BaseRecipe(**(cfg | dict(copy_steps=2, focus_steps=4, focus_docs=30) | kw))


def steps_of(folder) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]


def test_three_stages_run_in_order_and_the_last_is_the_model(tmp_path):
    recipe = small_recipe()
    assert recipe.stages() == ["copy", "mix", "train"]
    last = pretrain(recipe, tmp_path, quiet=True)
    assert last == tmp_path / "train" / "last"
    for name, steps in (("copy", 2), ("mix", 4), ("train", 4)):
        assert json.loads((tmp_path / name / "last" / "trainer.json").read_text())["step"] == steps
        assert steps_of(tmp_path / name)[-1] == steps - 1
    # each stage starts from the weights the stage before ended with
    model, _ = load_model(last, "cpu")
    mix, _ = load_model(tmp_path / "mix" / "last", "cpu")
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), mix.parameters(), strict=True))
    # the probe curve of a build folder: the stages one after another, steps counted on
    points = [step for step, _ in checkpoints(tmp_path)]
    assert points == [2, 4, 6, 8, 10]


def test_an_interrupted_build_resumes_where_it_stopped(tmp_path, capsys):
    recipe = small_recipe()
    pretrain(recipe, tmp_path, quiet=True)
    first, _ = load_model(tmp_path / "train" / "last", "cpu")
    # lose the focus stage's end: the build redoes its last 2 steps only, the stages before not at all
    import shutil

    shutil.rmtree(tmp_path / "train" / "last")
    shutil.rmtree(tmp_path / "train" / "step-000004")
    mix_log = steps_of(tmp_path / "mix")
    capsys.readouterr()
    pretrain(recipe, tmp_path, quiet=False)
    said = capsys.readouterr()
    assert f"resuming from {tmp_path / 'train' / 'step-000002'}" in said.out + said.err
    again, _ = load_model(tmp_path / "train" / "last", "cpu")
    assert steps_of(tmp_path / "mix") == mix_log  # no step of the finished stage again
    for a, b in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_without_focus_the_mixture_is_the_last_stage(tmp_path):
    recipe = small_recipe(copy_steps=0, focus_steps=0)
    assert recipe.stages() == ["train"]
    assert pretrain(recipe, tmp_path, quiet=True) == tmp_path / "train" / "last"
    assert not (tmp_path / "mix").exists() and not (tmp_path / "copy").exists()


def test_recipe_key_and_validation():
    key = base_artefact(BaseRecipe()).key
    assert base_artefact(BaseRecipe(focus_steps=10)).key != key
    assert base_artefact(BaseRecipe(focus_weights={"copy": 1.0})).key != key
    # recipes without a focus stage do not carry its (unused) fields in their key
    assert (
        base_artefact(BaseRecipe(focus_steps=0, focus_lr=1e-3)).key
        == base_artefact(BaseRecipe(focus_steps=0)).key
    )
    for bad in (
        dict(focus_steps=-1),
        dict(copy_steps=-1),
        dict(focus_docs=0),
        dict(focus_weights={"x": 1.0}),
    ):
        with pytest.raises(TenfoldError):
            BaseRecipe(**bad).validate()

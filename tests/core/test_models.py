import pytest
import torch

from tenfold.core.errors import CheckpointError, UnknownModelError
from tenfold.core.models import PRESETS, build_preset, count_params, load_model, save_model


@pytest.mark.parametrize(
    "name,lo,hi",
    [("tiny", 0.7e6, 1.5e6), ("small", 4e6, 8e6), ("base", 20e6, 40e6), ("moe-tiny", 0.6e6, 1.5e6)],
)
def test_preset_sizes(name, lo, hi):
    model, tok = build_preset(name)
    assert lo <= count_params(model) <= hi
    assert model.config.vocab_size == tok.vocab_size


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_listed_param_count_equals_the_built_model(name):
    """`tenfold models` counts parameters from the config (no torch); the built model is the reference."""
    from tenfold.core.presets import describe_presets

    listed = {r["name"]: r["params"] for r in describe_presets()}
    model, _ = build_preset(name)
    assert listed[name] == count_params(model)


def test_moe_preset_is_sparse():
    model, _ = build_preset("moe-tiny")
    assert model.config.num_local_experts == PRESETS["moe-tiny"].experts == 4


def test_same_seed_same_weights():
    a, _ = build_preset("tiny", seed=1)
    b, _ = build_preset("tiny", seed=1)
    c, _ = build_preset("tiny", seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))


def test_unknown_model_lists_presets():
    with pytest.raises(UnknownModelError) as err:
        load_model("gpt-17")
    for name in PRESETS:
        assert name in str(err.value)


def test_dir_without_config(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["tiny", "moe-tiny"])
def test_save_load_round_trip(tmp_path, name):
    model, tok = load_model(name)
    save_model(model, tok, tmp_path / "ckpt", note="test")
    model2, tok2 = load_model(tmp_path / "ckpt")
    assert type(model2) is type(model)
    ids = torch.tensor([tok.encode("round trip")])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, model2(ids).logits, atol=1e-6)
    assert tok2.encode("x") == tok.encode("x")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()

"""Per-module LoRA ranks through PEFT, and the check that catches PEFT's and LLaVA's silent mismatches."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tenfold.mars import data, lora
from tenfold.mars import model as M


def _fresh(llava_dir):
    return M.load(llava_dir)[0]


def test_each_module_gets_its_rank_on_every_layer(llava_dir):
    peft_model = lora.attach(_fresh(llava_dir), 2, 16)
    got = lora.realised_ranks(peft_model)
    assert len(got["vision"]) == 3 * 6 and len(got["language"]) == 4 * 7 and not got["other"]
    assert set(got["vision"].values()) == {2} and set(got["language"].values()) == {16}
    # the adapter's weights have those shapes, and alpha / r = 2 everywhere
    for mod in peft_model.modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "r", {}):
            r = mod.r["default"]
            assert mod.lora_A["default"].weight.shape[0] == r == mod.lora_B["default"].weight.shape[1]
            assert mod.scaling["default"] == pytest.approx(2.0)
    assert not any(p.requires_grad for n, p in peft_model.named_parameters() if "lora_" not in n)


def test_a_rank_pattern_that_matches_nothing_is_caught(llava_dir):
    """PEFT #3582: a rank_pattern key that matches no module is ignored; the layers keep the default r."""
    cfg = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=lora.lora_config(4, 8).target_modules,
        rank_pattern={r"model\.vison_tower\..*": 4},  # typo: the vision tower keeps r = 8
    )
    with pytest.warns(RuntimeWarning, match="did not match any targeted module"):  # peft 0.21 warns, goes on
        peft_model = get_peft_model(_fresh(llava_dir), cfg)
    with pytest.raises(lora.RankMismatchError, match="vision: 18 of 18 layers have a rank other than 4"):
        lora.check_ranks(peft_model, {"vision": 4, "language": 8})


def test_bare_leaf_names_also_hit_the_other_module(llava_dir):
    """LLaVA #1647: `q_proj`-style names meant for the LLM also adapt the CLIP layers, and miss others."""
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(_fresh(llava_dir), cfg)
    assert lora.realised_ranks(peft_model)["vision"]  # the vision tower got LoRA
    with pytest.raises(lora.RankMismatchError, match="targeted layers without LoRA"):
        lora.check_ranks(peft_model, {"vision": 8, "language": 8})


def test_projector_is_never_adapted(llava_dir):
    peft_model = lora.attach(_fresh(llava_dir), 4, 4)
    assert not any("multi_modal_projector" in n for n in lora.realised_ranks(peft_model)["language"])
    assert not any("multi_modal_projector" in n for n, p in peft_model.named_parameters() if p.requires_grad)


def test_bad_ranks_are_named():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(lora.TenfoldError, match="vision rank must be a positive integer"):
            lora.lora_config(bad, 4)


def _adalora_steps(llava_dir, call_update: bool, steps: int = 12) -> dict[str, float]:
    torch.manual_seed(0)
    model = lora.attach_adalora(
        _fresh(llava_dir), init_r=6, target_r=2, total_step=steps, tinit=2, tfinal=2, delta_t=1
    )
    llava_tok = M.load(llava_dir)[1]
    enc = M.encode(data.dataset("target", 8), llava_tok, M.image_token_id(model.get_base_model()))
    batch = M.collate(enc, llava_tok.pad_id)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(steps):
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            pixel_values=batch.pixel_values,
            labels=batch.labels,
        )
        out.loss.backward()
        opt.step()
        if call_update:
            model.base_model.update_and_allocate(step)
        opt.zero_grad()
    from tenfold.mars.finetune import _adalora_ranks

    return _adalora_ranks(model)


def test_adalora_prunes_only_when_update_and_allocate_runs(llava_dir):
    """PEFT #1801: without `update_and_allocate` every step, AdaLoRA stays at init_r."""
    assert _adalora_steps(llava_dir, call_update=False) == {"vision": 6.0, "language": 6.0}
    kept = _adalora_steps(llava_dir, call_update=True)
    assert sum(kept.values()) / 2 < 6.0

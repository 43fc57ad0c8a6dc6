import json

import pytest
import torch

from tenfold.core.errors import CheckpointError
from tenfold.core.models import build_preset
from tenfold.rl import Config, UniformSource, sample_groups, train_rl
from tenfold.rl.rollout import pack, token_logprobs


class Item:
    def __init__(self, prompt):
        self.prompt = prompt


def digit_reward(item, text):
    return 1.0 if text[:1].isdigit() else -1.0


def small_cfg(**kw):
    base = dict(group_size=16, prompts_per_step=4, steps=12, lr=3e-3, max_new_tokens=1, stop=(), eval_every=0)
    base.update(kw)
    return Config(**base)


def digit_share(model, tok):
    rolls = sample_groups(model, tok, ["Q:"] * 4, 32, max_new_tokens=1, stop=(), seed=123)
    return sum(r.text[:1].isdigit() for r in rolls) / len(rolls)


def test_rl_raises_the_rewarded_behaviour():
    torch.manual_seed(0)
    model, tok = build_preset("tiny", seed=0)
    before = digit_share(model, tok)
    res = train_rl(model, tok, UniformSource([Item("Q:")] * 4), digit_reward, small_cfg(), quiet=True)
    after = digit_share(model, tok)
    assert res.steps == 12 and res.rollouts == 12 * 4 * 16
    assert after > before + 0.2, (before, after)


def test_rollout_budget_and_dynamic_sampling_count_every_generation():
    model, tok = build_preset("tiny", seed=1)
    cfg = small_cfg(steps=100, dynamic_sampling=True, max_gen_batches=3, group_size=4)
    res = train_rl(
        model, tok, UniformSource([Item("a"), Item("b")]), digit_reward, cfg, rollout_budget=40, quiet=True
    )
    assert res.rollouts >= 40 and res.rollouts - 40 < 3 * 4 * 4  # stops within one step past the budget
    assert sum(h["generated"] for h in res.history) == res.rollouts
    for h in res.history:  # every kept group is informative, and rounds are bounded
        assert h["gen_rounds"] <= 3
        if h["groups_kept"]:
            assert h["informative_share"] == 1.0


def test_logprobs_align_with_the_sampled_tokens():
    model, tok = build_preset("tiny", seed=2)
    rolls = sample_groups(model, tok, ["hello"], 3, temperature=0.0, max_new_tokens=4, stop=())
    ids, attn, comp = pack(rolls, tok.pad_id)
    lp = token_logprobs(model.eval(), ids, attn)
    assert comp.sum().item() == sum(len(r.token_ids) for r in rolls)
    # greedy: every sampled token is the argmax, so its log-prob is the row maximum
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float().log_softmax(-1)
    picked = lp[comp.bool()]
    best = logits.max(-1).values[comp.bool()]
    assert torch.allclose(picked, best, atol=1e-5)


def test_checkpoint_and_resume(tmp_path):
    model, tok = build_preset("tiny", seed=3)
    src = UniformSource([Item("x"), Item("y"), Item("z")], seed=1)
    cfg = small_cfg(steps=4, ckpt_every=2, group_size=4)
    train_rl(model, tok, src, digit_reward, cfg, out_dir=tmp_path, quiet=True)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]
    model2, _ = build_preset("tiny", seed=9)
    src2 = UniformSource([Item("x"), Item("y"), Item("z")], seed=5)
    res = train_rl(
        model2,
        tok,
        src2,
        digit_reward,
        small_cfg(steps=4, group_size=4),
        out_dir=tmp_path,
        resume=True,
        quiet=True,
    )
    assert res.steps == 4 and src2.order == src.order  # the sampler state came back
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)  # and the weights
    res = train_rl(
        model2,
        tok,
        src2,
        digit_reward,
        small_cfg(steps=6, group_size=4),
        out_dir=tmp_path,
        resume=True,
        quiet=True,
    )
    assert res.steps == 6 and len(res.history) == 6
    with pytest.raises(CheckpointError):
        train_rl(
            model2, tok, src2, digit_reward, small_cfg(), out_dir=tmp_path / "none", resume=True, quiet=True
        )

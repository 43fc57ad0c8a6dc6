"""Self-distillation loss (RESD / SDPO form) against hand computations on a 5-token vocabulary, the
reweighting sums, the importance clip, and the EMA teacher."""

import math

import pytest
import torch

from tenfold.core.errors import TenfoldError
from tenfold.rl.distill import (
    DistillConfig,
    EmaTeacher,
    completion_logits,
    distill_loss,
    success_weights,
    topk_buckets,
)

STUDENT = [2.0, 1.0, 0.0, -1.0, -2.0]
TEACHER = [0.0, 2.0, 1.0, -1.0, 0.5]


def softmax(xs):
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def hand_buckets(k=2):
    """Student's top-2 are tokens 0 and 1; the third bucket is the rest, for both distributions."""
    ps, pt = softmax(STUDENT), softmax(TEACHER)
    s = [ps[0], ps[1], 1 - ps[0] - ps[1]]
    t = [pt[0], pt[1], 1 - pt[0] - pt[1]]
    return s, t


def one(logits):
    return torch.tensor([[logits]])  # [B=1, T=1, V=5]


def loss_of(cfg, student=STUDENT, teacher=TEACHER, rollout_logp=None):
    s = one(student).requires_grad_(True)
    tok = torch.tensor([[0]])
    lp = torch.log_softmax(torch.tensor(student), -1)[0] if rollout_logp is None else rollout_logp
    loss, m = distill_loss(s, one(teacher), tok, torch.tensor([[float(lp)]]), torch.ones(1, 1), cfg)
    return loss, m, s


def test_buckets_are_the_student_top_k_plus_the_tail():
    ls, lt = topk_buckets(one(STUDENT), one(TEACHER), 2)
    s, t = hand_buckets()
    assert ls.exp()[0, 0].tolist() == pytest.approx(s, abs=1e-6)
    assert lt.exp()[0, 0].tolist() == pytest.approx(t, abs=1e-6)


def test_reverse_kl_with_the_teacher_floor_by_hand():
    s, t = hand_buckets()
    # the floor raises the teacher's bucket 0 (p_T = 0.08 < 0.2 * p_S = 0.13); the others stay
    floored = [max(tb, 0.2 * sb) for sb, tb in zip(s, t, strict=True)]
    assert floored[0] == pytest.approx(0.2 * s[0]) and floored[1:] == t[1:]
    want = sum(sb * (math.log(sb) - math.log(tb)) for sb, tb in zip(s, floored, strict=True))
    loss, m, _ = loss_of(DistillConfig(top_k=2))
    assert loss.item() == pytest.approx(want, abs=1e-5)
    assert m["floor_share"] == 1.0
    # without the floor: the plain bucketed reverse KL
    plain = sum(sb * (math.log(sb) - math.log(tb)) for sb, tb in zip(s, t, strict=True))
    assert loss_of(DistillConfig(top_k=2, teacher_floor=0))[0].item() == pytest.approx(plain, abs=1e-5)
    assert want < plain and want <= math.log(5)  # the floor caps a position at log 5


def test_forward_kl_and_jsd_by_hand():
    s, t = hand_buckets()
    fwd = sum(tb * (math.log(tb) - math.log(sb)) for sb, tb in zip(s, t, strict=True))
    cfg = DistillConfig(top_k=2, teacher_floor=0, divergence="forward_kl")
    assert loss_of(cfg)[0].item() == pytest.approx(fwd, abs=1e-5)
    mix = [(sb + tb) / 2 for sb, tb in zip(s, t, strict=True)]
    jsd = 0.5 * sum(sb * math.log(sb / mb) for sb, mb in zip(s, mix, strict=True)) + 0.5 * sum(
        tb * math.log(tb / mb) for tb, mb in zip(t, mix, strict=True)
    )
    cfg = DistillConfig(top_k=2, teacher_floor=0, divergence="jsd")
    assert loss_of(cfg)[0].item() == pytest.approx(jsd, abs=1e-5) and jsd <= math.log(2)


def test_full_vocabulary_buckets_give_the_exact_kl():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    exact = torch.nn.functional.kl_div(
        t.log_softmax(-1), s.log_softmax(-1), log_target=True, reduction="none"
    )
    tokens = s.argmax(-1)
    lp = s.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    cfg = DistillConfig(top_k=5, teacher_floor=0)
    loss, _ = distill_loss(s, t, tokens, lp, torch.ones(2, 3), cfg)
    assert loss.item() == pytest.approx(exact.sum(-1).mean().item(), abs=1e-5)


def test_importance_weight_is_truncated_at_two_and_masked_tokens_do_not_count():
    base = loss_of(DistillConfig(top_k=2))[0].item()
    # sampled when the token had log-prob -10: the ratio is huge, clipped at 2
    loss, m, _ = loss_of(DistillConfig(top_k=2), rollout_logp=-10.0)
    assert loss.item() == pytest.approx(2 * base, rel=1e-5) and m["is_weight"] == pytest.approx(2.0)
    s = torch.tensor([[STUDENT, STUDENT]])
    t = torch.tensor([[TEACHER, [5.0, 0.0, 0.0, 0.0, 0.0]]])
    lp = torch.log_softmax(torch.tensor(STUDENT), -1)[0].repeat(1, 2)
    loss, _ = distill_loss(
        s, t, torch.zeros(1, 2, dtype=torch.long), lp, torch.tensor([[1, 0]]), DistillConfig(top_k=2)
    )
    assert loss.item() == pytest.approx(base, rel=1e-5)  # the masked second position adds nothing


def test_gradient_reaches_the_student_only():
    s = one(STUDENT).requires_grad_(True)
    t = one(TEACHER).requires_grad_(True)
    lp = torch.tensor([[float(torch.log_softmax(torch.tensor(STUDENT), -1)[0])]])
    loss, _ = distill_loss(s, t, torch.tensor([[0]]), lp, torch.ones(1, 1), DistillConfig(top_k=2))
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_success_weights_sums():
    w = success_weights(torch.tensor([1.0] + [0.0] * 31))
    assert w[0].item() == pytest.approx(16.0) and w[1].item() == pytest.approx(16 / 31)
    assert w.mean().item() == pytest.approx(1.0)
    # k successes and B - k failures carry equal total weight
    for k in (1, 3, 8, 20):
        w = success_weights(torch.tensor([1.0] * k + [0.0] * (32 - k)))
        assert w[:k].sum().item() == pytest.approx(w[k:].sum().item()) and w.mean().item() == pytest.approx(1)
    # all successes (or none): the clamp keeps the weights finite and equal
    assert success_weights(torch.ones(8)).tolist() == pytest.approx([1.0] * 8)
    assert success_weights(torch.zeros(8)).tolist() == pytest.approx([1.0] * 8)


def test_reweighting_scales_each_sequence():
    s = torch.tensor([[STUDENT], [STUDENT]])
    t = torch.tensor([[TEACHER], [TEACHER]])
    lp = torch.log_softmax(torch.tensor(STUDENT), -1)[0].repeat(2, 1)
    tok = torch.zeros(2, 1, dtype=torch.long)
    plain, _ = distill_loss(s, t, tok, lp, torch.ones(2, 1), DistillConfig(top_k=2))
    cfg = DistillConfig(top_k=2, reweight=True)
    w = distill_loss(s, t, tok, lp, torch.ones(2, 1), cfg, success=torch.tensor([1.0, 0.0]))[0]
    assert w.item() == pytest.approx(plain.item())  # weights 1 and 1 for one success in two
    with pytest.raises(TenfoldError, match="success"):
        distill_loss(s, t, tok, lp, torch.ones(2, 1), cfg)


def test_config_and_shape_errors():
    for bad in (dict(top_k=0), dict(divergence="tv"), dict(teacher_floor=1.0), dict(teacher_ceiling=0.5)):
        with pytest.raises(TenfoldError):
            DistillConfig(**bad).validate()
    with pytest.raises(TenfoldError, match="shapes"):
        distill_loss(torch.zeros(1, 2, 5), torch.zeros(1, 3, 5), torch.zeros(1, 2, dtype=torch.long),
                     torch.zeros(1, 2), torch.ones(1, 2), DistillConfig())  # fmt: skip


def test_ema_teacher_moves_by_the_rate_and_hard_sync_copies():
    student = torch.nn.Linear(3, 2)
    teacher = EmaTeacher(student, rate=0.25)
    before = [p.clone() for p in teacher.model.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.update(student)
    for b, t, s in zip(before, teacher.model.parameters(), student.parameters(), strict=True):
        assert torch.allclose(t, 0.75 * b + 0.25 * s)
    sync = EmaTeacher(torch.nn.Linear(3, 2), hard_sync=True)
    sync.update(student)
    assert all(torch.equal(t, s) for t, s in zip(sync.model.parameters(), student.parameters(), strict=True))
    with pytest.raises(TenfoldError):
        EmaTeacher(student, rate=0.0)


def test_completion_logits_line_up_rows_with_different_prompts():
    from tenfold.core.models import build_preset

    model, tok = build_preset("micro", seed=0)
    model.eval()
    prompts = [tok.encode("a long teacher prompt: "), tok.encode("q:")]
    completions = [tok.encode("xyz"), tok.encode("xy")]
    with torch.no_grad():
        logits, tokens, mask = completion_logits(model, prompts, completions, tok.pad_id)
        assert logits.shape[:2] == (2, 3) and mask.tolist() == [[1, 1, 1], [1, 1, 0]]
        for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):  # each row alone, unpadded
            alone = model(input_ids=torch.tensor([p + c])).logits[0, len(p) - 1 : len(p) - 1 + len(c)]
            assert torch.allclose(logits[i, : len(c)], alone, atol=1e-5)
            assert tokens[i, : len(c)].tolist() == c
    with pytest.raises(TenfoldError, match="empty"):
        completion_logits(model, [[]], [[5]])

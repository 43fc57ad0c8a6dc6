import math

import pytest
import torch

from tenfold.core.errors import TenfoldError
from tenfold.rl.grpo import Config, aggregate, group_advantages, informative, policy_loss


def test_group_advantages_hand_computed():
    # group 1: rewards 1, -1, -1, -1 -> mean -0.5, population std sqrt(0.75)
    r = torch.tensor([[1.0, -1.0, -1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    a = group_advantages(r, eps=0.0)
    s = math.sqrt(0.75)
    assert torch.allclose(a[0], torch.tensor([1.5 / s, -0.5 / s, -0.5 / s, -0.5 / s]))
    assert torch.allclose(a[1], torch.tensor([1.0, 1.0, -1.0, -1.0]))
    assert torch.allclose(group_advantages(r, scale_by_std=False)[0], torch.tensor([1.5, -0.5, -0.5, -0.5]))


def test_zero_variance_group_has_zero_advantage_and_is_not_informative():
    r = torch.tensor([[1.0, 1.0, 1.0], [-1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    assert torch.equal(group_advantages(r)[0], torch.zeros(3))
    assert informative(r).tolist() == [False, True, False]
    with pytest.raises(TenfoldError):
        group_advantages(torch.tensor([1.0, 2.0]))


def test_policy_loss_clipping_by_hand():
    cfg = Config(clip_low=0.2, clip_high=0.28)
    old = torch.zeros(1, 4)
    # ratios 1.5, 0.5, 1.1, 0.7 with advantage +1: min(r, clip(r)) = 1.28, 0.5, 1.1, 0.7
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.7]]))
    loss, m = policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 4), cfg)
    assert loss.item() == pytest.approx(-(1.28 + 0.5 + 1.1 + 0.7) / 4, rel=1e-6)
    assert m["clip_share"] == pytest.approx(0.25)
    # advantage -1: -min(-r, -clip(r)) = max(r, clip(r)) = 1.5, 0.8, 1.1, 0.8
    loss, m = policy_loss(logp, old, torch.tensor([-1.0]), torch.ones(1, 4), cfg)
    assert loss.item() == pytest.approx((1.5 + 0.8 + 1.1 + 0.8) / 4, rel=1e-6)


def test_masked_tokens_do_not_count_and_gradient_sign():
    cfg = Config()
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, _ = policy_loss(logp, torch.zeros(2, 3), torch.tensor([2.0, -1.0]), mask, cfg)
    # token-mean over 3 tokens: (-2 - 2 + 1) / 3
    assert loss.item() == pytest.approx(-1.0)
    loss.backward()
    g = logp.grad
    assert g[0, 2] == 0 and g[1, 1] == 0 and g[1, 2] == 0
    assert g[0, 0] < 0 < g[1, 0]  # descending the loss raises log-probs of positive-advantage tokens


def test_aggregations_differ_as_defined():
    per_token = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    assert aggregate(per_token, mask, "token-mean").item() == pytest.approx(8 / 5)
    assert aggregate(per_token, mask, "seq-mean-token-mean").item() == pytest.approx((1 + 4) / 2)


def test_kl_k3_is_zero_at_reference_and_positive_elsewhere():
    cfg = Config(kl_coef=1.0)
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    adv = torch.zeros(1)
    loss, m = policy_loss(logp, logp, adv, torch.ones(1, 2), cfg, ref_logp=logp.clone())
    assert loss.item() == pytest.approx(0.0) and m["kl"] == pytest.approx(0.0)
    ref = torch.log(torch.tensor([[0.25, 0.5]]))
    d = ref - logp
    expected = (torch.exp(d) - d - 1).mean().item()
    loss, m = policy_loss(logp, logp, adv, torch.ones(1, 2), cfg, ref_logp=ref)
    assert loss.item() == pytest.approx(expected) and expected > 0
    # at kl_coef = 0 the KL is still reported (track_kl), but it is not in the loss
    loss, m = policy_loss(logp, logp, adv, torch.ones(1, 2), Config(kl_coef=0.0), ref_logp=ref)
    assert loss.item() == pytest.approx(0.0) and m["kl"] == pytest.approx(expected)


def test_config_validation():
    with pytest.raises(TenfoldError):
        Config(group_size=1).validate()
    with pytest.raises(TenfoldError):
        Config(aggregation="sum").validate()

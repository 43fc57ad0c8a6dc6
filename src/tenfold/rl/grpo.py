"""GRPO / DAPO: group-normalised advantages and the clipped policy loss, readable in one screen.

For a prompt with n sampled completions and rewards r_1..r_n (GRPO, Shao et al. 2024):

    A_i = (r_i - mean(r)) / (std(r) + eps)                       (scale_by_std=False: r_i - mean(r))

Every token t of completion i gets A_i. With the probability ratio rho = pi(y_t) / pi_old(y_t), the
clipped surrogate with DAPO's decoupled ("clip-higher") range (Yu et al. 2025, eps_low 0.2, eps_high 0.28):

    L_t = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)

aggregated as a token mean over all completion tokens of the batch (DAPO's "token-mean"; "seq-mean-
token-mean" averages within each completion first). An optional KL penalty to a reference policy uses
the k3 estimator, KL ~ exp(q - p) - (q - p) - 1 with p, q the policy's and the reference's log-probs.
DAPO's dynamic sampling drops groups whose rewards are all equal (their advantages are all zero).

Dual clip (Ye et al. 2020, used by GiGPO and T2PO with c = 3): for a negative advantage the clipped loss
above grows without bound as rho grows; it is capped at -c * A:  L_t = min(L_t, -c * A) where A < 0.
The KL estimate is clamped to [-10, 10] (verl's "low_var_kl").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tenfold.core.errors import TenfoldError


@dataclass
class Config:
    """Every hyper-parameter of the RL loop in one place (defaults: DAPO's, at tiny-model scale)."""

    group_size: int = 8  # n completions per prompt
    prompts_per_step: int = 8  # prompts whose groups make one training batch
    steps: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.28
    aggregation: str = "token-mean"  # or "seq-mean-token-mean"
    scale_by_std: bool = True
    adv_eps: float = 1e-6
    kl_coef: float = 0.0  # > 0: KL penalty to the starting policy (k3 estimator)
    track_kl: bool = False  # report the KL to the starting policy even when kl_coef = 0 (costs a frozen copy)
    dual_clip: float = 0.0  # c > 1: cap the loss of negative-advantage tokens at -c * A (0: off)
    updates_per_batch: int = 1  # optimiser steps per rollout batch (mini-batches; >1 makes clipping bite)
    micro_batch: int = 0  # samples per forward pass, gradients accumulated (0: a whole mini-batch)
    dynamic_sampling: bool = False  # DAPO: drop zero-variance groups and sample more prompts to refill
    max_gen_batches: int = 4  # dynamic sampling gives up refilling after this many generation rounds
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 8
    stop: tuple[str, ...] = ("\n",)
    seed: int = 0
    eval_every: int = 10  # steps between held-out evaluations (0: only at the end)
    ckpt_every: int = 0  # steps between checkpoints (0: only at the end)

    def validate(self) -> Config:
        if self.group_size < 2:
            raise TenfoldError(f"group_size must be >= 2 (advantages are relative), got {self.group_size}")
        if self.micro_batch < 0:
            raise TenfoldError(f"micro_batch must be >= 0 (0: whole mini-batches), got {self.micro_batch}")
        for name in ("prompts_per_step", "steps", "updates_per_batch", "max_gen_batches", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise TenfoldError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.aggregation not in ("token-mean", "seq-mean-token-mean"):
            raise TenfoldError(
                f"aggregation must be token-mean or seq-mean-token-mean, got {self.aggregation!r}"
            )
        if not (0 <= self.clip_low < 1 and self.clip_high >= 0 and self.lr > 0 and self.kl_coef >= 0):
            raise TenfoldError(f"bad clip, lr or kl settings: {self}")
        if self.dual_clip != 0 and self.dual_clip <= 1:
            raise TenfoldError(f"dual_clip must be 0 (off) or > 1, got {self.dual_clip}")
        return self


def group_advantages(rewards: torch.Tensor, scale_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """rewards [groups, n] -> advantages [groups, n]: centred per group, divided by the group's
    standard deviation (population, as in GRPO's reference code: unbiased=False)."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise TenfoldError(f"rewards must be [groups, n >= 2], got shape {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return centred
    return centred / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)


def informative(rewards: torch.Tensor) -> torch.Tensor:
    """[groups] bool: the groups with any reward variance (DAPO's dynamic-sampling filter)."""
    return (rewards.max(dim=1).values - rewards.min(dim=1).values) > 0


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cfg: Config,
    ref_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Clipped surrogate (+ optional k3 KL) over completion tokens.

    logp, old_logp, ref_logp, mask: [sequences, tokens]; advantages: [sequences] (one per sequence),
    or [sequences, tokens] (one per token). Returns the scalar
    loss and metrics (clipped share, mean ratio, KL)."""
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = (advantages if advantages.dim() == 2 else advantages[:, None]).to(logp.dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - cfg.clip_low, 1 + cfg.clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    if cfg.dual_clip:
        per_token = torch.where(adv < 0, torch.minimum(per_token, -cfg.dual_clip * adv), per_token)
    kl = torch.zeros_like(per_token)
    if ref_logp is not None:
        d = ref_logp - logp
        kl = torch.clamp(torch.exp(d) - d - 1, -10.0, 10.0)
        if cfg.kl_coef > 0:
            per_token = per_token + cfg.kl_coef * kl
    loss = aggregate(per_token, mask, cfg.aggregation)
    n = mask.sum().clamp(min=1)
    ratio, clipped, unclipped, kl = ratio.detach(), clipped.detach(), unclipped.detach(), kl.detach()
    metrics = {
        "clip_share": float(((clipped < unclipped).to(logp.dtype) * mask).sum() / n),  # clip active
        "ratio_mean": float((ratio * mask).sum() / n),
        "kl": float((kl * mask).sum() / n),
    }
    return loss, metrics


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """token-mean: sum over every token / number of tokens (long completions weigh more, DAPO);
    seq-mean-token-mean: mean within each completion, then over completions (GRPO's original)."""
    if how == "token-mean":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    per_seq = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)
    return per_seq.mean()

"""On-policy self-distillation: the student's own samples, scored token by token against a teacher that
is the same network (EMA weights) reading a richer context. The loss of SDPO / OPSD as RESD (Zhang et al.,
arXiv 2605.12741) codes it:

- at every generated position, the student's top-k tokens plus one tail bucket, log(1 - sum of the top-k
  probabilities), for both student and teacher (the teacher's probabilities *of the student's top-k*);
- a teacher floor: log p_T <- max(log p_T, log p_S + log 0.2) per bucket (optionally a ceiling,
  log p_S + log 5 on Manufactoria), so one position's reverse-KL term is at most log 5 ~ 1.61 nats;
- a divergence per position, over the buckets: reverse KL sum p_S (log p_S - log p_T) (the default),
  forward KL sum p_T (log p_T - log p_S), or the Jensen-Shannon divergence with mixture m = (p_S + p_T)/2;
  the floored teacher is not renormalised (as the reference code);
- a truncated importance weight min(pi_theta(y_t) / pi_rollout(y_t), 2), detached, for rollouts sampled
  by slightly older weights;
- per-sequence weights (success-rate reweighting below), then the per-token mean over the batch.

Success-rate reweighting: s = the batch's success rate clamped to [1/B, 1 - 1/B]; a success weighs
(1 - s)^alpha, a failure s^beta (alpha = beta = 1), normalised to batch mean 1, so with k successes in B
the two kinds carry equal total weight: a lone success in 32 weighs 16, each failure ~0.52.

`EmaTeacher` keeps the teacher's weights: theta_T <- (1 - r) theta_T + r theta_S after every student
step (RESD: r = 1e-4; 0.01 on one task), or a hard sync theta_T <- theta_S (Algorithm 1 as written).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from tenfold.core.errors import TenfoldError

DIVERGENCES = ("reverse_kl", "forward_kl", "jsd")


@dataclass
class DistillConfig:
    top_k: int = 100  # student's top-k tokens per position, plus the tail bucket
    divergence: str = "reverse_kl"
    teacher_floor: float = 0.2  # log p_T >= log p_S + log(teacher_floor); 0 turns it off
    teacher_ceiling: float | None = None  # log p_T <= log p_S + log(ceiling) (RESD: 5 on Manufactoria)
    is_clip: float = 2.0  # truncated importance weight
    reweight: bool = False  # success-rate reweighting of sequences
    alpha: float = 1.0  # weight of a success: (1 - s)^alpha
    beta: float = 1.0  # weight of a failure: s^beta

    def validate(self) -> DistillConfig:
        if self.top_k < 1:
            raise TenfoldError(f"top_k must be >= 1, got {self.top_k}")
        if self.divergence not in DIVERGENCES:
            raise TenfoldError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
        if not 0 <= self.teacher_floor < 1:
            raise TenfoldError(f"teacher_floor must be in [0, 1), got {self.teacher_floor}")
        if self.teacher_ceiling is not None and self.teacher_ceiling <= 1:
            raise TenfoldError(f"teacher_ceiling must be > 1 or None, got {self.teacher_ceiling}")
        if self.is_clip <= 0 or self.alpha < 0 or self.beta < 0:
            raise TenfoldError(f"need is_clip > 0 and alpha, beta >= 0: {self}")
        return self


def topk_buckets(student_logits: torch.Tensor, teacher_logits: torch.Tensor, k: int):
    """(log p_S, log p_T) over the student's top-k tokens plus a tail bucket: [..., k + 1] each."""
    ls = torch.log_softmax(student_logits.float(), dim=-1)
    lt = torch.log_softmax(teacher_logits.float(), dim=-1)
    k = min(k, ls.shape[-1])
    idx = ls.topk(k, dim=-1).indices
    top_s, top_t = ls.gather(-1, idx), lt.gather(-1, idx)

    def tail(top: torch.Tensor) -> torch.Tensor:
        # log(1 - sum p) computed stably; clamped away from log 0 when the top-k hold all the mass
        mass = torch.logsumexp(top, dim=-1, keepdim=True).clamp(max=-1e-7)
        return torch.log(-torch.expm1(mass)).clamp(min=-1e4)

    return torch.cat([top_s, tail(top_s)], -1), torch.cat([top_t, tail(top_t)], -1)


def position_divergence(log_s: torch.Tensor, log_t: torch.Tensor, cfg: DistillConfig) -> torch.Tensor:
    """The divergence at every position ([...]) between bucketed student and (floored) teacher."""
    log_t = log_t.detach()
    if cfg.teacher_floor > 0:
        log_t = torch.maximum(log_t, log_s.detach() + math.log(cfg.teacher_floor))
    if cfg.teacher_ceiling is not None:
        log_t = torch.minimum(log_t, log_s.detach() + math.log(cfg.teacher_ceiling))
    p_s, p_t = log_s.exp(), log_t.exp()
    if cfg.divergence == "reverse_kl":
        return (p_s * (log_s - log_t)).sum(-1)
    if cfg.divergence == "forward_kl":
        return (p_t * (log_t - log_s)).sum(-1)
    log_m = torch.log((p_s + p_t) / 2)
    return 0.5 * (p_s * (log_s - log_m)).sum(-1) + 0.5 * (p_t * (log_t - log_m)).sum(-1)


def success_weights(success: torch.Tensor, alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """RESD's per-sequence weights from binary successes [B]: mean 1 over the batch."""
    b = success.numel()
    if b == 0:
        raise TenfoldError("success_weights needs at least one sequence")
    ok = success.float()
    s = float(ok.mean().clamp(1 / b, 1 - 1 / b)) if b > 1 else 0.5
    w = torch.where(ok > 0, torch.full_like(ok, (1 - s) ** alpha), torch.full_like(ok, s**beta))
    return w / w.mean()


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    tokens: torch.Tensor,
    rollout_logp: torch.Tensor,
    mask: torch.Tensor,
    cfg: DistillConfig,
    success: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """The loss over a batch of sampled completions.

    student_logits, teacher_logits: [B, T, V] at the completion positions (the teacher's from its own,
    richer prompt, aligned token by token); tokens, rollout_logp, mask: [B, T] (the sampled tokens,
    their log-probability when sampled, 1 on real tokens); success: [B] (needed with `reweight`)."""
    cfg = cfg.validate()
    if student_logits.shape != teacher_logits.shape or student_logits.shape[:2] != tokens.shape:
        raise TenfoldError(
            f"shapes differ: student {tuple(student_logits.shape)}, teacher {tuple(teacher_logits.shape)}, "
            f"tokens {tuple(tokens.shape)}"
        )
    log_s, log_t = topk_buckets(student_logits, teacher_logits, cfg.top_k)
    per_pos = position_divergence(log_s, log_t, cfg)
    with torch.no_grad():
        logp = torch.log_softmax(student_logits.float(), -1).gather(-1, tokens[..., None]).squeeze(-1)
        is_w = torch.exp(logp - rollout_logp.float()).clamp(max=cfg.is_clip)
    weights = torch.ones(tokens.shape[0], device=per_pos.device)
    if cfg.reweight:
        if success is None:
            raise TenfoldError("success-rate reweighting needs each sequence's success")
        weights = success_weights(success, cfg.alpha, cfg.beta).to(per_pos.device)
    m = mask.float()
    n = m.sum().clamp(min=1)
    loss = (per_pos * is_w * weights[:, None] * m).sum() / n
    metrics = {
        "divergence": float((per_pos.detach() * m).sum() / n),
        "is_weight": float((is_w * m).sum() / n),
        "floor_share": float(
            ((log_t.detach() < log_s.detach() + math.log(cfg.teacher_floor)).any(-1).float() * m).sum() / n
        )
        if cfg.teacher_floor > 0
        else 0.0,
    }
    return loss, metrics


def completion_logits(
    model, prompts: list[list[int]], completions: list[list[int]], pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits that predicted each completion token, aligned across rows whatever the prompt
    lengths (so a student and a teacher reading different prompts line up token by token):
    logits [B, T, V], the completion tokens [B, T] and their mask [B, T], T the longest completion."""
    if len(prompts) != len(completions) or not prompts:
        raise TenfoldError(f"need one completion per prompt, got {len(prompts)} and {len(completions)}")
    seqs = [p + c for p, c in zip(prompts, completions, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], attn[i, : len(s)] = torch.tensor(s), 1
    logits = model(input_ids=ids, attention_mask=attn).logits
    steps = max(len(c) for c in completions)
    out = logits.new_zeros((len(seqs), steps, logits.shape[-1]))
    tokens = torch.zeros((len(seqs), steps), dtype=torch.long)
    mask = torch.zeros((len(seqs), steps))
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        if not p:
            raise TenfoldError(f"prompt {i} is empty: the first completion token has nothing to predict it")
        out[i, : len(c)] = logits[i, len(p) - 1 : len(p) - 1 + len(c)]
        tokens[i, : len(c)], mask[i, : len(c)] = torch.tensor(c, dtype=torch.long), 1
    return out, tokens, mask


class EmaTeacher:
    """The teacher's weights: a frozen copy of the student moved toward it after every student step."""

    def __init__(self, student: torch.nn.Module, rate: float = 1e-4, hard_sync: bool = False):
        if not 0 < rate <= 1:
            raise TenfoldError(f"EMA rate must be in (0, 1], got {rate}")
        self.rate, self.hard_sync = rate, hard_sync
        self.model = copy.deepcopy(student).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: torch.nn.Module) -> None:
        """theta_T <- (1 - r) theta_T + r theta_S, or theta_T <- theta_S with `hard_sync`."""
        for t, s in zip(self.model.parameters(), student.parameters(), strict=True):
            if self.hard_sync:
                t.copy_(s)
            else:
                t.lerp_(s.detach(), self.rate)

"""Group rollouts with the core sampler, and the per-token log-probs the loss needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tenfold.core.errors import TenfoldError
from tenfold.core.sampler import SamplingParams, encode_prompt, generate


@dataclass
class Rollout:
    """One sampled completion of one prompt."""

    group: int  # index of its prompt in the batch
    prompt_ids: list[int]
    token_ids: list[int]  # the completion, stop token included (it is trained too)
    text: str
    reward: float = 0.0
    # per completion token, 1 where the loss applies (None: every token); e.g. tokens a hook forced
    loss_mask: list[int] | None = None
    advantage: float | None = None  # set by a rollout worker that computes its own advantages


def sample_groups(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 8,
    stop: Sequence[str] = ("\n",),
    seed: int = 0,
    batch_size: int = 256,  # a whole step's rollouts in one batch (fewer, fuller decode steps)
) -> list[Rollout]:
    """n completions of each prompt (prompt-major order: group g is rollouts[g*n:(g+1)*n]). Each
    completion has its own seed, so a run is reproducible and no two completions share a stream."""
    was_training = model.training
    model.eval()
    params = [
        SamplingParams(max_new_tokens, temperature, top_p, tuple(stop), seed=seed * 1_000_003 + i)
        for i in range(len(prompts) * n)
    ]
    ids = [encode_prompt(tokenizer, p) for p in prompts for _ in range(n)]
    with torch.no_grad():
        gens = generate(model, tokenizer, ids, params, batch_size=batch_size)
    model.train(was_training)
    return [Rollout(i // n, g.prompt_ids, g.token_ids, g.text) for i, g in enumerate(gens)]


def pack(rollouts: Sequence[Rollout], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (ids, attention mask, completion mask) for a forward pass; the completion mask is
    1 at positions whose *next* token is a completion token (aligned with `token_logprobs`) that the
    rollout's `loss_mask` keeps."""
    width = max(len(r.prompt_ids) + len(r.token_ids) for r in rollouts)
    ids = torch.full((len(rollouts), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rollouts), width), dtype=torch.long)
    comp = torch.zeros((len(rollouts), width - 1), dtype=torch.long)
    for i, r in enumerate(rollouts):
        seq = r.prompt_ids + r.token_ids
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        if r.loss_mask is None:
            comp[i, len(r.prompt_ids) - 1 : len(seq) - 1] = 1
        elif len(r.loss_mask) != len(r.token_ids):
            raise TenfoldError(f"loss_mask has {len(r.loss_mask)} entries for {len(r.token_ids)} tokens")
        else:
            comp[i, len(r.prompt_ids) - 1 : len(seq) - 1] = torch.tensor(r.loss_mask, dtype=torch.long)
    return ids, attn, comp


def token_logprobs(model, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """[batch, width-1]: log pi(ids[:, t+1] | ids[:, :t+1]) under `model` (temperature 1)."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)

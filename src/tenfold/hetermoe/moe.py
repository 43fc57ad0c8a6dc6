"""A small Mixtral-style MoE transformer, written so it can be cut where HeterMoE cuts it.

Per layer: r -> a = r + Attn(RMSNorm(r)); x = RMSNorm(a); top-k softmax gate over experts, weights
renormalised over the chosen k (Mixtral); r' = a + sum_k w_k · Expert_{i_k}(x). Experts are SwiGLU.
No auxiliary load-balancing loss (not needed for the runtime's checks). `forward` is the single-process
reference; the runtime calls the same pieces (`embed`, `attention_part`, `combine`, `experts_forward`,
`head_loss`) on different processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MoEConfig:
    vocab: int = 64
    hidden: int = 128
    ffn: int = 256
    layers: int = 2
    heads: int = 4
    experts: int = 12
    top_k: int = 2
    max_seq: int = 512


class Attention(nn.Module):
    def __init__(self, c: MoEConfig):
        super().__init__()
        self.heads = c.heads
        self.qkv = nn.Linear(c.hidden, 3 * c.hidden, bias=False)
        self.out = nn.Linear(c.hidden, c.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, H)
        b, s, h = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, s, h))


class Expert(nn.Module):
    def __init__(self, c: MoEConfig):
        super().__init__()
        self.w1 = nn.Linear(c.hidden, c.ffn, bias=False)
        self.w3 = nn.Linear(c.hidden, c.ffn, bias=False)
        self.w2 = nn.Linear(c.ffn, c.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Layer(nn.Module):
    def __init__(self, c: MoEConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(c.hidden), nn.RMSNorm(c.hidden)
        self.attn = Attention(c)
        self.gate = nn.Linear(c.hidden, c.experts, bias=False)
        self.experts = nn.ModuleList(Expert(c) for _ in range(c.experts))


class MoEModel(nn.Module):
    def __init__(self, c: MoEConfig):
        super().__init__()
        self.cfg = c
        self.emb = nn.Embedding(c.vocab, c.hidden)
        self.pos = nn.Embedding(c.max_seq, c.hidden)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.norm = nn.RMSNorm(c.hidden)
        self.head = nn.Linear(c.hidden, c.vocab, bias=False)

    # --- the pieces -------------------------------------------------------------------------------
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.emb(tokens) + self.pos(torch.arange(tokens.shape[1]))

    def attention_part(self, li: int, r: torch.Tensor):
        """(a, x, w, idx): residual after attention, expert input, top-k weights and expert ids."""
        layer = self.layers[li]
        a = r + layer.attn(layer.norm1(r))
        x = layer.norm2(a).reshape(-1, a.shape[-1])
        probs = F.softmax(layer.gate(x), dim=-1)
        w, idx = probs.topk(self.cfg.top_k, dim=-1)
        return a, x, w / w.sum(-1, keepdim=True), idx

    @staticmethod
    def combine(a: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """a + sum_k w_k y_k, with y of shape (tokens, k, hidden) and a of shape (B, S, hidden)."""
        return a + (w.unsqueeze(-1) * y).sum(1).view(a.shape)

    def experts_forward(self, li: int, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(tokens, k, hidden): each token's chosen experts applied to it (reference path)."""
        flat = idx.reshape(-1)
        rows = x.repeat_interleave(self.cfg.top_k, dim=0)
        y = torch.zeros_like(rows)
        for e in flat.unique().tolist():
            sel = (flat == e).nonzero(as_tuple=True)[0]
            y = y.index_put((sel,), self.layers[li].experts[e](rows[sel]))
        return y.view(x.shape[0], self.cfg.top_k, -1)

    def head_loss(self, r: torch.Tensor, targets: torch.Tensor, denom: int) -> torch.Tensor:
        """Summed cross-entropy over these tokens divided by `denom` (the whole batch's token count), so
        losses of micro-batches and data shards add up to the batch mean."""
        logits = self.head(self.norm(r))
        return (
            F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum") / denom
        )

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        r = self.embed(tokens)
        for li in range(self.cfg.layers):
            a, x, w, idx = self.attention_part(li, r)
            r = self.combine(a, w, self.experts_forward(li, x, idx))
        return self.head_loss(r, targets, targets.numel())


def synthetic_batch(
    c: MoEConfig, batch: int, seq: int, step: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable toy language: each sequence counts up by a random stride modulo the vocabulary."""
    g = torch.Generator().manual_seed(seed * 100_003 + step)
    start = torch.randint(0, c.vocab, (batch, 1), generator=g)
    stride = torch.randint(1, 4, (batch, 1), generator=g)
    seqs = (start + stride * torch.arange(seq + 1)) % c.vocab
    return seqs[:, :-1], seqs[:, 1:]

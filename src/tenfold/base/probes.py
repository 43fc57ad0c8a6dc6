"""Probes of tenfold-base on held-out seeds: the skills the LLM systems need, measured directly.

    copy@D     exact match of a note's value asked for D tokens after it (`Repeat KEY:`), D = 50/200/800
    recall     share of 10 facts answered right from about 1K tokens of context (`Q: door blue? A:`)
    arith L1-6 worked-arithmetic accuracy per level (held-out test sets of `tenfold.envs.arith`)
    chat       share of chat replies that are well formed: text, then `<|end|>`, no other special token;
               and the share that are exactly the expected reply
    loss/C     held-out next-token loss (nats per token) of each mixture component C

Every probe is greedy and uses documents from seeds training never draws (`HELD_OUT_SEED` and up), so
the same checkpoint always gets the same numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tenfold.base.mixture import (
    COMPONENTS,
    HELD_OUT_SEED,
    chat_exchange,
    component_documents,
    copy_doc,
    encode_doc,
    recall_doc,
)
from tenfold.core.errors import TenfoldError


@dataclass
class ProbeConfig:
    copy_distances: tuple[int, ...] = (50, 200, 800)
    copy_n: int = 50  # prompts per distance
    recall_episodes: int = 10  # each: `recall_facts` facts, every one asked
    recall_facts: int = 10
    recall_context: int = 900  # characters (= tokens) of facts and prose before the question
    arith_n: int = 50  # problems per level
    chat_n: int = 50
    loss_docs: int = 25  # documents per component
    batch_size: int = 32

    @classmethod
    def quick(cls) -> ProbeConfig:
        return cls(copy_n=20, recall_episodes=4, arith_n=20, chat_n=20, loss_docs=10)

    def validate(self) -> ProbeConfig:
        for name in ("copy_n", "recall_episodes", "arith_n", "chat_n", "loss_docs", "batch_size"):
            if getattr(self, name) < 1:
                raise TenfoldError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.recall_facts <= 24:
            raise TenfoldError(f"recall_facts must be in [1, 24], got {self.recall_facts}")
        if any(d < 1 or d > 950 for d in self.copy_distances):
            raise TenfoldError(f"copy distances must be in [1, 950] tokens, got {self.copy_distances}")
        return self


def _greedy(model, tok, prompts, max_new_tokens: int, batch_size: int, stop_ids=None):
    from tenfold.core.sampler import SamplingParams, generate

    params = SamplingParams(max_new_tokens=max_new_tokens, stop_token_ids=stop_ids)
    return generate(model, tok, prompts, params, batch_size=batch_size)


def copy_probe(model, tok, distance: int, n: int, batch_size: int = 32) -> dict:
    """Exact match of the copied value (with its full stop) `distance` tokens back."""
    cases = [
        copy_doc(random.Random(f"probe-copy:{HELD_OUT_SEED + i}:{distance}"), distance) for i in range(n)
    ]
    gens = _greedy(model, tok, [p for p, _ in cases], max(len(a) for _, a in cases) + 2, batch_size)
    right = sum(g.text.startswith(a) for (_, a), g in zip(cases, gens, strict=True))
    return {"exact": right / n, "n": n}


def recall_probe(model, tok, episodes: int, facts: int, context: int, batch_size: int = 32) -> dict:
    """Share of questions answered exactly, each fact of each episode asked once, each alone after the
    whole context."""
    prompts, answers = [], []
    for e in range(episodes):
        body, qa = recall_doc(random.Random(f"probe-recall:{HELD_OUT_SEED + e}"), facts, context, facts)
        for q, a in qa:
            prompts.append(f"{body}\n{q}")
            answers.append(a)
    gens = _greedy(model, tok, prompts, 5, batch_size)
    right = sum(
        g.text.startswith(a) and not g.text[len(a) : len(a) + 1].isdigit()
        for a, g in zip(answers, gens, strict=True)
    )
    return {"exact": right / len(prompts), "n": len(prompts), "tokens": len(tok.encode(prompts[0]))}


def arith_probe(model, tok, n: int, batch_size: int = 32) -> dict:
    from tenfold.envs.arith import MAX_ANSWER_TOKENS, level_accuracy

    return level_accuracy(model, tok, n=n, max_new_tokens=MAX_ANSWER_TOKENS["worked"], batch_size=batch_size)


def chat_probe(model, tok, n: int, batch_size: int = 32) -> dict:
    """Well-formed replies (some text, ended by `<|end|>`, no special token inside) and exact replies."""
    if not hasattr(tok, "role_ids"):
        raise TenfoldError("the chat probe needs the tenfold tokenizer (its chat roles)")
    prompts, expected = [], []
    for i in range(n):
        user, assistant = chat_exchange(random.Random(f"probe-chat:{HELD_OUT_SEED + i}"))
        prompts.append(tok.apply_chat_template([{"role": "user", "content": user}]))
        expected.append(assistant)
    gens = _greedy(model, tok, prompts, 160, batch_size, stop_ids=[tok.end_id])
    valid = exact = 0
    for g, want in zip(gens, expected, strict=True):
        body = g.token_ids[:-1] if g.token_ids and g.token_ids[-1] == tok.end_id else None
        ok = bool(body) and not any(t in tok.special_ids for t in body)
        valid += ok
        exact += ok and tok.decode(body) == want
    return {"valid": valid / n, "exact": exact / n, "n": n}


def heldout_losses(model, tok, n: int, batch_size: int = 16) -> dict[str, float]:
    """Mean next-token loss per component on `n` held-out documents each (nats per target token)."""
    import torch

    from tenfold.core.train import IGNORE, collate, lm_loss

    device = next(model.parameters()).device
    out = {}
    for comp in COMPONENTS:
        encoded = [encode_doc(tok, d) for d in component_documents(comp, HELD_OUT_SEED, n)]
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, n, batch_size):
                ids, mask, labels = (t.to(device) for t in collate(encoded[i : i + batch_size], tok.pad_id))
                total += float(lm_loss(model, ids, mask, labels, reduction="sum"))
                count += int((labels[:, 1:] != IGNORE).sum())
        out[comp] = total / count
    return out


def run_probes(model, tok, cfg: ProbeConfig | None = None) -> dict:
    """Every probe on one model: a flat dict of metrics (see the module docstring for the names)."""
    cfg = (cfg or ProbeConfig()).validate()
    out: dict[str, float] = {}
    for d in cfg.copy_distances:
        out[f"copy@{d}"] = copy_probe(model, tok, d, cfg.copy_n, cfg.batch_size)["exact"]
    out["recall"] = recall_probe(
        model, tok, cfg.recall_episodes, cfg.recall_facts, cfg.recall_context, cfg.batch_size
    )["exact"]
    for level, acc in arith_probe(model, tok, cfg.arith_n, cfg.batch_size).items():
        out[f"arith {level}"] = acc
    chat = chat_probe(model, tok, cfg.chat_n, cfg.batch_size)
    out["chat valid"], out["chat exact"] = chat["valid"], chat["exact"]
    for comp, loss in heldout_losses(model, tok, cfg.loss_docs).items():
        out[f"loss/{comp}"] = loss
    return out

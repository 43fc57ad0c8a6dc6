"""Prompt sources for `tenfold.rl.train_rl`: HeaPA (pool + augmentation + lineage) and the prioritized
baseline. Uniform sampling is `tenfold.rl.trainer.UniformSource`; DAPO filtering is uniform sampling
with `Config.dynamic_sampling`."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tenfold.core.errors import TenfoldError
from tenfold.envs.arith import Problem
from tenfold.heapa.augment import Child, Validator, parse_variant, variant_prompt
from tenfold.heapa.lineage import Lineage, child_prior
from tenfold.heapa.pool import HeapPool, PoolConfig, PoolItem


@dataclass
class HeaPAConfig:
    pool: PoolConfig = field(default_factory=PoolConfig)
    augment: bool = True
    reestimate: str | None = "path"  # None, "child" (ChildAgg) or "path" (PathAgg)
    tau: float = 1.0
    flip: bool = False  # re-estimate with g(v, 1/d) (see lineage.py)
    group_size: int = 8  # to skip augmentation when the pool has no room for a batch of children
    variant_temperature: float = 0.7
    variant_max_tokens: int = 24

    def validate(self) -> HeaPAConfig:
        self.pool.validate()
        if self.reestimate not in (None, "child", "path"):
            raise TenfoldError(f"reestimate must be None, 'child' or 'path', got {self.reestimate!r}")
        return self


class HeaPASource:
    """HeaPA as a prompt source. `policy`/`tokenizer` write the variants (needed when augmenting)."""

    def __init__(
        self, problems: Sequence[Problem], cfg: HeaPAConfig | None = None, policy=None, tokenizer=None
    ):
        self.cfg = (cfg or HeaPAConfig()).validate()
        if self.cfg.augment and (policy is None or tokenizer is None):
            raise TenfoldError("augmentation needs the policy and its tokenizer")
        self.policy, self.tok = policy, tokenizer
        self.pool = HeapPool((self._item(i, p) for i, p in enumerate(problems)), self.cfg.pool)
        if self.cfg.reestimate:
            self.pool.reestimate = self._reestimate
        self.lineage = Lineage()
        self.values: dict[int, float] = {}  # latest r̄ (or prior) of every item that has one
        self.next_id = len(problems)
        self.validator = Validator() if self.cfg.augment else None
        self.extra_rollouts = 0
        self.seconds = {"pool": 0.0, "augment_generate": 0.0}
        self.children_written = self.unparsable = self.skipped_full = 0
        self.step = 0

    @staticmethod
    def _item(i: int, p: Problem, **kw) -> PoolItem:
        return PoolItem(i, p.prompt, answer=p, level=p.level, **kw)

    # ---- the PromptSource interface
    def sample(self, k: int) -> list[PoolItem]:
        t = time.perf_counter()
        self._admit_children()
        out = self.pool.sample(k)
        self.seconds["pool"] += time.perf_counter() - t
        return out

    def update(self, items: Sequence[PoolItem], rewards: Sequence[Sequence[float]]) -> None:
        t = time.perf_counter()
        self.pool.update(items, rewards)
        for it in items:
            self.values[it.id] = it.reward
        self.seconds["pool"] += time.perf_counter() - t
        if self.cfg.augment:
            self._augment(items)
        self.step += 1

    def take_extra_rollouts(self) -> int:
        """Generations spent on variants since the last call (the trainer counts them as rollouts)."""
        n, self.extra_rollouts = self.extra_rollouts, 0
        return n

    # ---- augmentation
    def _augment(self, items: Sequence[PoolItem]) -> None:
        free = self.pool.cfg.max_size - len(self.pool)
        if free < len(items) * self.cfg.group_size:  # as HeaPA: no room for a batch of children
            self.skipped_full += 1
            return
        from tenfold.core.sampler import SamplingParams, generate

        t = time.perf_counter()
        was = self.policy.training
        self.policy.eval()
        params = [
            SamplingParams(
                self.cfg.variant_max_tokens,
                self.cfg.variant_temperature,
                stop=("\n",),
                seed=self.step * 10007 + i,
            )
            for i in range(len(items))
        ]
        gens = generate(self.policy, self.tok, [variant_prompt(it.answer.expr) for it in items], params)
        self.policy.train(was)
        self.seconds["augment_generate"] += time.perf_counter() - t
        self.extra_rollouts += len(items)
        t = time.perf_counter()
        for it, g in zip(items, gens, strict=True):
            parsed = parse_variant(g.text)
            self.children_written += 1
            if parsed is None:
                self.unparsable += 1
                continue
            expr, d = parsed
            self.validator.submit(Child(it.id, it.answer, expr, d, child_prior(it.reward, d)))
        self.seconds["pool"] += time.perf_counter() - t

    def _admit_children(self) -> None:
        if self.validator is None:
            return
        for child, problem in self.validator.drain():
            cid = self.next_id
            self.next_id += 1
            if not self.lineage.add(child.parent_id, cid, child.difficulty):
                continue
            item = self._item(
                cid,
                problem,
                reward=child.prior,
                parent=child.parent_id,
                difficulty=child.difficulty,
                estimated=True,
            )
            if self.pool.add(item):
                self.values[cid] = child.prior

    # ---- re-estimation at reinsertion
    def _reestimate(self, items: list[PoolItem]) -> None:
        for it in self.pool.scored():  # children still in the pool carry their priors
            self.values.setdefault(it.id, it.reward)
        new = self.lineage.reestimate(self.values, self.cfg.reestimate, self.cfg.tau, self.cfg.flip)
        for it in items:
            if it.id in new:
                it.reward = new[it.id]
                self.values[it.id] = it.reward

    # ---- reports and checkpoints
    def stats(self) -> dict:
        s = {
            "pool_size": len(self.pool),
            "archive": len(self.pool.archive),
            "children": len(self.lineage.parent),
            "children_written": self.children_written,
            "unparsable": self.unparsable,
            "skipped_full": self.skipped_full,
            "evicted": self.pool.evicted,
            "reinsertions": self.pool.reinsertions,
            "boundary": self.pool.boundary(),
            "seconds": dict(self.seconds),
        }
        if self.validator:
            s["validator"] = self.validator.stats()
        return s

    def close(self) -> None:
        if self.validator:
            self.validator.close()

    def state_dict(self) -> dict:
        if self.validator:  # children in flight are part of the state: let the queue empty first
            self.validator.q.join()
            self._admit_children()
        return {
            "pool": _jsonable_pool(self.pool.state_dict()),
            "lineage": self.lineage.state_dict(),
            "values": {str(k): v for k, v in self.values.items()},
            "next_id": self.next_id,
            "step": self.step,
        }

    def load_state_dict(self, d: dict) -> None:
        pool = d["pool"]
        for group in ("cold", "scored"):
            for x in pool[group]:
                x["answer"] = Problem(**x["answer"])
        for x in pool["archive"]:
            x["answer"] = Problem(**x["answer"])
        self.pool.load_state_dict(pool)
        if self.cfg.reestimate:
            self.pool.reestimate = self._reestimate
        self.lineage.load_state_dict(d["lineage"])
        self.values = {int(k): v for k, v in d["values"].items()}
        self.next_id, self.step = d["next_id"], d["step"]


def _jsonable_pool(state: dict) -> dict:
    from dataclasses import asdict, is_dataclass

    for group in ("cold", "scored", "archive"):
        for x in state[group]:
            if is_dataclass(x["answer"]):
                x["answer"] = asdict(x["answer"])
    return state


class PrioritizedSource:
    """The prioritized baseline of HeaPA's code: p_i proportional to (1 - s_i + eps)^(1/T), s = (r̄ + 1)/2
    the pass rate (unscored prompts: s = 0.5), k prompts per step without replacement."""

    def __init__(
        self, problems: Sequence[Problem], temperature: float = 1.0, eps: float = 0.05, seed: int = 0
    ):
        if temperature <= 0:
            raise TenfoldError(f"temperature must be > 0, got {temperature}")
        self.items = [HeaPASource._item(i, p) for i, p in enumerate(problems)]
        self.s = np.full(len(self.items), 0.5)
        self.T, self.eps = temperature, eps
        self.rng = np.random.default_rng(seed)

    def sample(self, k: int) -> list[PoolItem]:
        w = (1 - self.s + self.eps) ** (1 / self.T)
        idx = self.rng.choice(len(self.items), size=min(k, len(self.items)), replace=False, p=w / w.sum())
        return [self.items[i] for i in idx]

    def update(self, items, rewards) -> None:
        for it, rs in zip(items, rewards, strict=True):
            it.reward = sum(rs) / len(rs)
            self.s[it.id] = (it.reward + 1) / 2


def shuffled(problems: Sequence[Problem], seed: int) -> list[Problem]:
    out = list(problems)
    random.Random(seed).shuffle(out)
    return out

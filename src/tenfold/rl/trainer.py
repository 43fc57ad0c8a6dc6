"""The RL loop: a rollout worker produces samples with advantages; the trainer runs the policy update.

Single-turn RLVR (`GroupRollouts`, HeaPA's loop) and multi-turn episodes (`tenfold.rl.multiturn`,
one sample per turn, GiGPO advantages) share it: the worker owns sampling and advantages, the trainer
owns the loss (with a per-token mask), the optimiser, metrics, evaluation and checkpoints. The
single-turn worker:

    for step:
        items   = source.sample(k)                       # uniform, a curriculum, HeaPA's heaps, ...
        groups  = n rollouts per item, rewarded          # (dynamic sampling: keep informative groups,
        source.update(items, rewards)                    #  sample more items until k are kept)
        A       = group_advantages(rewards)
        old     = log-probs before the update; loss = policy_loss(...) per mini-batch; AdamW step
        log metrics (JSONL), evaluate every `eval_every`, checkpoint every `ckpt_every`

A prompt source is any object with `sample(k) -> list[item]` (each item with a `.prompt` string) and
`update(items, group_rewards)`; `state_dict()` / `load_state_dict()` are used for checkpoints when
present, and `take_extra_rollouts()` when the source generates with the policy itself. Every generated rollout counts against `rollout_budget`, including the groups that dynamic
sampling throws away (they cost as much to generate).
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from tenfold.core.errors import CheckpointError, TenfoldError
from tenfold.core.io import atomic_write_text
from tenfold.core.progress import progress_bar
from tenfold.core.train import TrainConfig, load_checkpoint, make_optimizer, save_checkpoint
from tenfold.rl.grpo import Config, group_advantages, informative, policy_loss
from tenfold.rl.rollout import Rollout, pack, sample_groups, token_logprobs


class PromptSource(Protocol):
    def sample(self, k: int) -> list[Any]: ...

    def update(self, items: Sequence[Any], rewards: Sequence[Sequence[float]]) -> None: ...


class UniformSource:
    """Uniform sampling without replacement from a fixed list of items, reshuffled every epoch."""

    def __init__(self, items: Sequence[Any], seed: int = 0):
        if not items:
            raise TenfoldError("UniformSource needs at least one item")
        self.items, self.rng = list(items), random.Random(seed)
        self.order: list[int] = []

    def sample(self, k: int) -> list[Any]:
        out = []
        while len(out) < k:
            if not self.order:
                self.order = list(range(len(self.items)))
                self.rng.shuffle(self.order)
            out.append(self.items[self.order.pop()])
        return out

    def update(self, items, rewards) -> None:  # uniform sampling learns nothing from rewards
        pass

    def state_dict(self) -> dict:
        return {"order": self.order, "rng": self.rng.getstate()}

    def load_state_dict(self, d: dict) -> None:
        self.order = list(d["order"])
        v, internal, g = d["rng"]
        self.rng.setstate((v, tuple(internal), g))


@dataclass
class RunResult:
    steps: int
    rollouts: int  # every generated rollout, kept or not
    history: list[dict] = field(default_factory=list)  # one metrics dict per step
    evals: list[dict] = field(default_factory=list)  # {"step", "rollouts", **evaluate(model)}


@dataclass
class Batch:
    """What a rollout worker hands the trainer for one step: samples with their advantages set."""

    rollouts: list[Rollout]  # each with `.advantage` (and `.loss_mask` where not every token trains)
    generated: int  # samples generated this step, kept or not (they count against the budget)
    metrics: dict = field(default_factory=dict)


class RolloutWorker(Protocol):
    """Produces one step's training samples with the current policy. `state_dict()` /
    `load_state_dict()` are saved with checkpoints when present."""

    def collect(self, model, tokenizer, step: int) -> Batch: ...


class GroupRollouts:
    """Single-turn RLVR: items from a prompt source, `group_size` completions each, rewarded by
    `reward_fn(item, text)`, GRPO/DAPO group advantages (and DAPO's dynamic sampling)."""

    def __init__(self, source: PromptSource, reward_fn: Callable[[Any, str], float], cfg: Config):
        self.source, self.reward_fn, self.cfg = source, reward_fn, cfg

    def collect(self, model, tokenizer, step: int) -> Batch:
        cfg, source = self.cfg, self.source
        t0 = time.perf_counter()
        source_s = 0.0
        kept_items: list = []
        kept: list = []  # rollouts of kept groups
        kept_rewards: list[list[float]] = []
        generated = rounds = 0
        all_rewards: list[float] = []
        while len(kept_items) < cfg.prompts_per_step and rounds < cfg.max_gen_batches:
            t = time.perf_counter()
            items = source.sample(cfg.prompts_per_step - len(kept_items))
            source_s += time.perf_counter() - t
            if not items:
                break
            rolls = sample_groups(
                model,
                tokenizer,
                [it.prompt for it in items],
                cfg.group_size,
                cfg.temperature,
                cfg.top_p,
                cfg.max_new_tokens,
                cfg.stop,
                seed=cfg.seed * 7919 + step * 101 + rounds,
            )
            for r in rolls:
                r.reward = float(self.reward_fn(items[r.group], r.text))
            rewards = [
                [r.reward for r in rolls[g * cfg.group_size : (g + 1) * cfg.group_size]]
                for g in range(len(items))
            ]
            t = time.perf_counter()
            source.update(items, rewards)
            source_s += time.perf_counter() - t
            generated += len(rolls)
            all_rewards += [r.reward for r in rolls]
            rounds += 1
            keep = (
                informative(torch.tensor(rewards))
                if cfg.dynamic_sampling
                else torch.ones(len(items), dtype=torch.bool)
            )
            for g in range(len(items)):
                if keep[g]:
                    kept_items.append(items[g])
                    kept_rewards.append(rewards[g])
                    kept += rolls[g * cfg.group_size : (g + 1) * cfg.group_size]
            if not cfg.dynamic_sampling:
                break
        extra = source.take_extra_rollouts() if hasattr(source, "take_extra_rollouts") else 0
        if kept:
            adv = group_advantages(torch.tensor(kept_rewards), cfg.scale_by_std, cfg.adv_eps).flatten()
            for r, a in zip(kept, adv.tolist(), strict=True):
                r.advantage = a
        metrics = {
            "source_generated": extra,
            "gen_rounds": rounds,
            "groups_kept": len(kept_items),
            "reward_mean": sum(all_rewards) / len(all_rewards) if all_rewards else float("nan"),
            "informative_share": float(informative(torch.tensor(kept_rewards)).float().mean())
            if kept_rewards
            else 0.0,
            "seconds": {"sample": time.perf_counter() - t0 - source_s, "source": source_s},
        }
        # a source's own generations (e.g. HeaPA's variants) cost too
        return Batch(kept, generated + extra, metrics)

    def state_dict(self) -> dict | None:
        return self.source.state_dict() if hasattr(self.source, "state_dict") else None

    def load_state_dict(self, d: dict | None) -> None:
        if d is not None and hasattr(self.source, "load_state_dict"):
            self.source.load_state_dict(d)


def train_rl(
    model,
    tokenizer,
    source: PromptSource | None = None,
    reward_fn: Callable[[Any, str], float] | None = None,
    cfg: Config | None = None,
    evaluate: Callable[[Any], dict] | None = None,
    out_dir: str | Path | None = None,
    rollout_budget: int = 0,
    resume: bool = False,
    quiet: bool = False,
    worker: RolloutWorker | None = None,
) -> RunResult:
    """Train `model` in place; see the module docstring. Samples come from `worker` (e.g. multi-turn
    episodes, `tenfold.rl.multiturn`), or else from `source` and `reward_fn` as single-turn groups.
    `rollout_budget` > 0 stops once that many samples were generated. With `out_dir`, metrics go to
    out_dir/metrics.jsonl and checkpoints to out_dir/last; `resume=True` continues from out_dir/last
    (model, optimiser, worker or source, counters)."""
    cfg = (cfg or Config()).validate()
    if worker is None:
        if source is None or reward_fn is None:
            raise TenfoldError("train_rl needs a rollout worker, or a prompt source and a reward function")
        worker = GroupRollouts(source, reward_fn, cfg)
    elif source is not None or reward_fn is not None:
        raise TenfoldError("give train_rl either a rollout worker or a source and reward_fn, not both")
    opt = make_optimizer(model, TrainConfig(lr=cfg.lr, weight_decay=cfg.weight_decay))
    ref = copy.deepcopy(model).eval() if cfg.kl_coef > 0 or cfg.track_kl else None
    out = Path(out_dir) if out_dir else None
    res = RunResult(0, 0)
    if resume:
        if out is None or not (out / "last").is_dir():
            raise CheckpointError(f"nothing to resume: no checkpoint at {out}/last")
        res.steps, _ = load_checkpoint(out / "last", model, opt)
        state = json.loads((out / "last" / "rl_state.json").read_text())
        res.rollouts, res.history, res.evals = state["rollouts"], state["history"], state["evals"]
        if hasattr(worker, "load_state_dict") and state.get("source") is not None:
            worker.load_state_dict(state["source"])
    if out:
        out.mkdir(parents=True, exist_ok=True)
    pad = tokenizer.pad_id if getattr(tokenizer, "pad_id", None) is not None else 0
    with progress_bar("rl", total=cfg.steps, quiet=quiet) as bar:
        bar.advance(res.steps)
        while res.steps < cfg.steps and not (rollout_budget and res.rollouts >= rollout_budget):
            m = _step(model, tokenizer, worker, cfg, opt, ref, pad, res)
            res.steps += 1
            if evaluate and (res.steps == cfg.steps or (cfg.eval_every and res.steps % cfg.eval_every == 0)):
                model.eval()
                with torch.no_grad():
                    ev = {"step": res.steps, "rollouts": res.rollouts, **evaluate(model)}
                res.evals.append(ev)
                m["eval"] = ev
            res.history.append(m)
            if out:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(m) + "\n")
                if cfg.ckpt_every and res.steps % cfg.ckpt_every == 0:
                    _save(out / "last", model, tokenizer, opt, cfg, worker, res)
            bar.advance(1, reward=m.get("reward_mean", float("nan")), rollouts=res.rollouts)
    if evaluate and (not res.evals or res.evals[-1]["step"] != res.steps):
        model.eval()
        with torch.no_grad():
            res.evals.append({"step": res.steps, "rollouts": res.rollouts, **evaluate(model)})
    if out:
        _save(out / "last", model, tokenizer, opt, cfg, worker, res)
    return res


def _step(model, tokenizer, worker: RolloutWorker, cfg: Config, opt, ref, pad: int, res: RunResult) -> dict:
    t0 = time.perf_counter()
    batch = worker.collect(model, tokenizer, res.steps)
    collect_s = time.perf_counter() - t0
    res.rollouts += batch.generated
    m = {"step": res.steps + 1, "rollouts": res.rollouts, "generated": batch.generated, **batch.metrics}
    seconds = dict(m.pop("seconds", {}) or {"sample": collect_s})
    t = time.perf_counter()
    if batch.rollouts:
        adv = torch.tensor([r.advantage if r.advantage is not None else 0.0 for r in batch.rollouts])
        m.update(_update(model, batch.rollouts, adv, cfg, opt, ref, pad))
    m["seconds"] = {**seconds, "update": time.perf_counter() - t}
    return m


def _update(model, rollouts, adv: torch.Tensor, cfg: Config, opt, ref, pad: int) -> dict:
    """`updates_per_batch` optimiser steps over the batch's mini-batches; each mini-batch's gradient is
    accumulated over forward passes of at most `micro_batch` samples (memory, not maths: the loss is
    the mini-batch's token or sequence mean either way)."""
    ids, attn, comp = pack(rollouts, pad)
    micro = cfg.micro_batch or len(rollouts)
    model.eval()
    with torch.no_grad():
        parts = [slice(i, i + micro) for i in range(0, len(rollouts), micro)]
        old = torch.cat([token_logprobs(model, ids[p], attn[p]) for p in parts])
        ref_lp = torch.cat([token_logprobs(ref, ids[p], attn[p]) for p in parts]) if ref is not None else None
    model.train()
    for g in opt.param_groups:
        g["lr"] = cfg.lr
    losses, stats = [], []
    for c in torch.arange(len(rollouts)).chunk(cfg.updates_per_batch):
        opt.zero_grad(set_to_none=True)
        # the mini-batch's normaliser: its tokens (token-mean) or its sequences (seq-mean-token-mean)
        total = float(comp[c].sum().clamp(min=1)) if cfg.aggregation == "token-mean" else float(len(c))
        loss_sum, st_sum = 0.0, {}
        for m in c.split(micro):
            logp = token_logprobs(model, ids[m], attn[m])
            loss, st = policy_loss(
                logp, old[m], adv[m], comp[m], cfg, ref_lp[m] if ref_lp is not None else None
            )
            share = (float(comp[m].sum()) if cfg.aggregation == "token-mean" else float(len(m))) / total
            (loss * share).backward()
            loss_sum += float(loss.detach()) * share
            for k, v in st.items():
                st_sum[k] = st_sum.get(k, 0.0) + v * share
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss_sum)
        stats.append({**st_sum, "grad_norm": float(gn)})
    return {"loss": sum(losses) / len(losses), **{k: sum(s[k] for s in stats) / len(stats) for k in stats[0]}}


def _save(path: Path, model, tokenizer, opt, cfg: Config, worker, res: RunResult) -> None:
    save_checkpoint(path, model, tokenizer, opt, res.steps, [], cfg)
    state = {
        "rollouts": res.rollouts,
        "history": res.history,
        "evals": res.evals,
        "source": worker.state_dict() if hasattr(worker, "state_dict") else None,
        "config": asdict(cfg),
    }
    atomic_write_text(path / "rl_state.json", json.dumps(state, default=str))

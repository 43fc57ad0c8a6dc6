"""The RLVR loop: sample prompts from a source, roll out groups, reward, GRPO/DAPO update.

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
from tenfold.rl.rollout import pack, sample_groups, token_logprobs


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


def train_rl(
    model,
    tokenizer,
    source: PromptSource,
    reward_fn: Callable[[Any, str], float],
    cfg: Config | None = None,
    evaluate: Callable[[Any], dict] | None = None,
    out_dir: str | Path | None = None,
    rollout_budget: int = 0,
    resume: bool = False,
    quiet: bool = False,
) -> RunResult:
    """Train `model` in place; see the module docstring. `rollout_budget` > 0 stops once that many
    rollouts were generated. With `out_dir`, metrics go to out_dir/metrics.jsonl and checkpoints to
    out_dir/last; `resume=True` continues from out_dir/last (model, optimiser, source, counters)."""
    cfg = (cfg or Config()).validate()
    opt = make_optimizer(model, TrainConfig(lr=cfg.lr, weight_decay=cfg.weight_decay))
    ref = copy.deepcopy(model).eval() if cfg.kl_coef > 0 else None
    out = Path(out_dir) if out_dir else None
    res = RunResult(0, 0)
    if resume:
        if out is None or not (out / "last").is_dir():
            raise CheckpointError(f"nothing to resume: no checkpoint at {out}/last")
        res.steps, _ = load_checkpoint(out / "last", model, opt)
        state = json.loads((out / "last" / "rl_state.json").read_text())
        res.rollouts, res.history, res.evals = state["rollouts"], state["history"], state["evals"]
        if hasattr(source, "load_state_dict") and state.get("source") is not None:
            source.load_state_dict(state["source"])
    if out:
        out.mkdir(parents=True, exist_ok=True)
    pad = tokenizer.pad_id if getattr(tokenizer, "pad_id", None) is not None else 0
    with progress_bar("rl", total=cfg.steps, quiet=quiet) as bar:
        bar.advance(res.steps)
        while res.steps < cfg.steps and not (rollout_budget and res.rollouts >= rollout_budget):
            m = _step(model, tokenizer, source, reward_fn, cfg, opt, ref, pad, res)
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
                    _save(out / "last", model, tokenizer, opt, cfg, source, res)
            bar.advance(1, reward=m.get("reward_mean", float("nan")), rollouts=res.rollouts)
    if evaluate and (not res.evals or res.evals[-1]["step"] != res.steps):
        model.eval()
        with torch.no_grad():
            res.evals.append({"step": res.steps, "rollouts": res.rollouts, **evaluate(model)})
    if out:
        _save(out / "last", model, tokenizer, opt, cfg, source, res)
    return res


def _step(model, tokenizer, source, reward_fn, cfg: Config, opt, ref, pad: int, res: RunResult) -> dict:
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
            seed=cfg.seed * 7919 + res.steps * 101 + rounds,
        )
        for r in rolls:
            r.reward = float(reward_fn(items[r.group], r.text))
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
    res.rollouts += generated + extra  # a source's own generations (e.g. HeaPA's variants) cost too
    sample_s = time.perf_counter() - t0 - source_s
    m = {
        "step": res.steps + 1,
        "rollouts": res.rollouts,
        "generated": generated,
        "source_generated": extra,
        "gen_rounds": rounds,
        "groups_kept": len(kept_items),
        "reward_mean": sum(all_rewards) / len(all_rewards) if all_rewards else float("nan"),
        "informative_share": float(informative(torch.tensor(kept_rewards)).float().mean())
        if kept_rewards
        else 0.0,
    }
    t = time.perf_counter()
    if kept:
        adv = group_advantages(torch.tensor(kept_rewards), cfg.scale_by_std, cfg.adv_eps).flatten()
        m.update(_update(model, kept, adv, cfg, opt, ref, pad))
    m["seconds"] = {"sample": sample_s, "source": source_s, "update": time.perf_counter() - t}
    return m


def _update(model, rollouts, adv: torch.Tensor, cfg: Config, opt, ref, pad: int) -> dict:
    ids, attn, comp = pack(rollouts, pad)
    model.eval()
    with torch.no_grad():
        old = token_logprobs(model, ids, attn)
        ref_lp = token_logprobs(ref, ids, attn) if ref is not None else None
    model.train()
    for g in opt.param_groups:
        g["lr"] = cfg.lr
    order = torch.arange(len(rollouts))
    chunks = order.chunk(cfg.updates_per_batch)
    losses, stats = [], []
    for c in chunks:
        logp = token_logprobs(model, ids[c], attn[c])
        loss, st = policy_loss(logp, old[c], adv[c], comp[c], cfg, ref_lp[c] if ref_lp is not None else None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        stats.append({**st, "grad_norm": float(gn)})
    return {"loss": sum(losses) / len(losses), **{k: sum(s[k] for s in stats) / len(stats) for k in stats[0]}}


def _save(path: Path, model, tokenizer, opt, cfg: Config, source, res: RunResult) -> None:
    save_checkpoint(path, model, tokenizer, opt, res.steps, [], cfg)
    state = {
        "rollouts": res.rollouts,
        "history": res.history,
        "evals": res.evals,
        "source": source.state_dict() if hasattr(source, "state_dict") else None,
        "config": asdict(cfg),
    }
    atomic_write_text(path / "rl_state.json", json.dumps(state, default=str))

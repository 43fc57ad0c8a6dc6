"""One fine-tuning run of the pretrained tiny LLaVA on the target domain, and what MARS measures in it.

A run trains LoRA (ranks `rank_vision`, `rank_language`) or AdaLoRA on `data_size` target examples for
`epochs` epochs, then reports the held-out test loss (perplexity) and exact-match accuracy, and each
module's convergence time.

**Convergence time (ours; the paper's definition is not public).** Module m has converged at the first
step where its adapter alone gets 90% of the way to its final effect: with the other module's adapter
held at its final weights, the validation loss using m's adapter as of step s is within 10% of the gap
between "m not adapted" and "m fully adapted". Adapters are snapshotted at `snapshots` evenly spaced
steps and the crossing is interpolated linearly between them. A module whose final adapter changes the
validation loss by less than `min_effect` nats has converged at step 0. This asks how long each
module takes to do its part of the job, in the joint run, which is the quantity MARS aligns.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tenfold.core.errors import TenfoldError
from tenfold.core.train import TrainConfig
from tenfold.core.train import lr_at as core_lr_at
from tenfold.mars import data, lora
from tenfold.mars import model as M

METHODS = ("lora", "adalora")


@dataclass
class RunConfig:
    rank_vision: int = 8
    rank_language: int = 8
    data_size: int = 512  # D: target-domain training examples
    epochs: float = 6.0
    batch_size: int = 16
    lr: float = 2e-3
    lr_vision_scale: float = 1.0  # the vision tower's learning rate is lr x this (separate-lr baseline)
    method: str = "lora"
    adalora_init_r: int = 12  # AdaLoRA only: the starting rank and the average rank it prunes to
    adalora_target_r: int = 8
    # AdaLoRA's three factors start small (its singular values at 0), so at LoRA's lr it barely moves in
    # a few hundred steps: at D=256 (4 epochs) lr 2e-3 / 1e-2 / 3e-2 / 1e-1 gave test PPL 54 / 1.82 /
    # 1.64 / 25, so AdaLoRA runs at 15x the LoRA lr
    adalora_lr_scale: float = 15.0
    snapshots: int = 12
    measure_convergence: bool = True
    min_effect: float = 1e-3
    val_size: int = 96
    test_size: int = 512
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise TenfoldError(f"method must be one of {METHODS}, got {self.method!r}")
        lora.check_rank(self.rank_vision, "vision")
        lora.check_rank(self.rank_language, "language")
        for name in ("data_size", "batch_size", "snapshots", "val_size", "test_size"):
            if getattr(self, name) < 1:
                raise TenfoldError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("epochs", "lr", "lr_vision_scale", "adalora_lr_scale"):
            if not getattr(self, name) > 0:
                raise TenfoldError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.epochs * self.data_size / self.batch_size))

    @property
    def examples(self) -> int:
        """The run's compute, in training examples processed (steps x batch)."""
        return self.steps * self.batch_size


def lr_at(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first 5% of steps, then cosine decay to a tenth of the peak (core's
    schedule)."""
    return core_lr_at(step, TrainConfig(steps=steps, lr=peak, warmup_steps=max(1, steps // 20)))


def crossing_step(curve: list[float], steps: list[int], final: float, share: float = 0.9) -> float:
    """First step (interpolated) where `curve` is within (1 - share) of its start-to-final gap."""
    gap = curve[0] - final
    target = final + (1 - share) * gap
    for i in range(1, len(curve)):
        if curve[i] <= target:
            a, b = curve[i - 1], curve[i]
            frac = 1.0 if a == b else min(1.0, max(0.0, (a - target) / (a - b)))
            return steps[i - 1] + frac * (steps[i] - steps[i - 1])
    return float(steps[-1])


class _Swap:
    """Temporarily load some LoRA tensors into the model (the other parameters stay)."""

    def __init__(self, params: dict[str, torch.nn.Parameter], values: dict[str, torch.Tensor]):
        self.params, self.values, self.saved = params, values, {}

    def __enter__(self):
        for n, v in self.values.items():
            self.saved[n] = self.params[n].detach().clone()
            self.params[n].data.copy_(v)

    def __exit__(self, *exc):
        for n, v in self.saved.items():
            self.params[n].data.copy_(v)


def run(cfg: RunConfig, model_path: str | Path) -> dict:
    """Fine-tune a fresh copy of the pretrained model; returns the run's record (JSON-able)."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    base, tok = M.load(model_path)
    base.train()
    image_id = M.image_token_id(base)
    train = M.encode(data.dataset("target", cfg.data_size, "train", cfg.seed), tok, image_id)
    val = M.encode(data.dataset("target", cfg.val_size, "val"), tok, image_id)
    test = M.encode(data.dataset("target", cfg.test_size, "test"), tok, image_id)
    steps = cfg.steps
    if cfg.method == "lora":
        model = lora.attach(base, cfg.rank_vision, cfg.rank_language)
    else:
        model = lora.attach_adalora(
            base,
            init_r=cfg.adalora_init_r,
            target_r=cfg.adalora_target_r,
            total_step=steps,
            tinit=max(1, steps // 10),
            tfinal=max(1, steps // 5),
            delta_t=max(1, steps // 20),
        )
    by_module = lora.lora_parameters(model)
    scale = {"vision": cfg.lr_vision_scale, "language": 1.0}
    peak = cfg.lr * (cfg.adalora_lr_scale if cfg.method == "adalora" else 1.0)
    opt = torch.optim.AdamW(
        [{"params": [p for _, p in by_module[m]], "scale": scale[m]} for m in lora.MODULES if by_module[m]],
        lr=peak,
        weight_decay=0.0,
    )
    params = {n: p for m in lora.MODULES for n, p in by_module[m]}
    snap_at = sorted({round(k * steps / cfg.snapshots) for k in range(cfg.snapshots + 1)})
    snaps: dict[int, dict[str, torch.Tensor]] = {}
    rng = random.Random(cfg.seed)
    order: list[int] = []
    losses, allocations = [], 0
    for step in range(steps + 1):
        if step in snap_at and cfg.measure_convergence:
            snaps[step] = {n: p.detach().clone() for n, p in params.items()}
        if step == steps:
            break
        if len(order) < cfg.batch_size:
            perm = list(range(len(train)))
            rng.shuffle(perm)
            order += perm
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        batch = M.collate([train[i] for i in idx], tok.pad_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, peak) * g["scale"]
        # the model's own loss (mean NLL over answer tokens): AdaLoRA adds its orthogonality term here
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            pixel_values=batch.pixel_values,
            labels=batch.labels,
        )
        out.loss.backward()
        opt.step()
        if cfg.method == "adalora":  # PEFT leaves every rank at init_r unless this runs every step
            model.base_model.update_and_allocate(step)
            allocations += 1
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
    model.eval()
    record = {
        "config": asdict(cfg),
        "steps": steps,
        "examples": cfg.examples,
        "train_loss": [
            round(sum(losses[i : i + 10]) / len(losses[i : i + 10]), 4) for i in range(0, steps, 10)
        ],
        "val": M.score(model, val, tok.pad_id),
        "test": M.score(model, test, tok.pad_id),
    }
    if cfg.method == "adalora":
        record["adalora"] = {"update_and_allocate_calls": allocations, "ranks": _adalora_ranks(model)}
    else:
        record["layers"] = lora.check_ranks(model, {"vision": cfg.rank_vision, "language": cfg.rank_language})
    if cfg.measure_convergence:
        record["convergence"] = _convergence(model, params, by_module, snaps, val, tok.pad_id, cfg.min_effect)
    record["seconds"] = time.perf_counter() - t0
    return record


def _convergence(model, params, by_module, snaps, val, pad_id: int, min_effect: float) -> dict:
    at = sorted(snaps)
    final = M.score(model, val, pad_id)["loss"]
    out = {"final_val_loss": final}
    for m in lora.MODULES:
        names = [n for n, _ in by_module[m]]
        curve = []
        for s in at:
            with _Swap(params, {n: snaps[s][n] for n in names}):
                curve.append(M.score(model, val, pad_id)["loss"])
        effect = curve[0] - final
        t = 0.0 if effect < min_effect else crossing_step(curve, at, final)
        out[m] = {"time": t, "effect": effect, "curve": [round(c, 4) for c in curve], "steps": at}
    return out


def _adalora_ranks(model) -> dict[str, float]:
    """Mean kept rank per module after AdaLoRA's allocation (its rank masks)."""
    kept: dict[str, list[int]] = {m: [] for m in lora.MODULES}
    for name, mod in model.named_modules():
        e = getattr(mod, "lora_E", None)
        if e is not None and "default" in e:
            m = lora.module_of(name)
            if m is not None:
                kept[m].append(int((e["default"].detach().abs() > 0).sum().item()))
    return {m: (sum(v) / len(v) if v else 0.0) for m, v in kept.items()}

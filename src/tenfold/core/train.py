"""Supervised LM training on a corpus of strings: AdamW, warmup + cosine schedule, grad clipping.

An example is a string (the loss covers all of it), a (prompt, completion) pair (with
`completion_only`, the loss covers only the completion and its end token), or pre-tokenized `Tokens`
(e.g. `chat_example`: a whole conversation with the loss on its assistant turns). Each becomes
`<|bos|> prompt completion <|eos|>`, the same framing `generate` uses for string prompts.

Determinism and resume: the batch at step s is drawn from `numpy.random.default_rng([seed, s])`,
and the learning rate is a pure function of s, so training k steps, saving, and resuming gives the
same weights as training straight through. A run whose `out_dir` holds a readable checkpoint of the
same run (the same weight-shaping config fields and the same encoded data, by sha256) resumes from the
furthest one by itself: a killed training loses only the steps since its last `ckpt_every` checkpoint.
Checkpoints are safetensors (weights and optimizer moments) plus a small JSON, written to a temporary
directory and renamed into place.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tenfold.core.errors import CheckpointError, TenfoldError, one_line
from tenfold.core.io import atomic_write_text
from tenfold.core.models import save_model, verify_checkpoint_files
from tenfold.core.progress import progress_bar

IGNORE = -100


@dataclass(frozen=True)
class Tokens:
    """A pre-tokenized example: input ids and per-token labels (IGNORE where no loss is taken).

    For examples a string cannot express, e.g. a multi-turn chat with the loss on every assistant
    turn (`chat_example`)."""

    ids: tuple[int, ...]
    labels: tuple[int, ...]


Example = str | tuple[str, str] | Tokens


def chat_example(tokenizer, messages, train_roles=("assistant",)) -> Tokens:
    """A chat in the tokenizer's template with the loss on the content and end token of every turn
    whose role is in `train_roles` (teacher forcing of a whole conversation in one sequence)."""
    if not hasattr(tokenizer, "role_ids"):
        raise TenfoldError(
            "chat_example needs a tenfold tokenizer (with role tokens), not a checkpoint's own"
        )
    ids = [tokenizer.bos_id]
    labels = [IGNORE]
    for msg in messages:
        role, content = msg["role"], msg["content"]
        body = tokenizer.encode(content) + [tokenizer.end_id]
        ids += [tokenizer.role_ids[role]] + body
        labels += [IGNORE] + (body if role in train_roles else [IGNORE] * len(body))
    return Tokens(tuple(ids), tuple(labels))


@dataclass
class TrainConfig:
    steps: int = 500
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 20
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    max_len: int = 256  # examples are truncated to this many tokens
    completion_only: bool = True  # for (prompt, completion) pairs: loss on the completion only
    bucket_by_length: bool = False  # batches of similar length (less padding for long, varied examples)
    # compute each batch's loss in groups of similar length: the same gradient, far less padding
    split_by_length: bool = True
    log_every: int = 25
    ckpt_every: int = (
        0  # also save out_dir/step-NNNNNN every this many steps (0: only out_dir/last at the end)
    )
    # pick up from the newest checkpoint in out_dir of this same run (same recipe fields, same data)
    resume: bool = True
    out_dir: str | None = None
    quiet: bool = False

    def validate(self) -> TrainConfig:
        for name in ("steps", "batch_size", "max_len"):
            if getattr(self, name) < 1:
                raise TenfoldError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise TenfoldError(
                f"lr must be > 0 and min_lr_ratio in [0, 1]; got {self.lr}, {self.min_lr_ratio}"
            )
        return self


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)  # one per step
    seconds: float = 0.0
    checkpoint: str | None = None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup for `warmup_steps`, then cosine decay to `lr * min_lr_ratio` at `steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def encode_example(
    tokenizer, ex: Example, completion_only: bool, max_len: int
) -> tuple[list[int], list[int]]:
    """(input ids, labels) for one example; labels are IGNORE where no loss is taken."""
    bos = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
    if isinstance(ex, Tokens):
        if len(ex.ids) != len(ex.labels):
            raise TenfoldError(f"Tokens example has {len(ex.ids)} ids but {len(ex.labels)} labels")
        return list(ex.ids[:max_len]), list(ex.labels[:max_len])
    if isinstance(ex, str):
        ids = bos + tokenizer.encode(ex) + [tokenizer.eos_id]
        labels = [IGNORE] * len(bos) + ids[len(bos) :]
    elif isinstance(ex, tuple | list) and len(ex) == 2 and all(isinstance(x, str) for x in ex):
        prompt = bos + tokenizer.encode(ex[0])
        completion = tokenizer.encode(ex[1]) + [tokenizer.eos_id]
        ids = prompt + completion
        labels = (
            [IGNORE] * len(prompt) if completion_only else [IGNORE] * len(bos) + prompt[len(bos) :]
        ) + completion
    else:
        raise TenfoldError(
            f"a training example must be a string or a (prompt, completion) pair, got {ex!r:.80}"
        )
    return ids[:max_len], labels[:max_len]


def collate(encoded: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Right-pad a batch: (input_ids, attention_mask, labels)."""
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for r, (x, y) in enumerate(encoded):
        ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1
        labels[r, : len(y)] = torch.tensor(y)
    return ids, mask, labels


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with no weight decay on norms and biases (1-D parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, foreach=True)


def lm_loss(
    model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Next-token cross-entropy over positions whose label is not IGNORE: their mean (or "sum")."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction=reduction
    )


# what one extra forward/backward pass costs, in padded tokens (measured on 2 CPU cores, tiny preset)
GROUP_OVERHEAD_TOKENS = 48


def length_groups(lengths: Sequence[int], overhead: int = GROUP_OVERHEAD_TOKENS) -> list[tuple[int, int]]:
    """Split `lengths` (sorted ascending) into consecutive groups [a, b) minimising the padded tokens
    (each group is as wide as its longest row) plus `overhead` per group: an exact dynamic program."""
    if any(b < a for a, b in itertools.pairwise(lengths)):
        raise ValueError("length_groups needs lengths sorted ascending")
    n = len(lengths)
    best, cut = [0] + [math.inf] * n, [0] * (n + 1)
    for b in range(1, n + 1):
        for a in range(b):
            cost = best[a] + (b - a) * lengths[b - 1] + overhead
            if cost < best[b]:
                best[b], cut[b] = cost, a
    groups, b = [], n
    while b > 0:
        groups.append((cut[b], b))
        b = cut[b]
    return groups[::-1]


def backward_in_groups(
    model, batch: Sequence[tuple[list[int], list[int]]], pad_id: int, device, split: bool = True
) -> float:
    """Backpropagate `lm_loss` of the whole right-padded batch, computed in groups of similar length
    (`split`; else in one padded pass); returns the loss. Causal attention means right padding changes no
    real position's output, so the sum of each group's summed cross-entropy over the batch's target
    count is the same mean over the same tokens: the same gradient (to float rounding), with a fraction
    of the padded positions when lengths vary (about 40% of the tokens on CoMem's recall warm-up, batch 32)."""
    order = sorted(range(len(batch)), key=lambda r: len(batch[r][0])) if split else range(len(batch))
    groups = length_groups([len(batch[r][0]) for r in order]) if split else [(0, len(batch))]
    n_targets = sum(y != IGNORE for _, labels in batch for y in labels[1:])
    total = 0.0
    for a, b in groups:
        ids, mask, labels = (t.to(device) for t in collate([batch[r] for r in order[a:b]], pad_id))
        part = lm_loss(model, ids, mask, labels, reduction="sum") / n_targets
        part.backward()
        total += part.item()
    return total


def train_lm(
    model,
    tokenizer,
    corpus: Sequence[Example],
    cfg: TrainConfig | None = None,
    resume_from: str | Path | None = None,
) -> TrainResult:
    """Train `model` in place on `corpus`; returns the per-step losses. See the module docstring."""
    cfg = (cfg or TrainConfig()).validate()
    if not corpus:
        raise TenfoldError("the training corpus is empty")
    device = next(model.parameters()).device
    encoded = [encode_example(tokenizer, ex, cfg.completion_only, cfg.max_len) for ex in corpus]
    empty = [i for i, (_, labels) in enumerate(encoded) if all(y == IGNORE for y in labels[1:])]
    if empty:  # an all-ignored batch would give a NaN loss and poison the weights
        raise TenfoldError(
            f"{len(empty)} example(s) (first: #{empty[0]}) have no target tokens within max_len={cfg.max_len}; "
            "raise max_len or shorten their prompts"
        )
    by_length = (
        sorted(range(len(encoded)), key=lambda i: len(encoded[i][0])) if cfg.bucket_by_length else None
    )
    opt = make_optimizer(model, cfg)
    start, losses = 0, []
    data_sha = _data_fingerprint(encoded) if cfg.out_dir else None  # only checkpoints record it
    if resume_from is None and cfg.resume and cfg.out_dir:
        resume_from = _resumable_checkpoint(Path(cfg.out_dir), cfg, data_sha)
        if resume_from is not None and not cfg.quiet:
            print(f"[train] resuming from {resume_from}", flush=True)
    if resume_from is not None:
        start, losses = load_checkpoint(resume_from, model, opt)
        if start > cfg.steps:
            raise TenfoldError(f"checkpoint is at step {start}, past the configured {cfg.steps} steps")
    out = Path(cfg.out_dir) if cfg.out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.jsonl").open("a") if out else None
    model.train()
    t0 = time.perf_counter()
    try:
        with progress_bar("train", total=cfg.steps, quiet=cfg.quiet) as bar:
            bar.advance(start)
            for step in range(start, cfg.steps):
                rows = _batch_rows(cfg, step, len(encoded), by_length)
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, cfg)
                opt.zero_grad(set_to_none=True)
                batch = [encoded[i] for i in rows]
                losses.append(backward_in_groups(model, batch, tokenizer.pad_id, device, cfg.split_by_length))
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                bar.advance(1, loss=losses[-1])
                if log and (step % cfg.log_every == 0 or step == cfg.steps - 1):
                    log.write(
                        json.dumps(
                            {
                                "step": step,
                                "loss": losses[-1],
                                "lr": lr_at(step, cfg),
                                "grad_norm": float(gnorm),
                            }
                        )
                        + "\n"
                    )
                    log.flush()  # readable while training runs
                if out and cfg.ckpt_every and (step + 1) % cfg.ckpt_every == 0:
                    save_checkpoint(
                        out / f"step-{step + 1:06d}", model, tokenizer, opt, step + 1, losses, cfg, data_sha
                    )
    finally:
        if log:
            log.close()
        model.eval()
    ckpt = (
        save_checkpoint(out / "last", model, tokenizer, opt, cfg.steps, losses, cfg, data_sha)
        if out
        else None
    )
    return TrainResult(cfg.steps, losses, time.perf_counter() - t0, str(ckpt) if ckpt else None)


def _batch_rows(cfg: TrainConfig, step: int, n: int, by_length: list[int] | None) -> np.ndarray:
    """The example indices of the batch at `step` (a pure function of seed and step, for resume).
    With length bucketing: `batch_size` neighbours in length order from a random start."""
    rng = np.random.default_rng([cfg.seed, step])
    if by_length is None:
        return rng.integers(0, n, cfg.batch_size)
    start = int(rng.integers(0, max(1, n - cfg.batch_size + 1)))
    return np.array([by_length[(start + i) % n] for i in range(cfg.batch_size)])


# TrainConfig fields that shape the weights: a checkpoint is resumed only if they all match
_RUN_FIELDS = ("steps", "batch_size", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "betas")
_RUN_FIELDS += ("grad_clip", "seed", "max_len", "completion_only", "bucket_by_length")


def _data_fingerprint(encoded: list) -> str:
    """sha256 of the encoded corpus (token ids and labels, in order): what a resumed run must share."""
    h = hashlib.sha256()
    for ids, labels in encoded:
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
        h.update(np.asarray(labels, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def _resumable_checkpoint(out: Path, cfg: TrainConfig, data_sha: str) -> Path | None:
    """The furthest readable checkpoint in `out` (`last` or `step-N`) written by this same run, else
    None. A damaged one (files not matching their sha256, unreadable tensors) is said and passed over."""
    want = json.loads(json.dumps({k: getattr(cfg, k) for k in _RUN_FIELDS}))
    found = []
    for d in [out / "last", *out.glob("step-*")]:
        try:
            state = json.loads((d / "trainer.json").read_text())
        except (OSError, ValueError):
            continue  # no checkpoint, or one cut short: not resumable
        same = state.get("data_sha256") == data_sha and {k: state["config"].get(k) for k in want} == want
        if same and 0 < state["step"] <= cfg.steps:
            found.append((state["step"], d))
    for _, d in sorted(found, reverse=True):
        try:
            _read_weights(d, "cpu")
            load_file(str(d / "optimizer.safetensors"))
            return d
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint: try an earlier one
            print(f"[train] not resuming from {d}: {one_line(exc)}", flush=True)
    return None


def save_checkpoint(
    path: str | Path, model, tokenizer, opt: torch.optim.Optimizer, step: int, losses, cfg, data_sha=None
) -> Path:
    """Write model (safetensors + config + tokenizer), optimizer moments and trainer state atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tokenizer, tmp)
    tensors = {}
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        for k, v in opt.state.get(p, {}).items():
            tensors[f"{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    state = {"step": step, "losses": losses, "config": asdict(cfg), "n_params": len(params)}
    if data_sha:
        state["data_sha256"] = data_sha
    atomic_write_text(tmp / "trainer.json", json.dumps(state))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def _read_weights(path: Path, device: str) -> dict:
    """A checkpoint's weights, its files checked against the sizes and sha256 that save_model recorded
    (when present) and every float finite; CheckpointError otherwise."""
    verify_checkpoint_files(path)
    weights = load_file(str(path / "model.safetensors"), device=device)
    bad = next((k for k, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:
        raise CheckpointError(f"checkpoint {str(path)!r} has non-finite values (NaN/Inf) in {bad}")
    return weights


def load_checkpoint(
    path: str | Path, model, opt: torch.optim.Optimizer | None = None
) -> tuple[int, list[float]]:
    """Load weights (and optimizer state) from `save_checkpoint`; returns (step, losses)."""
    path = Path(path)
    for f in ("model.safetensors", "trainer.json"):
        if not (path / f).is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} has no {f}")
    weights = _read_weights(path, str(next(model.parameters()).device))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and model.config.tie_word_embeddings)]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    state = json.loads((path / "trainer.json").read_text())
    if opt is not None:
        params = [p for g in opt.param_groups for p in g["params"]]
        if state["n_params"] != len(params):
            raise CheckpointError(
                f"optimizer in {str(path)!r} has {state['n_params']} params, the model {len(params)}"
            )
        saved = load_file(str(path / "optimizer.safetensors"))
        for key, v in saved.items():
            i, name = key.split(".", 1)
            p = params[int(i)]
            opt.state[p][name] = v.to(p.device) if name != "step" else v
    return int(state["step"]), list(state["losses"])

"""RESD's streaming loop (Algorithm 1): one pass over the tasks in batches; per batch, K inner iterations
of one rollout per prompt -> context update (reflect, curate, solution buffer, prune) -> one gradient
step of self-distillation toward the EMA teacher reading the enriched context.

Teacher contexts (`teacher_context`): "resd" (task, playbook, previous trial, feedback, reflection,
cached success), "sdpo" (task, previous trial, feedback: SDPO's feedback-only teacher) and "sdpo+ss"
(SDPO plus the solution buffer). The ablations drop one part of "resd" (`use_reflection`,
`use_playbook`, `use_solutions`). Reflections come from the model being trained (`reflector="model"`)
or from the scripted oracle analyser (`reflector="oracle"`, the upper bound on reflection quality).

Deviations, all options: the learning rate is at tiny-model scale (1e-3; the paper: 1e-6 on Qwen3-4B); the
rollout log-probabilities are recomputed by the same weights just before the step (one step per
rollout batch, so the truncated importance weight is 1 here; it matters with a separate sampler).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar
from tenfold.core.sampler import SamplingParams, generate
from tenfold.core.sampling import encode_prompt
from tenfold.core.train import TrainConfig, make_optimizer
from tenfold.envs.manufactoria import Task
from tenfold.resd import oracle
from tenfold.resd.context import Context
from tenfold.resd.playbook import Playbook
from tenfold.rl.distill import DistillConfig, EmaTeacher, completion_logits, distill_loss

TEACHER_CONTEXTS = ("resd", "sdpo", "sdpo+ss")
REFLECTORS = ("model", "oracle")
REFLECT_WEIGHTS = ("student", "teacher")


@dataclass
class LoopConfig:
    batch_size: int = 32
    inner_iters: int = 4  # K
    # tiny-model scale (the paper: 1e-6 on 4B): with oracle reflections, held-out mean@4 after 32
    # iterations of batch 16 was 0.00 at 1e-4 and 3e-4, 0.12 at 1e-3 (docs/resd.md)
    learning_rate: float = 1e-3
    warmup_steps: int = 10
    temperature: float = 1.0
    top_p: float = 0.95
    program_tokens: int = 96
    reflect_tokens: int = 400  # the oracle's reflection JSON is ~320 bytes: a cut one does not parse
    curate_tokens: int = 320
    ema_rate: float = 1e-4
    hard_sync: bool = False
    grad_clip: float = 1.0
    teacher_context: str = "resd"
    reflector: str = "model"
    # whose weights write the model's reflections and curations: the student being trained (the
    # paper), or the EMA teacher's (at rate 1e-4, nearly the warm start): a deviation for a tiny model,
    # whose JSON skill the student loses as it trains on programs (75% malformed by iteration 32 at
    # lr 1e-3, docs/resd.md)
    reflect_with: str = "student"
    use_reflection: bool = True
    use_playbook: bool = True
    use_solutions: bool = True
    playbook_entries: int = 120
    prune_every: int = 4
    prune_policy: str = "staleness"
    playbook_chars: int = 400  # the rendered playbook is cut to this many characters in prompts
    feedback_lines: int = 3  # failing tests shown in feedback (a small model's context is short)
    distill: DistillConfig = field(default_factory=lambda: DistillConfig(top_k=100))
    seed: int = 0

    def validate(self) -> LoopConfig:
        if self.batch_size < 1 or self.inner_iters < 1 or self.learning_rate <= 0:
            raise TenfoldError(f"need batch_size, inner_iters >= 1 and learning_rate > 0: {self}")
        if self.teacher_context not in TEACHER_CONTEXTS:
            raise TenfoldError(
                f"teacher_context must be one of {TEACHER_CONTEXTS}, got {self.teacher_context!r}"
            )
        if self.reflector not in REFLECTORS:
            raise TenfoldError(f"reflector must be one of {REFLECTORS}, got {self.reflector!r}")
        if self.reflect_with not in REFLECT_WEIGHTS:
            raise TenfoldError(f"reflect_with must be one of {REFLECT_WEIGHTS}, got {self.reflect_with!r}")
        self.distill.validate()
        return self


def reflect_prompt(task: Task, attempt: str, feedback: str, playbook: str) -> str:
    return (
        f"{task.prompt()}\n{attempt.strip()}\nfeedback:\n{feedback}\nplaybook:\n{playbook}\nreflect as json:"
    )


def curate_prompt(task: Task, reflection: str, playbook: str) -> str:
    return f"{task.rule}\nreflection: {reflection}\nplaybook:\n{playbook}\ncurate as json:"


@dataclass
class IterationLog:
    step: int
    success: float
    test_accuracy: float
    divergence: float
    playbook: int
    seconds: float
    context: dict


class Resd:
    """One RESD run over a stream of tasks: `run(tasks)` trains `model` in place."""

    def __init__(self, model, tok, cfg: LoopConfig | None = None):
        self.model, self.tok, self.cfg = model, tok, (cfg or LoopConfig()).validate()
        c = self.cfg
        self.teacher = EmaTeacher(model, c.ema_rate, c.hard_sync)
        self.opt = make_optimizer(model, TrainConfig(lr=c.learning_rate, weight_decay=0.0))
        self.ctx = Context(Playbook(c.playbook_entries, c.prune_every, c.prune_policy, seed=c.seed))
        self.steps, self.history = 0, []
        self.pad = tok.pad_id if getattr(tok, "pad_id", None) is not None else 0

    # ---- generation -------------------------------------------------------------------------------------
    def _generate(self, prompts: list[str], max_new: int, salt: int, model=None):
        """(texts, completion token ids, prompt token ids), one seeded sample per prompt from `model`
        (default: the student)."""
        c, model = self.cfg, (self.model if model is None else model)
        params = [
            SamplingParams(max_new, c.temperature, c.top_p, seed=(c.seed * 7919 + salt) * 100_003 + i)
            for i in range(len(prompts))
        ]
        ids = [self.encode(p) for p in prompts]
        model.eval()
        with torch.no_grad():
            gens = generate(model, self.tok, ids, params)
        return [g.text for g in gens], [g.token_ids for g in gens], ids

    def encode(self, text: str) -> list[int]:
        """A prompt as one user turn of the chat template (what the warm start trains on); plain
        completion encoding for a tokenizer without one."""
        if hasattr(self.tok, "apply_chat_template"):
            return list(self.tok.apply_chat_template([{"role": "user", "content": text}], True))
        return encode_prompt(self.tok, text)

    def _playbook_text(self) -> str:
        text = self.ctx.playbook.render() if self.cfg.use_playbook else ""
        return text[: self.cfg.playbook_chars]

    # ---- one inner iteration ----------------------------------------------------------------------------
    def iteration(self, tasks: list[Task]) -> IterationLog:
        c, t0 = self.cfg, time.perf_counter()
        texts, tokens, prompt_ids = self._generate([t.prompt() for t in tasks], c.program_tokens, self.steps)
        checks = [t.check(x) for t, x in zip(tasks, texts, strict=True)]
        reflections = [None] * len(tasks)
        for i, (task, check) in enumerate(zip(tasks, checks, strict=True)):
            if check.reward == 1.0:
                self.ctx.record_success(task.key, texts[i])
        failed = [i for i, ch in enumerate(checks) if ch.reward < 1.0]
        if c.teacher_context == "resd" and failed and (c.use_reflection or c.use_playbook):
            reflections = self._reflect_and_curate(tasks, texts, checks, failed, reflections)
        self.ctx.playbook.end_update()
        teacher_prompts = [
            self.teacher_prompt(t, x, ch, r)
            for t, x, ch, r in zip(tasks, texts, checks, reflections, strict=True)
        ]
        success = torch.tensor([ch.reward for ch in checks])
        divergence = self._step(prompt_ids, tokens, teacher_prompts, success)
        log = IterationLog(
            self.steps,
            float(success.mean()),
            sum(ch.test_accuracy for ch in checks) / len(checks),
            divergence,
            len(self.ctx.playbook),
            time.perf_counter() - t0,
            self.ctx.stats.as_dict(),
        )
        self.history.append(log)
        return log

    def _reflect_and_curate(self, tasks, texts, checks, failed, reflections):
        c, book = self.cfg, self._playbook_text()
        writer = self.teacher.model if c.reflect_with == "teacher" else self.model
        entries = {e.key: e.text for e in self.ctx.playbook.entries.values()}
        if c.reflector == "oracle":
            r_texts = [oracle.reflect(tasks[i], checks[i], entries) for i in failed]
        else:
            prompts = [
                reflect_prompt(tasks[i], texts[i], checks[i].feedback(c.feedback_lines), book) for i in failed
            ]
            r_texts = self._generate(prompts, c.reflect_tokens, 10_000 + self.steps, writer)[0]
        parsed = [self.ctx.reflect(t) for t in r_texts]
        if c.use_playbook:
            if c.reflector == "oracle":
                cur = [oracle.curate(tasks[i], checks[i]) for i in failed]
            else:
                ok = [(i, r) for i, r in zip(failed, parsed, strict=True) if r is not None]
                prompts = [curate_prompt(tasks[i], r.to_json(), book) for i, r in ok]
                cur = (
                    self._generate(prompts, c.curate_tokens, 20_000 + self.steps, writer)[0]
                    if prompts
                    else []
                )
            for text in cur:
                self.ctx.curate(text)
        if c.use_reflection:
            for i, r in zip(failed, parsed, strict=True):
                reflections[i] = r
        return reflections

    def teacher_prompt(self, task, text, check, reflection) -> str:
        c = self.cfg
        mode = c.teacher_context
        return self.ctx.teacher_prompt(
            task.prompt(),
            attempt=text,
            feedback=check.feedback(c.feedback_lines),
            reflection=reflection if mode == "resd" and c.use_reflection else None,
            key=task.key,
            playbook=mode == "resd" and c.use_playbook,
            solution=(mode == "sdpo+ss") or (mode == "resd" and c.use_solutions),
            playbook_chars=c.playbook_chars,
        )

    def _step(self, prompt_ids, tokens, teacher_prompts, success) -> float:
        c = self.cfg
        keep = [i for i, t in enumerate(tokens) if t]  # an empty completion has nothing to distil
        if not keep:
            self.steps += 1
            return math.nan
        s_prompts = [prompt_ids[i] for i in keep]
        t_prompts = [self.encode(teacher_prompts[i]) for i in keep]
        comps = [tokens[i] for i in keep]
        with torch.no_grad():
            t_logits, _, _ = completion_logits(self.teacher.model, t_prompts, comps, self.pad)
            old, toks, _ = completion_logits(self.model.eval(), s_prompts, comps, self.pad)
            rollout_logp = torch.log_softmax(old.float(), -1).gather(-1, toks[..., None]).squeeze(-1)
        self.model.train()
        for g in self.opt.param_groups:  # linear warm-up, then constant (the paper's schedule)
            g["lr"] = c.learning_rate * min(1.0, (self.steps + 1) / max(1, c.warmup_steps))
        s_logits, toks, mask = completion_logits(self.model, s_prompts, comps, self.pad)
        loss, m = distill_loss(s_logits, t_logits, toks, rollout_logp, mask, c.distill, success[keep])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.opt.step()
        self.teacher.update(self.model)
        self.steps += 1
        return m["divergence"]

    # ---- the stream -------------------------------------------------------------------------------------
    def run(self, tasks: list[Task], quiet: bool = False) -> list[IterationLog]:
        c = self.cfg
        batches = [tasks[i : i + c.batch_size] for i in range(0, len(tasks), c.batch_size)]
        with progress_bar("resd", total=len(batches) * c.inner_iters, quiet=quiet) as bar:
            for batch in batches:
                for _ in range(c.inner_iters):
                    log = self.iteration(batch)
                    bar.advance(1, success=log.success, playbook=log.playbook)
        return self.history

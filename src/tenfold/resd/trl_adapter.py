"""RESD's per-step teacher context for TRL's `SDPOTrainer` (trl 1.16, `trl.experimental.sdpo`).

TRL's SDPO builds the teacher's prompt from a static `privileged_context` column and successful
rollouts of the same group. RESD's teacher reads a context that changes every step: the playbook the
run has grown, the sample's own failed attempt, its feedback, a reflection on it and the example's
last success. `attach(trainer, task_of)` replaces the trainer's teacher-context builder with one that
checks each completion, reflects and curates on failures (the scripted oracle, or your callables that
generate with the model), prunes the playbook, and builds RESD's teacher prompt for every sample.

    from trl.experimental.sdpo import SDPOConfig, SDPOTrainer
    trainer = SDPOTrainer(model=path, reward_funcs=reward, args=SDPOConfig(...), train_dataset=ds,
                          processing_class=tok)
    resd = attach(trainer, task_of=lambda prompt_text: tasks[prompt_text])
    trainer.train(); print(resd.ctx.playbook.render())

Single process only (the builder sees the local batch); it uses one private TRL helper, the teacher
prompt tokenizer of TRL's own builder, so it is pinned to trl 1.16 (the `resd` extra).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tenfold.core.errors import TenfoldError
from tenfold.envs.manufactoria import Check, Task
from tenfold.resd import oracle
from tenfold.resd.context import Context

# (task, attempt text, its check, the playbook as text) -> the model's reflection / curation text
Writer = Callable[[Task, str, Check, str], str]


class ResdTeacherContext:
    """A drop-in for `SDPOTrainer.teacher_context_builder` (same `build` signature and return)."""

    def __init__(
        self,
        trainer,
        task_of: Callable[[str], Task],
        ctx: Context | None = None,
        reflect: Writer | None = None,
        curate: Writer | None = None,
        playbook_chars: int = 400,
        feedback_lines: int = 3,
    ):
        from trl.experimental.sdpo.sdpo_trainer import SuccessfulRolloutTeacherContextBuilder

        if trainer.accelerator.num_processes != 1:
            raise TenfoldError("the RESD teacher context for TRL runs in a single process only")
        self.trainer, self.task_of, self.ctx = trainer, task_of, ctx or Context()
        self.reflect = reflect or (
            lambda task, text, check, book: oracle.reflect(task, check, self._entries())
        )
        self.curate = curate or (lambda task, text, check, book: oracle.curate(task, check))
        self.playbook_chars, self.feedback_lines = playbook_chars, feedback_lines
        self._tokenizer_of = SuccessfulRolloutTeacherContextBuilder(trainer)
        self.last_metrics: dict[str, float] = {}

    def _entries(self) -> dict[str, str]:
        return {e.key: e.text for e in self.ctx.playbook.entries.values()}

    def build(
        self, output: dict, prompts: list, rewards: torch.Tensor, feedbacks: list | None = None
    ) -> dict:
        from trl.experimental.sdpo.sdpo_trainer import _extract_last_user_text

        tok = self.trainer.processing_class
        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        texts = tok.batch_decode(completion_ids, skip_special_tokens=True)
        teacher_messages, failures = [], 0
        for prompt, text in zip(prompts, texts, strict=True):
            prompt_text = _extract_last_user_text(prompt) if isinstance(prompt, list) else prompt
            task = self.task_of(prompt_text)
            check = task.check(text)
            key = task.key
            reflection = None
            if check.reward == 1.0:
                self.ctx.record_success(key, text)
            else:
                failures += 1
                book = self.ctx.playbook.render()[: self.playbook_chars]
                reflection = self.ctx.reflect(self.reflect(task, text, check, book))
                self.ctx.curate(self.curate(task, text, check, book))
            teacher = self.ctx.teacher_prompt(
                prompt_text,
                attempt=text,
                feedback=check.feedback(self.feedback_lines),
                reflection=reflection,
                key=key,
                playbook_chars=self.playbook_chars,
            )
            teacher_messages.append(
                prompt[:-1] + [{"role": "user", "content": teacher}] if isinstance(prompt, list) else teacher
            )
        self.ctx.playbook.end_update()
        batch = self._tokenizer_of._tokenize_teacher_messages(teacher_messages)
        n = len(prompts)
        self.last_metrics = {
            "resd/failure_fraction": failures / max(1, n),
            "resd/playbook_entries": float(len(self.ctx.playbook)),
            "resd/bad_reflections": float(self.ctx.stats.bad_reflections),
            "self_distillation/reprompt_sample_fraction": 1.0,  # every sample is distilled
        }
        return {
            "teacher_input_ids": torch.cat([batch["prompt_ids"], completion_ids], dim=1),
            "teacher_attention_mask": torch.cat([batch["prompt_mask"], completion_mask], dim=1),
            "self_distillation_mask": torch.ones(n, device=completion_ids.device),
        }


def attach(trainer, task_of: Callable[[str], Task], **kw) -> ResdTeacherContext:
    """Give an `SDPOTrainer` RESD's teacher context; returns the builder (its `ctx` holds the playbook)."""
    builder = ResdTeacherContext(trainer, task_of, **kw)
    trainer.teacher_context_builder = builder
    return builder

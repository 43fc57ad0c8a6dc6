"""The streaming loop end to end on a micro model: what each teacher context and reflector does to the
playbook and the counts, that the student moves and the teacher follows it by the EMA rate."""

import pytest
import torch

from tenfold.core.errors import TenfoldError
from tenfold.core.models import build_preset
from tenfold.envs.manufactoria import task_pool
from tenfold.resd.loop import LoopConfig, Resd


def small(**kw):
    base = dict(batch_size=3, inner_iters=2, program_tokens=12, reflect_tokens=12, curate_tokens=12,
                learning_rate=1e-3, warmup_steps=1, ema_rate=0.5)  # fmt: skip
    base.update(kw)
    return LoopConfig(**base)


def run(cfg, n=3):
    torch.manual_seed(0)
    model, tok = build_preset("micro", seed=0)
    start = [p.detach().clone() for p in model.parameters()]
    r = Resd(model, tok, cfg)
    logs = r.run(task_pool(n, "train"), quiet=True)
    return r, model, start, logs


def test_oracle_reflections_grow_the_playbook_and_the_student_and_teacher_move():
    r, model, start, logs = run(small(reflector="oracle"))
    assert len(logs) == 2 and r.steps == 2
    assert logs[-1].playbook > 0  # a random micro model fails every task: lessons were curated
    assert r.ctx.stats.reflections == 6 and r.ctx.stats.bad_reflections == 0  # 3 failures x 2 iterations
    moved = [not torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True)]
    assert any(moved)
    # EMA at rate 0.5 after two steps: the teacher is between the start and the student
    t = next(iter(r.teacher.model.parameters()))
    s, s0 = next(iter(model.parameters())), start[0]
    assert not torch.equal(t, s) and not torch.equal(t, s0)


def test_model_reflections_that_are_not_json_are_counted_not_raised():
    r, *_ = run(small(reflector="model"))
    st = r.ctx.stats
    assert st.reflections == 6 and st.bad_reflections == 6  # a random model writes no JSON
    assert len(r.ctx.playbook) == 0


def test_sdpo_contexts_never_reflect_or_grow_a_playbook():
    for mode in ("sdpo", "sdpo+ss"):
        r, *_ = run(small(teacher_context=mode, reflector="oracle"))
        assert r.ctx.stats.reflections == 0 and len(r.ctx.playbook) == 0


def test_bad_settings():
    for bad in (dict(teacher_context="ace"), dict(reflector="human"), dict(batch_size=0)):
        with pytest.raises(TenfoldError):
            small(**bad).validate()


def test_teacher_prompt_parts_per_mode_and_ablation():
    from tenfold.envs.manufactoria import make_task
    from tenfold.resd.context import Reflection

    task = make_task("parity", 0)
    attempt = "start a\na: R>acc"
    check = task.check(attempt)
    refl = Reflection(error="e", fix="two states")

    def prompt(**kw):
        model, tok = build_preset("micro", seed=0)
        r = Resd(model, tok, small(**kw))
        r.ctx.playbook.add("formulas", "parity needs two states")
        r.ctx.record_success("parity:0", "start a\na: B>acc")
        return r.teacher_prompt(task, attempt, check, refl)

    full = prompt()
    assert all(
        p in full for p in ("playbook:", "previous attempt:", "feedback:", "reflection:", "passed before:")
    )
    assert "reflection:" not in prompt(use_reflection=False)
    assert "playbook:" not in prompt(use_playbook=False)
    assert "passed before:" not in prompt(use_solutions=False)
    sdpo = prompt(teacher_context="sdpo")
    assert "feedback:" in sdpo and not any(p in sdpo for p in ("playbook:", "reflection:", "passed before:"))
    assert "passed before:" in prompt(teacher_context="sdpo+ss")


@pytest.mark.parametrize("writer", ["student", "teacher"])
def test_reflections_and_curations_come_from_the_asked_weights(writer, monkeypatch):
    torch.manual_seed(0)
    model, tok = build_preset("micro", seed=0)
    r = Resd(model, tok, small(reflect_with=writer))
    used = []
    real = r._generate

    def spy(prompts, max_new, salt, model=None):
        used.append((max_new, model))
        return real(prompts, max_new, salt, model)

    monkeypatch.setattr(r, "_generate", spy)
    r.iteration(task_pool(3, "train"))
    want = r.teacher.model if writer == "teacher" else r.model
    reflect = [m for n, m in used if n == 12 and m is not None]
    assert reflect and all(m is want for m in reflect)  # the rollouts themselves pass no model
    assert used[0][1] is None
    with pytest.raises(TenfoldError, match="reflect_with"):
        small(reflect_with="oracle").validate()

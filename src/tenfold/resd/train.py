"""RESD's warm start: SFT from tenfold-base on the four formats the loop asks of the model, built on
training families only (so held-out families start near zero success):

1. attempts: the task -> a program (the expert program of the rule);
2. reflections: a failed attempt, its feedback and the playbook -> the oracle analyser's JSON;
3. curations: a rule, a reflection and the playbook -> the oracle's `ADD` operations;
4. corrections: the teacher's context (task, playbook, failed attempt, feedback, reflection) -> the
   expert program, so the teacher has learnt to use what its context tells it. On training families
   the program could also come from the task alone, so half of the corrections are on hidden machines
   (random 2-4 state programs, the rule not described), where the reflection's fix is the only source:
   without them the warm model's teacher copied nothing (held-out success with oracle reflections: 0
   of 24, v1).

Failed attempts are the expert program mutated (a transition retargeted or dropped, the empty-tape
transition removed, a write that loops, or another rule's program), checked for real.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tenfold.core import sft
from tenfold.core.artefacts import register_artefact
from tenfold.core.train import Tokens, chat_example
from tenfold.envs.manufactoria import COPY_FAMILIES, TRAIN_FAMILIES, expert_program, make_task, task_pool
from tenfold.resd import oracle
from tenfold.resd.context import Context, parse_reflection
from tenfold.resd.loop import curate_prompt, reflect_prompt

DATA_VERSION = (
    "resd-warm-v3"  # v2: corrections on hidden machines; v3: 1,200 of them, fix in program lines, last
)
BASE_MODEL = "tenfold-base"


@dataclass
class WarmStartRecipe(sft.SFTRecipe):
    role: str = "warm"
    steps: int = 1200
    batch_size: int = 16
    lr: float = 1e-3
    max_len: int = 1280
    ckpt_every: int = 200
    tasks: int = 240  # training-family tasks the examples are built from
    # corrections on hidden-machine tasks, whose program is only in the reflection's fix: copying from
    # the teacher's context becomes necessary, so the teacher learns to use it (held-out families too)
    copy_tasks: int = 1200  # v2's 240 were few enough to memorise: its teacher copied 1 fix in 24
    playbook_chars: int = 400  # as the loop's defaults (LoopConfig)
    feedback_lines: int = 3


def mutate(program: str, rng: random.Random) -> str:
    """A plausible wrong attempt: the expert program with one mistake, or another rule's program."""
    lines = program.splitlines()
    states = [ln.split(":")[0] for ln in lines[1:]]
    kind = rng.choice(("retarget", "drop", "no_end", "loop", "other"))
    body = list(lines[1:])
    i = rng.randrange(len(body))
    name, moves = body[i].split(":")[0], body[i].split(":")[1].split()
    if kind == "retarget" and moves:
        j = rng.randrange(len(moves))
        sym, _ = moves[j].split(">")
        moves[j] = f"{sym}>{rng.choice(states + ['acc', 'rej'])}"
    elif kind == "drop" and moves:
        moves.pop(rng.randrange(len(moves)))
    elif kind == "no_end":
        moves = [m for m in moves if not m.startswith(".")] or ["R>rej"]
    elif kind == "loop":
        moves = [m if m.startswith(".") else m.split("+")[0] + "+" + rng.choice("RB") for m in moves]
    else:
        other = make_task(rng.choice(TRAIN_FAMILIES), rng.randrange(10**5))
        return expert_program(other)
    body[i] = f"{name}: " + " ".join(moves)
    return "\n".join([lines[0], *body])


def warm_examples(r: WarmStartRecipe) -> list[tuple[str, str]]:
    """(user prompt, assistant reply) pairs of the four formats."""
    rng = random.Random(r.seed)
    ctx = Context()
    out = []
    copy = task_pool(r.copy_tasks, "train", families=COPY_FAMILIES) if r.copy_tasks else []
    for n, task in enumerate(task_pool(r.tasks, "train") + copy):
        good = expert_program(task)
        is_copy = n >= r.tasks
        if not is_copy:  # the student never learns to write hidden machines from the task alone
            out.append((task.prompt(), good))
        for _ in range(8):  # a mutation can happen to be right: keep the first wrong one
            attempt = mutate(good, rng)
            check = task.check(attempt)
            if check.reward < 1.0:
                break
        else:
            continue
        entries = {e.key: e.text for e in ctx.playbook.entries.values()}
        book = ctx.playbook.render()[: r.playbook_chars]
        reflection = oracle.reflect(task, check, entries)
        refl = parse_reflection(reflection)
        curation = oracle.curate(task, check)
        if not is_copy:
            out.append((reflect_prompt(task, attempt, check.feedback(r.feedback_lines), book), reflection))
            out.append((curate_prompt(task, refl.to_json(), book), curation))
            ctx.reflect(reflection)
            ctx.curate(curation)
        teacher = ctx.teacher_prompt(
            task.prompt(),
            attempt,
            check.feedback(r.feedback_lines),
            refl,
            key=task.key,
            playbook_chars=r.playbook_chars,
        )
        out.append((teacher, good))
        ctx.playbook.end_update()  # it prunes as in the loop, so the prompts' playbooks look alike
    return out


def warm_corpus(tok, r: WarmStartRecipe) -> list[Tokens]:
    return [
        chat_example(tok, [{"role": "user", "content": u}, {"role": "assistant", "content": a}])
        for u, a in warm_examples(r)
    ]


def cached_warm(r: WarmStartRecipe | None = None, quiet: bool = False) -> sft.CachedModel:
    r = r or WarmStartRecipe(base=BASE_MODEL)
    return sft.sft_model("resd-warm", r, DATA_VERSION, lambda tok: warm_corpus(tok, r), quiet=quiet)


register_artefact(
    "resd-warm",
    "resd",
    lambda: cached_warm().artefact,
    ship=("train/last",),
    minutes=25,  # measured: 1,497 s for the SFT on 2 CPU cores, 2 torch threads
    dtype="float16",  # the shipped folder's 50 MB cap; held-out scores as float32's (docs/resd.md)
    doc="RESD's warm start (attempts, reflections, curations, corrections; SFT from tenfold-base)",
    needs=(BASE_MODEL,),
)

"""The warm-start corpus: four formats, every target well-formed, attempts really wrong, lengths within
the recipe's max_len, and only training families."""

import random

from tenfold.envs.manufactoria import HELDOUT_FAMILIES, expert_program, make_task, parse
from tenfold.resd.context import parse_curation, parse_reflection
from tenfold.resd.train import WarmStartRecipe, mutate, warm_examples


def test_corpus_formats_are_well_formed():
    r = WarmStartRecipe(tasks=24, copy_tasks=12)
    pairs = warm_examples(r)
    kinds = {"attempt": 0, "reflect": 0, "curate": 0, "teacher": 0}
    for user, reply in pairs:
        assert len(user) + len(reply) < r.max_len  # bytes = tokens for the byte tokenizer, plus a few tags
        assert not any(f"that {fam}" in user for fam in HELDOUT_FAMILIES)
        if user.endswith("reflect as json:"):
            kinds["reflect"] += 1
            assert parse_reflection(reply) is not None
        elif user.endswith("curate as json:"):
            kinds["curate"] += 1
            assert parse_curation(reply)
        else:
            kinds["teacher" if "feedback:" in user else "attempt"] += 1
            parse(reply)  # every program target parses
    assert kinds["attempt"] == 24 and min(kinds.values()) >= 20
    assert kinds["teacher"] >= 24 + 10  # corrections on hidden machines too (never as attempts)


def test_teacher_targets_solve_their_task_and_attempts_fail():
    from tenfold.envs.manufactoria import COPY_FAMILIES, task_pool

    pairs = warm_examples(WarmStartRecipe(tasks=12, copy_tasks=12))
    tasks = {t.prompt(): t for t in task_pool(12, "train") + task_pool(12, "train", families=COPY_FAMILIES)}
    for user, reply in pairs:
        head = "\n".join(user.split("\n")[:3])
        task = tasks.get(head)
        if task is None or user.endswith("json:"):
            continue
        assert task.check(reply).reward == 1.0
        if "previous attempt:" in user:
            attempt = user.split("previous attempt:\n")[1].split("\nfeedback:")[0]
            assert task.check(attempt).reward == 0.0
            # the reflection's fix, last before "program:", is the target in the same lines
            assert user.endswith("fix:\n" + reply + "\nprogram:")


def test_mutations_change_the_program():
    rng = random.Random(0)
    task = make_task("parity", 3)
    good = expert_program(task)
    muts = [mutate(good, rng) for _ in range(40)]
    # most mutations are real mistakes (a retarget may pick the same target, or an equivalent program)
    assert sum(m != good and task.check(m).reward < 1.0 for m in muts) >= 20
    assert all(parse(m) for m in muts)  # always a well-formed program: a wrong one, not garbage

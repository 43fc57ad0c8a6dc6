"""The Manufactoria-like task: the DSL's parser and errors, the machine's semantics traced by hand, the
step bound, the tests drawn for a task, and expert programs against the rules' own definitions."""

import random

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.envs.manufactoria import (
    FAMILIES,
    HELDOUT_FAMILIES,
    TRAIN_FAMILIES,
    ProgramError,
    all_tapes,
    expert_program,
    make_task,
    parse,
    run,
    task_pool,
)

EVEN_R = "start a\na: R>b B>a .>acc\nb: R>a B>b"


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("", 0, "empty program"),
        ("a: R>b", 1, "start STATE"),
        ("start a\na R>b", 2, "STATE: SYMBOL>TARGET"),
        ("start a\na: R->b", 2, "bad transition 'R->b'"),
        ("start a\na: G>a", 2, "bad transition 'G>a'"),
        ("start a\na: R>b", 2, "undefined state 'b'"),
        ("start a\na: R>a\na: B>a", 3, "defined twice"),
        ("start a\na: R>a R>acc", 2, "two transitions on 'R'"),
        ("start a\na: .>a+R", 2, "nothing may be written"),
        ("start b\na: R>a", 1, "start state 'b' has no line"),
        ("start a\nacc: R>a\na: R>a", 2, "final state"),
        ("start a\n" + "a: R>a\n" * 2000, 0, "longer than"),
    ],
)
def test_parse_errors_name_the_line(text, line, words):
    with pytest.raises(ProgramError) as e:
        parse(text)
    assert e.value.line == line and words in str(e.value)


def test_comments_and_blank_lines_are_ignored():
    prog = parse("# even R\nstart a\n\na: R>b B>a .>acc  # even so far\nb: R>a B>b\n")
    assert prog.start == "a" and prog.table["a"]["."] == ("acc", "")


def test_runs_traced_by_hand():
    prog = parse(EVEN_R)
    assert run(prog, "RBR").verdict == "accept"  # a -R-> b -B-> b -R-> a -.-> acc: 4 steps
    assert run(prog, "RBR").steps == 4
    out = run(prog, "RB")  # a -R-> b -B-> b, then the empty tape in b: no transition
    assert (out.verdict, out.why) == ("reject", "no transition from b on .")
    # the conveyor: in a, R moves to b and appends B; b accepts on B. "R" -> [B] -> acc
    queue = parse("start a\na: R>b+B\nb: B>acc")
    assert run(queue, "R").verdict == "accept"
    assert run(queue, "RR").verdict == "reject"  # b reads the second R: no transition
    assert run(queue, "").verdict == "reject"


def test_loops_and_runaway_tapes_stop_with_no_decision():
    loop = parse("start a\na: R>a+R .>a")  # every R is put back; the empty tape loops in place
    out = run(loop, "RR", max_steps=50)
    assert (out.verdict, out.steps) == ("no decision", 50) and "loop" in out.why
    assert run(loop, "").verdict == "no decision"
    grow = parse("start a\na: R>a+RR")
    out = run(grow, "R", max_tape=10)
    assert out.verdict == "no decision" and "grew past 10" in out.why


@pytest.mark.parametrize("family", list(FAMILIES))
def test_expert_programs_decide_every_tape_as_the_rule_does(family):
    for seed in range(6):  # several parameter draws per family
        task = make_task(family, seed)
        prog = parse(expert_program(task))
        for tape in all_tapes(10):
            assert (run(prog, tape).verdict == "accept") == task.accepts(tape), (task.rule, tape)
        assert task.check(expert_program(task)).reward == 1.0


def test_tests_are_distinct_balanced_and_fixed_by_the_seed():
    for family in FAMILIES:
        task = make_task(family, 7, n_tests=14)
        tapes = [t for t, _ in task.tests]
        assert len(tapes) == 14 == len(set(tapes))
        assert sum(a for _, a in task.tests) == 7  # half accepted
        assert all(task.accepts(t) == a for t, a in task.tests)
        assert make_task(family, 7, n_tests=14) == task
    assert make_task("parity", 1).tests != make_task("parity", 2).tests
    with pytest.raises(TenfoldError, match="unknown family"):
        make_task("palindrome", 0)
    with pytest.raises(TenfoldError, match="n_tests"):
        make_task("parity", 0, n_tests=5)


def test_pools_keep_heldout_families_and_seeds_apart():
    assert not set(TRAIN_FAMILIES) & set(HELDOUT_FAMILIES)
    train, held = task_pool(20, "train"), task_pool(9, "heldout")
    assert {t.family for t in train} == set(TRAIN_FAMILIES)
    assert {t.family for t in held} == set(HELDOUT_FAMILIES)
    assert not {t.seed for t in train} & {t.seed for t in held}
    stream = task_pool(
        6, "train", families=HELDOUT_FAMILIES, offset=1000
    )  # held-out families, training seeds
    assert {t.family for t in stream} == set(HELDOUT_FAMILIES) and min(t.seed for t in stream) == 1000
    assert not {(t.family, t.seed) for t in stream} & {(t.family, t.seed) for t in held}
    with pytest.raises(TenfoldError):
        task_pool(3, "train", families=("palindrome",))


def test_check_scores_reports_and_never_raises():
    task = make_task("parity", 0)
    good = task.check(expert_program(task))
    assert good.reward == 1.0 and good.test_accuracy == 1.0
    assert good.feedback().startswith(f"{len(task.tests)}/{len(task.tests)} tests passed")
    accept_all = task.check("start a\na: R>acc B>acc .>acc")
    wrong = [t for t, a in task.tests if not a]
    assert accept_all.reward == 0.0 and accept_all.passed == len(task.tests) - len(wrong)
    lines = accept_all.feedback(max_lines=100).splitlines()[1:]
    assert lines == [f"{t or '(empty)'}: want reject, got accept" for t, a in task.tests if not a]
    bad = task.check("start a\na: R>nowhere")
    assert bad.reward == 0.0 and bad.passed == 0 and "line 2" in bad.feedback()
    rng = random.Random(0)
    for _ in range(200):  # garbage from a sampling model: a score, never an exception
        text = "".join(rng.choice("start ab:RB.>+#\n acc rej") for _ in range(rng.randint(0, 60)))
        assert task.check(text).reward in (0.0, 1.0)
    looping = task.check("start a\na: R>a+R B>a+B .>a")
    assert looping.reward == 0.0 and "no decision" in looping.feedback()

"""The scripted oracle analyser writes JSON the context pipeline accepts, with a correct fix."""

from tenfold.envs.manufactoria import FAMILIES, make_task
from tenfold.resd import oracle
from tenfold.resd.context import Context


def test_every_family_has_a_lesson_and_a_correct_fix():
    assert set(oracle.LESSONS) == set(FAMILIES)
    for family in FAMILIES:
        task = make_task(family, 0)
        check = task.check("start a\na: R>a B>a")  # rejects everything
        refl = Context().reflect(oracle.reflect(task, check))
        assert refl is not None and refl.insight == oracle.LESSONS[family][1]
        assert task.check(refl.fix.replace(" / ", "\n")).reward == 1.0


def test_curation_and_tags_flow_into_the_playbook():
    task = make_task("parity", 0)
    ctx = Context()
    bad = task.check("start a\na: R>a+R B>a+B .>a")  # loops on every tape
    assert ctx.curate(oracle.curate(task, bad)) == 2  # the loop lesson and the family's lesson
    assert ctx.curate(oracle.curate(task, bad)) == 0  # the same lessons again: duplicates
    entries = {e.key: e.text for e in ctx.playbook.entries.values()}
    ctx.reflect(oracle.reflect(task, bad, entries))
    assert all(e.helpful == 1 for e in ctx.playbook.entries.values())
    syntax = task.check("not a program")
    assert oracle.lessons_for(task, syntax)[0] == oracle.SYNTAX
    tags = oracle.tag_playbook(task, syntax, entries)
    assert set(tags.values()) == {"helpful", "neutral"}  # the family lesson helps, the loop one does not

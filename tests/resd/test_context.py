"""Reflection and curation parsing (malformed text counted, never raised), tags reaching the playbook,
the solution buffer and the teacher prompt's parts."""

from tenfold.resd.context import Context, Reflection, first_json_object, parse_curation, parse_reflection


def test_first_json_object_skips_prose_and_braces_in_strings():
    assert first_json_object('ok so {"a": "x}y", "b": {"c": 1}} trailing') == {"a": "x}y", "b": {"c": 1}}
    assert first_json_object('{bad} then {"a": 1}') == {"a": 1}
    assert first_json_object('{"a": "unterminated') is None
    assert first_json_object("[1, 2]") is None and first_json_object(None) is None
    assert first_json_object('{"q": "say \\"hi\\" {"}') == {"q": 'say "hi" {'}
    assert first_json_object('{"q": "a\\"}b"}') == {"q": 'a"}b'}  # an escaped quote does not end the string


def test_reflection_long_and_short_names_and_both_tag_forms():
    short = parse_reflection(
        '{"error": "rejects RR", "fix": "two  states", "tags": {"ctx-00001": "helpful"}}'
    )
    assert (short.error, short.fix, short.tags) == ("rejects RR", "two states", {"ctx-00001": "helpful"})
    long = parse_reflection(
        '{"error_identification": "e", "root_cause": "c", "correct_approach": "a", "key_insight": "k",'
        ' "bullet_tags": [{"id": "ctx-00002", "tag": "harmful"}, "junk"]}'
    )
    assert (long.error, long.cause, long.fix, long.insight) == ("e", "c", "a", "k")
    assert long.tags == {"ctx-00002": "harmful"}
    assert parse_reflection("no json here") is None
    assert parse_reflection('{"unrelated": 1}') is None
    assert parse_reflection('{"error": 5, "fix": ["x"]}') is None  # wrong types: nothing usable


def test_curation_keeps_add_ops_only():
    ops = parse_curation(
        '{"ops": [{"op": "ADD", "section": "mistakes", "content": "a"},'
        ' {"op": "DELETE", "id": 3}, {"type": "add", "section": "clues", "content": "b"}, 7]}'
    )
    assert ops == [("mistakes", "a"), ("clues", "b")]
    assert parse_curation('{"ops": "ADD"}') is None and parse_curation("nothing") is None


def test_context_counts_malformed_text_and_applies_the_rest():
    ctx = Context()
    assert ctx.curate('{"ops": [{"op": "ADD", "section": "mistakes", "content": "use .>acc"},'
                      ' {"op": "ADD", "section": "nowhere", "content": "x"}]}') == 1  # fmt: skip
    assert ctx.curate("{{{ not json") == 0
    r = ctx.reflect('{"error": "e", "tags": {"ctx-00001": "helpful", "ctx-00042": "helpful"}}')
    assert r is not None and ctx.playbook.entries[1].helpful == 1
    assert ctx.reflect("I think the program was wrong.") is None
    assert ctx.stats.as_dict() == {"reflections": 2, "bad_reflections": 1, "curations": 2, "bad_curations": 1}
    assert ctx.playbook.stats["bad_ops"] == 1 and ctx.playbook.stats["bad_tags"] == 1


def test_teacher_prompt_has_every_part_and_the_ablations_drop_theirs():
    ctx = Context()
    ctx.playbook.add("mistakes", "the empty tape reads .")
    ctx.record_success("t1", "start a\na: R>acc")
    task = "task: accept the tapes that start with R.\nexamples: R acc\nprogram:"
    refl = Reflection(error="rejects R", fix="accept on R")
    full = ctx.teacher_prompt(task, "start a\na: B>acc", "3/12 tests passed.", refl, key="t1")
    assert full.startswith(
        "task: accept the tapes that start with R.\nexamples: R acc\nplaybook:\n## mistakes"
    )
    for part in ("previous attempt:\nstart a\na: B>acc", "feedback:\n3/12", "reflection:\nerror: rejects R",
                 "fix: accept on R", "a program that passed before:\nstart a\na: R>acc"):  # fmt: skip
        assert part in full
    assert full.endswith("\nprogram:")
    bare = ctx.teacher_prompt(task, playbook=False, solution=False, key="t1")
    assert bare == task  # nothing but the task: the student's own view
    assert "playbook" not in ctx.teacher_prompt(task, playbook=False, key="t1")

"""A scripted oracle analyser for Manufactoria tasks: the reflection and curation a perfect reflector
would write, in the same JSON the model writes, so the RESD loop runs unchanged with it. Runs that use it
give an upper bound on what reflection quality can buy (the issue's oracle arm); it knows the rule, so
its `fix` is a correct program and its `insight` the family's reusable lesson."""

from __future__ import annotations

import json

from tenfold.envs.manufactoria import Check, Task, expert_program

# the reusable lesson of each rule family: what transfers between tasks of a family, and to others
LESSONS = {
    "starts": (
        "strategies",
        "a rule on the first colour is decided at once: R>acc or B>acc, the other rejects",
    ),
    "ends": (
        "strategies",
        "for the last colour, remember the last colour read in the state; accept on . there",
    ),
    "contains": (
        "strategies",
        "to find a pair, move to a second state on its first colour; acc on its second",
    ),
    "parity": (
        "formulas",
        "even or odd counts need two states that swap on that colour; the other colour stays",
    ),
    "length_mod": ("formulas", "length modulo k needs k states in a cycle; every read moves one step"),
    "exactly": ("formulas", "exactly n of a colour needs n+1 states; one more of it rejects (no transition)"),
    "count_mod3": ("formulas", "a count modulo 3 needs 3 states in a cycle; only that colour moves"),
    "no_double": (
        "mistakes",
        "after one of the colour, a second one in a row rejects: leave that transition out",
    ),
    "same_ends": (
        "strategies",
        "remember the first colour in the state, then the last colour read; accept on .",
    ),
    "machine": ("heuristics", "when the rule is hidden, each failing tape names a transition to change"),
}
EMPTY_TAPE = (
    "mistakes",
    "the empty tape reads . : give .>acc in every state where the tape may end accepted",
)
LOOPS = ("mistakes", "writing on every read can loop forever: no decision counts as a failure")
SYNTAX = ("templates", "start a then one line per state: a: R>b B>a .>acc")


def reflect(task: Task, check: Check, entries: dict[str, str] | None = None) -> str:
    """The reflection JSON for a failed attempt. `entries` (playbook key -> text) are tagged helpful
    when they are a lesson this failure needed, neutral otherwise."""
    failed = [r for r in check.results if not r.passed]
    needed = lessons_for(task, check)
    specific = needed[0] if needed[0] != LESSONS[task.family] else None
    tags = {k: v for k, v in tag_playbook(task, check, entries or {}).items() if v != "neutral"}
    return json.dumps(
        {
            "error": check.error or (failed[0].line() if failed else "no failure"),
            "cause": specific[1] if specific else "the states do not track what the rule needs",
            "fix": expert_program(task).replace("\n", " / "),
            "insight": LESSONS[task.family][1],
            "tags": tags,  # neutral tags left out: they change nothing, and the context is short
        }
    )


def lessons_for(task: Task, check: Check) -> list[tuple[str, str]]:
    """(section, lesson) pairs this failure calls for, the most specific first."""
    out = []
    if check.error:
        out.append(SYNTAX)
    failed = [r for r in check.results if not r.passed]
    if any(r.tape == "" and r.got in ("accept", "reject") for r in failed):  # a wrong verdict, not a loop
        out.append(EMPTY_TAPE)
    if any(r.got == "no decision" for r in failed):
        out.append(LOOPS)
    out.append(LESSONS[task.family])
    return out


def curate(task: Task, check: Check) -> str:
    """The curation JSON: one `ADD` per lesson this failure calls for (the playbook skips duplicates)."""
    ops = [{"op": "ADD", "section": s, "content": c} for s, c in lessons_for(task, check)]
    return json.dumps({"ops": ops})


def tag_playbook(task: Task, check: Check, entries: dict[str, str]) -> dict[str, str]:
    """Tags for playbook entries (key -> text): helpful when the entry is a lesson this failure needed."""
    needed = {c for _, c in lessons_for(task, check)}
    return {key: "helpful" if text in needed else "neutral" for key, text in entries.items()}

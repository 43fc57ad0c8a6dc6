"""RESD's context pipeline around one attempt: REFLECT a failure into JSON, CURATE lessons into the
playbook as `ADD` operations, keep each example's last success, and build the teacher's prompt from
all of it. The student's own prompt is the task alone: lessons have to enter the weights.

The model being trained writes the reflections and curations, so its JSON is parsed leniently (the
first `{...}` in the text; the long field names of the paper's prompts or the short ones our warm start
teaches) and anything malformed is counted in `ContextStats` and skipped, never raised.

    reflection: {"error": ..., "cause": ..., "fix": ..., "insight": ..., "tags": {"ctx-00001": "helpful"}}
    curation:   {"ops": [{"op": "ADD", "section": "mistakes", "content": "..."}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tenfold.resd.playbook import Playbook

# field -> the names accepted for it (short, as our warm start writes; long, as the paper's prompts ask)
REFLECTION_FIELDS = {
    "error": ("error", "error_identification"),
    "cause": ("cause", "root_cause", "root_cause_analysis"),
    "fix": ("fix", "correct_approach"),
    "insight": ("insight", "key_insight"),
}


@dataclass
class Reflection:
    error: str = ""
    cause: str = ""
    fix: str = ""
    insight: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # playbook key -> helpful / harmful / neutral

    def render(self) -> str:
        """As the teacher reads it. The fix comes last and, when it is a program written on one line
        with " / " (as in JSON), in the program's own lines: the teacher continues right after it."""
        parts = [(k, getattr(self, k)) for k in ("error", "cause", "insight")]
        lines = [f"{k}: {v}" for k, v in parts if v]
        if self.fix:
            lines.append(
                "fix:\n" + self.fix.replace(" / ", "\n")
                if self.fix.startswith("start ")
                else f"fix: {self.fix}"
            )
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in ("error", "cause", "fix", "insight", "tags")})


@dataclass
class ContextStats:
    reflections: int = 0
    bad_reflections: int = 0
    curations: int = 0
    bad_curations: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def first_json_object(text: str) -> dict | None:
    """The first balanced `{...}` in `text` that parses as a JSON object, or None."""
    if not isinstance(text, str):
        return None
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            obj, _ = decoder.raw_decode(text, start)  # parses one value, ignores what follows
            if isinstance(obj, dict):
                return obj
        except ValueError:
            pass
        start = text.find("{", start + 1)
    return None


def parse_reflection(text: str) -> Reflection | None:
    """A reflection from model text, or None when there is no usable JSON object in it."""
    obj = first_json_object(text)
    if obj is None:
        return None
    out = Reflection()
    for name, keys in REFLECTION_FIELDS.items():
        value = next((obj[k] for k in keys if k in obj), "")
        setattr(out, name, " ".join(value.split()) if isinstance(value, str) else "")
    tags = obj.get("tags", obj.get("bullet_tags", {}))
    if isinstance(tags, list):  # ACE's form: [{"id": "ctx-00001", "tag": "helpful"}, ...]
        tags = {t.get("id"): t.get("tag") for t in tags if isinstance(t, dict)}
    if isinstance(tags, dict):
        out.tags = {str(k): v for k, v in tags.items() if isinstance(v, str)}
    if not (out.error or out.cause or out.fix or out.insight or out.tags):
        return None
    return out


def parse_curation(text: str) -> list[tuple[str, str]] | None:
    """The `ADD` operations (section, content) in model text; None when there is no usable object."""
    obj = first_json_object(text)
    if obj is None:
        return None
    ops = obj.get("ops", obj.get("operations"))
    if not isinstance(ops, list):
        return None
    out = []
    for op in ops:
        if isinstance(op, dict) and str(op.get("op", op.get("type", ""))).upper() == "ADD":
            out.append((str(op.get("section", "")), op.get("content", "")))
    return out


@dataclass
class Context:
    """The playbook, each example's last success and the counts of what the model wrote."""

    playbook: Playbook = field(default_factory=Playbook)
    solutions: dict[str, str] = field(default_factory=dict)  # example key -> last successful program
    stats: ContextStats = field(default_factory=ContextStats)

    def reflect(self, text: str) -> Reflection | None:
        """Apply a reflection the model wrote: its tags go to the playbook. None (counted) if malformed."""
        self.stats.reflections += 1
        r = parse_reflection(text)
        if r is None:
            self.stats.bad_reflections += 1
            return None
        for key, tag in r.tags.items():
            self.playbook.tag(key, tag)  # unknown ids and tags are counted by the playbook
        return r

    def curate(self, text: str) -> int:
        """Apply a curation the model wrote; returns how many lessons were added (0 if malformed)."""
        self.stats.curations += 1
        ops = parse_curation(text)
        if ops is None:
            self.stats.bad_curations += 1
            return 0
        return sum(self.playbook.add(section, content) is not None for section, content in ops)

    def record_success(self, key: str, program: str) -> None:
        self.solutions[key] = program

    def teacher_prompt(
        self,
        task_prompt: str,
        attempt: str | None = None,
        feedback: str | None = None,
        reflection: Reflection | None = None,
        key: str | None = None,
        playbook: bool = True,
        solution: bool = True,
        playbook_chars: int | None = None,
    ) -> str:
        """The teacher's context: task, playbook, previous trial, feedback, reflection, cached success.
        The flags drop parts (the ablations: no playbook, no solution buffer); the task's own prompt
        line that asks for the program stays last, so teacher and student continue the same way.
        `playbook_chars` cuts the rendered playbook (a small model's context is short)."""
        head, sep, ask = task_prompt.rpartition("\n")
        if not sep:
            head, ask = task_prompt, ""
        parts = [head]
        if playbook and len(self.playbook):
            parts.append("playbook:\n" + self.playbook.render()[:playbook_chars])
        if attempt is not None:
            parts.append("previous attempt:\n" + attempt.strip())
        if feedback:
            parts.append("feedback:\n" + feedback.strip())
        if reflection is not None and reflection.render():
            parts.append("reflection:\n" + reflection.render())
        if solution and key is not None and key in self.solutions:
            parts.append("a program that passed before:\n" + self.solutions[key])
        return "\n".join(parts + ([ask] if ask else []))

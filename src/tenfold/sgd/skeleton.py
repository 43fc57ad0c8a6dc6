"""The skeleton of an answer as a graph: numbered points, each with dependencies and a difficulty.

Skeleton Graph Decoding (Jin et al., 2024, "Adaptive Skeleton Graph Decoding") asks the model for a
numbered list of sub-problems, each naming the earlier sub-problems it needs and whether it is easy or
hard. The canonical format here is compact, one point per line (id.title|the ids it needs, or -|difficulty),
because every plan character is a decoded token on the critical path:

    1.price of 3 pens|-|easy
    2.total with the book|1|hard

The parser also reads spaced and spelled-out forms, as an instructed LLM tends to write them
("2. total with the book | none | hard", "2. total | deps: 1 | hard", "2: total (deps: 1)").

`parse_skeleton` is lenient and repairs what a small model gets wrong, recording every repair as a
warning: dependencies on unknown ids or on the point itself are dropped, a point repeated (same id or
same title) is merged into its first occurrence, a dependency that closes a cycle is dropped, and a
missing difficulty counts as hard (the large model: the safe side). Text with no numbered point gives
no skeleton (None), so the caller falls back to plain decoding.

`PlanReader` reads a plan while it is being written and hands out the points that may start before it
ends (SGD's streaming option, `tenfold.sgd.api`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

DIFFICULTIES = ("easy", "hard")
_POINT = re.compile(r"^\s*(\d+)\s*[.):]\s*(.*)$")
_DEPS = re.compile(r"\bdeps?\s*[:=]\s*([^|]*)", re.IGNORECASE)
_BARE_DEPS = re.compile(r"\s*(none|-|\d+(\s*,\s*\d+)*)\s*", re.IGNORECASE)
_DIFF = re.compile(r"\b(easy|hard)\b", re.IGNORECASE)


@dataclass
class Point:
    id: int
    title: str
    deps: list[int] = field(default_factory=list)
    difficulty: str = "hard"


@dataclass
class Skeleton:
    points: list[Point]
    warnings: list[str] = field(default_factory=list)

    def by_id(self) -> dict[int, Point]:
        return {p.id: p for p in self.points}

    def format(self) -> str:
        """The canonical (compact) text of the skeleton: what the expert plans say and point prompts quote."""
        return "\n".join(
            f"{p.id}.{p.title}|{','.join(map(str, p.deps)) or '-'}|{p.difficulty}" for p in self.points
        )

    def through(self, point_id: int) -> Skeleton:
        """The plan up to and including point `point_id` (what a point is shown when points start while
        the plan is still being written)."""
        ids = [p.id for p in self.points]
        return Skeleton(self.points[: ids.index(point_id) + 1])

    def depth(self) -> int:
        """Points on the longest dependency chain."""
        memo: dict[int, int] = {}
        pts = self.by_id()

        def d(i: int) -> int:
            if i not in memo:
                memo[i] = 1 + max((d(j) for j in pts[i].deps), default=0)
            return memo[i]

        return max((d(p.id) for p in self.points), default=0)


def _title_key(title: str) -> str:
    return re.sub(r"\W+", " ", title).strip().lower()


def _parse_line(line: str) -> tuple[int, str, list[str], str | None] | None:
    """(id, title, dependency ids as written, difficulty or None) of one plan line; None if unnumbered."""
    m = _POINT.match(line)
    if not m:
        return None
    body = m.group(2)
    fields = body.split("|")
    title = fields[0].strip()
    deps_m = _DEPS.search(body)
    if deps_m:
        dep_tokens = re.findall(r"\d+", deps_m.group(1))
    elif len(fields) > 2 and _BARE_DEPS.fullmatch(fields[1]):  # "title | 1,2 | hard"
        dep_tokens = re.findall(r"\d+", fields[1])
    else:
        dep_tokens = []
    diff_m = _DIFF.search(body[len(fields[0]) :])
    return int(m.group(1)), title, dep_tokens, diff_m.group(1).lower() if diff_m else None


def parse_skeleton(text: str) -> Skeleton | None:
    """Parse and repair a skeleton; None when the text holds no numbered point (see module docstring)."""
    warnings: list[str] = []
    raw = [r for r in map(_parse_line, text.splitlines()) if r is not None]
    if not raw:
        return None

    points: dict[int, Point] = {}
    alias: dict[int, int] = {}  # merged id -> surviving id
    by_title: dict[str, int] = {}
    for pid, title, deps, diff in raw:
        key = _title_key(title)
        target = pid if pid in points else by_title.get(key) if key else None
        if target is not None:
            warnings.append(f"point {pid} ({title!r}) repeats point {target}; merged")
            if pid != target:
                alias[pid] = target
            p = points[target]
            p.deps += [int(d) for d in deps]
            if diff == "hard":
                p.difficulty = "hard"
            continue
        if not title:
            warnings.append(f"point {pid} has no title; dropped")
            continue
        if diff is None:
            warnings.append(f"point {pid} has no difficulty; treated as hard")
        points[pid] = Point(pid, title, [int(d) for d in deps], diff or "hard")
        if key:
            by_title[key] = pid

    for p in points.values():
        kept: list[int] = []
        for d in p.deps:
            d = alias.get(d, d)
            if d == p.id:
                warnings.append(f"point {p.id} depends on itself; dropped")
            elif d not in points:
                warnings.append(f"point {p.id} depends on unknown point {d}; dropped")
            elif d not in kept:
                kept.append(d)
        p.deps = kept

    _break_cycles(points, warnings)
    return Skeleton(list(points.values()), warnings)


def _break_cycles(points: dict[int, Point], warnings: list[str]) -> None:
    """Depth-first from each point in skeleton order; an edge to a point on the current path closes a
    cycle and is dropped (so the earlier-listed points keep their dependencies)."""
    state: dict[int, int] = {}  # 1: on the path, 2: done

    def visit(i: int) -> None:
        state[i] = 1
        for d in list(points[i].deps):
            if state.get(d) == 1:
                points[i].deps.remove(d)
                warnings.append(f"dependency {i} -> {d} closes a cycle; dropped")
            elif d not in state:
                visit(d)
        state[i] = 2

    for i in points:
        if i not in state:
            visit(i)


class PlanReader:
    """Reads a plan as it is written; `feed(text)` returns the points of newly completed lines that may
    start now.

    A line is complete at its newline. Its point may start when the repairs of `parse_skeleton` leave it
    as it is, as far as the plan so far tells: a new id and a new title, an explicit difficulty, and
    dependencies only on points that have started already. A later line can still change it (a repeat
    merges into it), so the caller compares the started points with the parse of the whole plan and
    redoes those that differ. `shown(point)` is the plan through that point's line, as parsed so far
    (what a point that starts early is shown); `ends[id]` is the number of plan characters up to the
    end of that point's line.
    """

    def __init__(self, may_start: Callable[[Point], bool] | None = None) -> None:
        """`may_start(point)`: whether a point that qualifies may start early at all (default: all);
        one held back waits for the whole plan, and so do the points that need it."""
        self.may_start = may_start or (lambda p: True)
        self.text = ""
        self._pos = 0  # start of the first incomplete line
        self._seen_ids: set[int] = set()
        self._seen_titles: set[str] = set()
        self.started: set[int] = set()
        self.ends: dict[int, int] = {}

    def feed(self, delta: str) -> list[Point]:
        self.text += delta
        ready: list[Point] = []
        while (nl := self.text.find("\n", self._pos)) >= 0:
            line, self._pos = self.text[self._pos : nl], nl + 1
            raw = _parse_line(line)
            if raw is None:
                continue
            pid, title, dep_tokens, diff = raw
            key = _title_key(title)
            fresh = bool(title) and pid not in self._seen_ids and key not in self._seen_titles
            deps = list(dict.fromkeys(int(d) for d in dep_tokens))
            self._seen_ids.add(pid)
            self._seen_titles.add(key)
            self.ends.setdefault(pid, self._pos)
            if fresh and diff is not None and all(d in self.started and d != pid for d in deps):
                point = Point(pid, title, deps, diff)
                if self.may_start(point):
                    self.started.add(pid)
                    ready.append(point)
        return ready

    def shown(self, point: Point) -> Skeleton:
        """The plan parsed so far, through `point` (which must have been read)."""
        return parse_skeleton(self.text[: self._pos]).through(point.id)

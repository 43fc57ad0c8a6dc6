"""A small discrete-event simulator of tasks on resources (compute and communication streams).

Each task needs one resource for `duration` and may start only after its dependencies finished (the
brief's constraint t(A_ij) >= t(C_i-1,j) + T_C, with the transfer itself a task on a link). A resource
runs one task at a time, either in a fixed order (`orders`: the resource waits for the next task of its
list, as a CUDA stream does) or, by default, list-scheduled: when it frees up it takes the ready task
with the smallest `prio`, else the task that becomes ready first.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Task:
    name: str
    resource: str
    duration: float
    deps: tuple[str, ...] = ()
    kind: str = ""  # what the task is (attention, expert, dispatch, ...): for plots and utilisation
    prio: tuple = ()  # order among ready tasks on a list-scheduled resource (smaller first)


@dataclass
class Timeline:
    tasks: dict[str, Task]
    start: dict[str, float]
    end: dict[str, float]
    meta: dict = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        return max(self.end.values(), default=0.0)

    def busy(self, resource: str) -> float:
        return sum(t.duration for t in self.tasks.values() if t.resource == resource)

    def utilisation(self) -> dict[str, float]:
        span = self.makespan or 1.0
        return {r: self.busy(r) / span for r in sorted({t.resource for t in self.tasks.values()})}

    def order(self, resource: str) -> list[str]:
        """The order in which `resource` ran its tasks."""
        names = [n for n, t in self.tasks.items() if t.resource == resource]
        return sorted(names, key=lambda n: (self.start[n], self.end[n]))


class DeadlockError(RuntimeError):
    """A fixed order asks a resource to wait for a task that can only run after a later one."""


def simulate(tasks: list[Task], orders: dict[str, list[str]] | None = None) -> Timeline:
    """Run `tasks`; commit them in order of start time (exact for positive durations)."""
    orders = orders or {}
    by_name = {t.name: t for t in tasks}
    if len(by_name) != len(tasks):
        raise ValueError("task names must be unique")
    children: dict[str, list[str]] = defaultdict(list)
    missing = {}
    for t in tasks:
        for d in t.deps:
            if d not in by_name:
                raise ValueError(f"task {t.name!r} depends on unknown task {d!r}")
            children[d].append(t.name)
        missing[t.name] = len(t.deps)
    for r, seq in orders.items():
        if sorted(seq) != sorted(n for n, t in by_name.items() if t.resource == r):
            raise ValueError(f"order of resource {r!r} must list each of its tasks exactly once")
    resources = sorted({t.resource for t in tasks})
    free = dict.fromkeys(resources, 0.0)
    pos = dict.fromkeys(orders, 0)
    ready_at: dict[str, float] = {}
    waiting: dict[str, list] = {r: [] for r in resources}  # (ready time, prio, name), list-scheduled
    available: dict[str, list] = {r: [] for r in resources}  # (prio, ready time, name): ready by `free`
    start: dict[str, float] = {}
    end: dict[str, float] = {}

    def mark_ready(name: str, when: float) -> None:
        ready_at[name] = when
        t = by_name[name]
        if t.resource not in orders:
            heapq.heappush(waiting[t.resource], (when, t.prio, name))

    for t in tasks:
        if not t.deps:
            mark_ready(t.name, 0.0)

    while len(end) < len(tasks):
        best = None  # (start, prio, name)
        for r in resources:
            if r in orders:
                if pos[r] < len(orders[r]) and orders[r][pos[r]] in ready_at:
                    n = orders[r][pos[r]]
                    cand = (max(free[r], ready_at[n]), by_name[n].prio, n)
                else:
                    continue
            else:
                w, a = waiting[r], available[r]
                while w and w[0][0] <= free[r]:
                    when, prio, n = heapq.heappop(w)
                    heapq.heappush(a, (prio, when, n))
                if a:
                    cand = (free[r], a[0][0], a[0][2])
                elif w:
                    cand = (w[0][0], w[0][1], w[0][2])
                else:
                    continue
            if best is None or cand[0] < best[0]:
                best = cand
        if best is None:
            stuck = {r: orders[r][pos[r]] for r in orders if pos[r] < len(orders[r])}
            raise DeadlockError(f"no task can start; fixed orders wait on {stuck}")
        s, _, n = best
        t = by_name[n]
        r = t.resource
        if r in orders:
            pos[r] += 1
        else:
            a = available[r]
            if a and a[0][2] == n:
                heapq.heappop(a)
            else:
                heapq.heappop(waiting[r])
        start[n], end[n] = s, s + t.duration
        free[r] = end[n]
        for c in children[n]:
            missing[c] -= 1
            if missing[c] == 0:
                mark_ready(c, max(end[d] for d in by_name[c].deps))
    return Timeline(by_name, start, end)

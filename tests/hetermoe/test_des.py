"""The discrete-event simulator against hand-computed schedules."""

import pytest

from tenfold.hetermoe.des import DeadlockError, Task, simulate


def test_chain_and_parallel_resources():
    tl = simulate(
        [
            Task("a", "gpu0", 2.0),
            Task("b", "gpu1", 3.0),
            Task("c", "link", 1.0, ("a",)),
            Task("d", "gpu1", 4.0, ("c", "b")),
        ]
    )
    assert (tl.start["c"], tl.start["d"], tl.makespan) == (2.0, 3.0, 7.0)
    assert tl.utilisation()["gpu1"] == pytest.approx(1.0)


def test_list_scheduling_takes_the_ready_task_with_the_smallest_priority():
    tasks = [
        Task("x", "cpu", 1.0),
        Task("late", "gpu", 1.0, ("x",), prio=(0,)),  # highest priority, ready only at t=1
        Task("low", "gpu", 5.0, (), prio=(2,)),
        Task("mid", "gpu", 1.0, (), prio=(1,)),
    ]
    tl = simulate(tasks)
    # at t=0 the gpu takes the best ready task (mid), then at t=1 `late` has become ready
    assert tl.order("gpu") == ["mid", "late", "low"]
    assert tl.makespan == 7.0


def test_fixed_order_waits_and_detects_deadlock():
    tasks = [Task("a", "r0", 1.0), Task("b", "r1", 1.0, ("a",)), Task("c", "r1", 1.0)]
    tl = simulate(tasks, {"r1": ["b", "c"]})  # r1 idles until b is ready, though c could go at 0
    assert (tl.start["b"], tl.start["c"]) == (1.0, 2.0)
    cyc = [Task("a", "r0", 1.0, ("d",)), Task("b", "r0", 1.0), Task("d", "r1", 1.0, ("b",))]
    with pytest.raises(DeadlockError):
        simulate(cyc, {"r0": ["a", "b"]})


def test_bad_task_graphs_are_rejected():
    with pytest.raises(ValueError, match="unknown task"):
        simulate([Task("a", "r", 1.0, ("nope",))])
    with pytest.raises(ValueError, match="unique"):
        simulate([Task("a", "r", 1.0), Task("a", "r", 2.0)])
    with pytest.raises(ValueError, match="exactly once"):
        simulate([Task("a", "r", 1.0), Task("b", "r", 1.0)], {"r": ["a"]})

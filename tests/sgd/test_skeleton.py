import random

from tenfold.sgd.skeleton import PlanReader, parse_skeleton


def acyclic(sk) -> bool:
    deps = {p.id: set(p.deps) for p in sk.points}
    done: set[int] = set()
    while deps:
        ready = [i for i, d in deps.items() if d <= done]
        if not ready:
            return False
        for i in ready:
            done.add(i)
            del deps[i]
    return True


def test_well_formed_skeleton():
    sk = parse_skeleton(
        "Plan:\n1. price of pens | deps: none | easy\n2. add the book | deps: 1 | hard\n3. tax | deps: 1, 2 | hard"
    )
    assert [(p.id, p.title, p.deps, p.difficulty) for p in sk.points] == [
        (1, "price of pens", [], "easy"),
        (2, "add the book", [1], "hard"),
        (3, "tax", [1, 2], "hard"),
    ]
    assert sk.warnings == [] and sk.depth() == 3
    assert parse_skeleton(sk.format()).points == sk.points  # the canonical form round-trips


def test_unknown_self_and_repeated_dependencies_are_dropped():
    sk = parse_skeleton("1. a | deps: 7 | easy\n2. b | deps: 2, 1, 1 | easy")
    assert [p.deps for p in sk.points] == [[], [1]]
    assert any("unknown point 7" in w for w in sk.warnings) and any("itself" in w for w in sk.warnings)


def test_duplicates_are_merged_and_dependencies_redirected():
    sk = parse_skeleton(
        "1. find x | deps: none | easy\n2. Find X. | deps: none | hard\n3. use x | deps: 2 | easy\n"
        "3. use x again | deps: 1 | easy"
    )
    assert [p.id for p in sk.points] == [1, 3]
    one, three = sk.points
    assert one.difficulty == "hard"  # a merged point is hard if any copy says so
    assert three.deps == [1] and three.title == "use x"
    assert sum("merged" in w for w in sk.warnings) == 2


def test_cycles_are_broken_keeping_earlier_points_dependencies():
    sk = parse_skeleton("1. a | deps: 3 | easy\n2. b | deps: 1 | easy\n3. c | deps: 2 | easy")
    assert acyclic(sk)
    assert sk.by_id()[1].deps == [3] and sk.by_id()[3].deps == [2] and sk.by_id()[2].deps == []
    assert any("cycle" in w for w in sk.warnings)


def test_missing_difficulty_is_hard_and_no_points_is_none():
    sk = parse_skeleton("1) first thing\n2: second thing (deps: 1)")
    assert [p.difficulty for p in sk.points] == ["hard", "hard"] and sk.points[1].deps == [1]
    assert parse_skeleton("I will just answer: 42.") is None and parse_skeleton("") is None


def test_any_text_gives_a_valid_graph():
    rng = random.Random(0)
    for _ in range(300):
        lines = []
        for _ in range(rng.randint(1, 8)):
            deps = ",".join(str(rng.randint(0, 9)) for _ in range(rng.randint(0, 4)))
            lines.append(
                f"{rng.randint(1, 6)}. t{rng.randint(0, 4)} | deps: {deps} | {rng.choice(['easy', 'hard', ''])}"
            )
        sk = parse_skeleton("\n".join(lines))
        ids = {p.id for p in sk.points}
        assert len(ids) == len(sk.points) and acyclic(sk)
        assert all(d in ids and d != p.id for p in sk.points for d in p.deps)


def test_compact_spaced_and_spelled_out_dependencies_read_the_same():
    compact = parse_skeleton("1.A|-|easy\n2.B|1|easy\n3.C|1,2|hard")
    spaced = parse_skeleton("1. A | none | easy\n2. B | 1 | easy\n3. C | 1, 2 | hard")
    spelled = parse_skeleton("1. A | deps: none | easy\n2. B | deps: 1 | easy\n3. C | deps: 1, 2 | hard")
    assert compact.points == spaced.points == spelled.points
    assert compact.format() == "1.A|-|easy\n2.B|1|easy\n3.C|1,2|hard"  # the canonical form is compact
    assert [p.deps for p in compact.points] == [[], [1], [1, 2]]
    # a title with digits is not mistaken for dependencies when there is no third field
    assert parse_skeleton("1. add 3 and 4\n2. 12 | easy").points[1].deps == []


def test_plan_reader_releases_points_that_later_lines_cannot_change():
    plan = (
        "1.A|-|easy\n"
        "2.B|1|hard\n"  # needs a started point: released
        "3.C|-\n"  # no difficulty (the parse will say hard): waits for the whole plan
        "4.D|3|easy\n"  # needs a point that has not started
        "5.B|-|easy\n"  # repeats the title of 2
        "6.F|9|easy\n"  # needs an unknown point
        "2.G|4|easy\n"  # repeats the id of 2, adding a dependency
        "8.H|2,1,2|easy"  # no newline yet: not complete
    )
    reader, released, at, shown = PlanReader(), [], {}, {}
    for i, ch in enumerate(plan):
        for p in reader.feed(ch):
            released.append(p)
            at[p.id], shown[p.id] = i, reader.shown(p).format()
    assert [(p.id, p.deps, p.difficulty) for p in released] == [(1, [], "easy"), (2, [1], "hard")]
    assert at == {1: plan.index("\n"), 2: plan.index("\n", plan.index("\n") + 1)}  # at the newline
    assert shown == {1: "1.A|-|easy", 2: "1.A|-|easy\n2.B|1|hard"}  # the plan through the point
    assert reader.ends[1] == len("1.A|-|easy\n")
    assert [p.id for p in reader.feed("\n")] == [8]  # its line is complete; duplicate deps merged
    final = parse_skeleton(plan).by_id()
    assert final[1] == released[0]  # the parse of the whole plan agrees on what it released
    assert final[2] != released[1]  # but a repeat merged into 2 later: the caller must redo it

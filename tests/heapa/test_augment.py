import random

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.envs.arith import Problem, make_problem
from tenfold.heapa import HeapSampler
from tenfold.heapa.augment import Child, Validator, expert_variant, parse_variant, validate_child
from tenfold.heapa.lineage import child_prior
from tenfold.heapa.sources import HeaPAConfig, HeaPASource, PrioritizedSource


def test_parse_and_validate_variants():
    assert parse_variant(" 38+44 d=1.02\n") == ("38+44", 1.02)
    assert parse_variant(" 38+44 d=9") == ("38+44", 1.33)  # clipped to [0.75, 1.33]
    assert parse_variant("no idea") is None and parse_variant("") is None
    parent = Problem(2, "37+45", 82)
    assert validate_child(parent, "38+44") == Problem(2, "38+44", 82)
    assert validate_child(parent, "38-44") is None  # other operator
    assert validate_child(parent, "380+44") is None  # more digits
    assert validate_child(parent, "37+45") is None  # the parent itself
    assert validate_child(Problem(3, "50-20", 30), "20-50") is None  # negative
    assert validate_child(parent, "38+(44") is None  # malformed


def test_expert_variants_are_valid_children():
    rng = random.Random(0)
    for level in range(1, 7):
        for _ in range(50):
            p = make_problem(level, rng)
            expr, d = expert_variant(p, rng)
            if expr != p.expr:
                assert validate_child(p, expr) is not None, (p, expr)
            assert 0.75 <= d <= 1.33


def test_validator_thread_accepts_rejects_and_applies_back_pressure():
    v = Validator(maxsize=2, put_timeout=0.01)
    parent = Problem(2, "37+45", 82)
    v.submit(Child(0, parent, "38+44", 1.0, 0.5))
    v.submit(Child(0, parent, "garbage", 1.0, 0.5))
    got = v.drain(wait=True)
    assert [(c.expr, p.answer) for c, p in got] == [("38+44", 82)]
    assert v.stats()["accepted"] == 1 and v.stats()["rejected"] == 1
    v.close()
    stuck = Validator(maxsize=1, put_timeout=0.01)
    stuck.close()  # the worker is gone: the queue fills and further children are dropped, not blocked on
    stuck.submit(Child(0, parent, "38+44", 1.0, 0.5))
    assert not stuck.submit(Child(0, parent, "39+44", 1.0, 0.5)) and stuck.dropped == 1


def test_children_enter_the_pool_with_their_prior_and_lineage():
    problems = [Problem(2, f"{10 + i}+{20 + i}", 30 + 2 * i) for i in range(8)]
    src = HeaPASource(problems, HeaPAConfig(augment=False, reestimate="path"))
    src.validator = Validator()
    items = src.sample(4)
    src.update(items, [[1.0, -1.0, 1.0, 1.0]] * 4)  # r̄ = 0.5
    parent = items[0]
    d = 1.25
    src.validator.submit(Child(parent.id, parent.answer, "11+22", d, child_prior(parent.reward, d)))
    src.validator.q.join()
    got = src.sample(1)  # admits the child first; the sample itself is a cold seed (cold comes first)
    assert got[0].reward is None
    assert src.lineage.parent == {8: parent.id}
    child = next(x for x in src.pool.scored() if x.id == 8)
    assert child.reward == pytest.approx(0.5 / 1.25) and src.values[8] == child.reward
    assert child.estimated and child.parent == parent.id
    src.close()


def test_augmentation_needs_a_policy():
    with pytest.raises(TenfoldError):
        HeaPASource([Problem(1, "1+1", 2)], HeaPAConfig(augment=True))


def test_prioritized_prefers_low_pass_rates():
    problems = [Problem(1, f"{i}+0", i) for i in range(10)]
    src = PrioritizedSource(problems, temperature=0.5, seed=0)
    src.update(src.items[:5], [[1.0] * 4] * 5)  # items 0-4 solved: s = 1
    src.update(src.items[5:], [[-1.0] * 4] * 5)  # items 5-9 failed: s = 0
    picks = [it.id for _ in range(200) for it in src.sample(1)]
    assert sum(i >= 5 for i in picks) > 190


def test_heap_sampler_repeats_and_learns_from_feedback():
    s = HeapSampler(dataset_size=10, batch_prompts=2, repeat=3, steps=3)
    it = iter(s)
    first = [next(it) for _ in range(6)]
    assert first[0] == first[1] == first[2] and first[3] == first[4] == first[5]
    s.feedback(first, [1.0, -1.0, 1.0, -1.0, -1.0, -1.0])
    assert len(s.pool.archive) == 2
    with pytest.raises(TenfoldError):
        s.feedback([99], [1.0])
    assert len(s) == 3 * 2 * 3


def test_heapa_source_state_round_trip():
    import json

    problems = [make_problem(1 + i % 6, random.Random(i)) for i in range(24)]
    a = HeaPASource(problems, HeaPAConfig(augment=False))
    a.update(a.sample(8), [[1.0, -1.0]] * 8)
    b = HeaPASource(problems, HeaPAConfig(augment=False))
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert [x.id for x in a.sample(10)] == [x.id for x in b.sample(10)]
    assert all(isinstance(x.answer, Problem) for x in b.pool.archive.values())

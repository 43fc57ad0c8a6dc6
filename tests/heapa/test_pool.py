import json
import random

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.heapa.lineage import Lineage, child_prior, g
from tenfold.heapa.pool import HeapPool, PoolConfig, PoolItem


def scored(n, seed=0):
    rng = random.Random(seed)
    return [PoolItem(i, f"p{i}", reward=rng.uniform(-1, 1)) for i in range(n)]


def test_size_never_exceeds_cap_under_random_operations():
    rng = random.Random(1)
    pool = HeapPool(cfg=PoolConfig(max_size=50, seed=1))
    next_id = 0
    for _ in range(2000):
        op = rng.random()
        if op < 0.6:
            pool.add(PoolItem(next_id, "q", reward=rng.choice([None, rng.uniform(-1, 1)])))
            next_id += 1
        elif op < 0.9 and len(pool):
            items = pool.sample(rng.randint(1, 5))
            pool.update(items, [[rng.choice([-1.0, 1.0]) for _ in range(4)] for _ in items])
        else:
            pool.reinsert()
        assert len(pool) <= 50
        lo, hi = pool.low.peek("max"), pool.high.peek("min")
        if lo and hi:  # the halves stay ordered
            assert lo.reward <= hi.reward


def test_cold_items_come_first_in_fifo_order():
    pool = HeapPool(scored(20))
    for i in range(100, 105):
        pool.add(PoolItem(i, "cold"))
    got = pool.sample(3)
    assert [x.id for x in got] == [100, 101, 102]
    got = pool.sample(4)
    assert [x.id for x in got[:2]] == [103, 104] and all(x.reward is not None for x in got[2:])


@pytest.mark.parametrize("seed", range(5))
def test_samples_come_from_the_2k_nearest_the_median_boundary(seed):
    items = scored(100, seed)
    rewards = sorted(x.reward for x in items)
    pool = HeapPool(items, PoolConfig(seed=seed))
    k = 5
    # independent expectation: low = the lower half (50 of 100 items), high = the rest;
    # candidates = the k largest of low and the k smallest of high
    low_vals, high_vals = rewards[:50], rewards[50:]
    allowed = set(low_vals[-k:]) | set(high_vals[:k])
    got = pool.sample(k)
    assert len(got) == k and {x.reward for x in got} <= allowed
    assert len(pool) == 100 - k  # chosen items left; the other candidates went back


def test_eviction_removes_the_hardest():
    items = scored(10)
    pool = HeapPool(items, PoolConfig(max_size=10))
    hardest = min(items, key=lambda x: x.reward)
    pool.add(PoolItem(99, "new", reward=0.0))
    ids = {x.id for x in pool.scored()}
    assert hardest.id not in ids and 99 in ids and len(pool) == 10 and pool.evicted == 1


def test_mixed_mode_takes_half_from_the_easiest_end():
    items = scored(40, 3)
    pool = HeapPool(items, PoolConfig(mode="mixed", seed=3))
    easiest = sorted(items, key=lambda x: -x.reward)[:2]
    got = pool.sample(4)
    assert {x.id for x in easiest} <= {x.id for x in got}


def test_archive_reinserted_when_pool_runs_low_and_sampling_is_without_replacement():
    pool = HeapPool(scored(6))
    first = pool.sample(4)
    pool.update(first, [[1.0, -1.0]] * 4)
    assert len(pool) == 2 and len(pool.archive) == 4
    second = pool.sample(4)  # 2 left < 4: the archive comes back first
    assert pool.reinsertions == 1 and len(second) == 4
    assert len({x.id for x in second}) == 4


def test_state_dict_round_trip_gives_the_same_future():
    a = HeapPool(scored(30), PoolConfig(seed=7))
    a.update(a.sample(5), [[1.0, 1.0, -1.0]] * 5)
    b = HeapPool(cfg=PoolConfig(seed=0))
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert [x.id for x in a.sample(6)] == [x.id for x in b.sample(6)]


def test_bad_input():
    with pytest.raises(TenfoldError):
        PoolConfig(low_fraction=1.5).validate()
    pool = HeapPool(scored(3))
    with pytest.raises(TenfoldError):
        pool.sample(0)
    with pytest.raises(TenfoldError):
        pool.update(pool.sample(1), [])
    inside = pool.scored()[0].id
    assert not pool.add(PoolItem(inside, "dup", reward=0.1))  # an id already in the pool is refused


def test_g_and_child_prior():
    assert g(0.5, 2.0) == 0.25 and g(-0.5, 2.0) == -1.0
    assert child_prior(0.9, 0.75) == 1.0  # clipped
    with pytest.raises(TenfoldError):
        g(0.1, 0.0)


def test_childagg_and_pathagg_by_hand():
    # 0 -> 1 (d=2), 0 -> 2 (d=0.5); 2 -> 3 (d=1), 2 -> 4 (d=1)
    lin = Lineage()
    assert lin.add(0, 1, 2.0) and lin.add(0, 2, 0.5) and lin.add(2, 3, 1.0) and lin.add(2, 4, 1.0)
    v = {0: 0.2, 1: 0.6, 2: -0.4, 3: 1.0, 4: 0.0}
    child = lin.reestimate(v, "child")
    v2 = 0.5 * -0.4 + 0.5 * (1.0 + 0.0) / 2  # = 0.05
    assert child[2] == pytest.approx(v2)
    # node 0 uses the re-estimated child 2: g(0.6, 2) = 0.3, g(0.05, 0.5) = 0.1
    assert child[0] == pytest.approx(0.5 * 0.2 + 0.5 * (0.3 + 0.1) / 2)
    path = lin.reestimate(v, "path", tau=1.0)
    # leaves below: child 1 -> 1, child 2 -> 2; weights 1/3, 2/3
    assert path[0] == pytest.approx(0.5 * 0.2 + 0.5 * (0.3 / 3 + 0.1 * 2 / 3))
    path2 = lin.reestimate(v, "path", tau=0.5)  # weights 1 and 4 -> 1/5, 4/5
    assert path2[0] == pytest.approx(0.5 * 0.2 + 0.5 * (0.3 / 5 + 0.1 * 4 / 5))
    flipped = lin.reestimate(v, "child", flip=True)  # g(0.6, 1/2) = 1.2, g(0.05, 2) = 0.025
    assert flipped[0] == pytest.approx(0.5 * 0.2 + 0.5 * (1.2 + 0.025) / 2)


def test_lineage_refuses_cycles():
    lin = Lineage()
    assert lin.add(1, 2, 1.0) and lin.add(2, 3, 1.0)
    assert not lin.add(3, 1, 1.0)  # would close 1 -> 2 -> 3 -> 1
    assert not lin.add(5, 3, 1.0)  # 3 already has a parent
    assert lin.reestimate({1: 0.0, 2: 0.0, 3: 0.5}, "path")[1] != 0.0


def test_fixed_split_samples_nearest_pass_rate_half():
    # most prompts all-wrong (r̄ = -1): the median boundary sits among them; split_at=0 does not
    items = [PoolItem(i, "p", reward=-1.0) for i in range(30)] + [
        PoolItem(100 + i, "p", reward=r) for i, r in enumerate([-0.5, -0.25, 0.25, 0.5, 1.0, 1.0])
    ]
    median = HeapPool(items, PoolConfig(seed=0)).sample(2)
    assert all(x.reward == -1.0 for x in median)
    items = [PoolItem(x.id, "p", reward=x.reward) for x in items]
    fixed = HeapPool(items, PoolConfig(seed=0, split_at=0.0)).sample(2)
    assert {x.reward for x in fixed} <= {-0.25, 0.25, -0.5, 0.5}

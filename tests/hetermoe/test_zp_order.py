"""The brief's theorem: on tiny instances no order of the tasks on the compute streams beats ZP's."""

import random

import pytest

from tenfold.hetermoe.costmodel import CostModel, DeviceProfile, MoESpec, Workload, parse_cluster
from tenfold.hetermoe.des import DeadlockError, simulate
from tenfold.hetermoe.schedules import ATTN, EXP, Setting, zp_tasks


def interleavings(chains):
    """Every merge of the chains that keeps each chain's own order."""
    if all(not c for c in chains):
        yield []
        return
    for i, c in enumerate(chains):
        if c:
            rest = [*chains[:i], c[1:], *chains[i + 1 :]]
            for tail in interleavings(rest):
                yield [c[0], *tail]


def random_setting(rng: random.Random) -> Setting:
    new = DeviceProfile("new", rng.uniform(20, 100), rng.uniform(10, 100), rng.uniform(2, 40), generation=2)
    old = DeviceProfile("old", rng.uniform(20, 100), rng.uniform(5, 50), rng.uniform(2, 40), generation=1)
    model = MoESpec(
        "m", hidden=rng.choice([512, 1024, 2048]), ffn=rng.choice([1024, 4096]), layers=2, experts=8
    )
    cluster = parse_cluster(f"{rng.randint(1, 4)}xnew,{rng.randint(1, 4)}xold", {"new": new, "old": old})
    return Setting(CostModel(model, Workload(seq=rng.choice([1024, 8192, 32768]), batch=2)), cluster)


@pytest.mark.parametrize("seed", range(4))
def test_no_compute_order_beats_zp(seed):
    setting = random_setting(random.Random(seed))
    tasks = zp_tasks(setting, r=2)
    best_zp = simulate(tasks).makespan
    by_res = {ATTN: [], EXP: []}
    for t in tasks:
        if t.resource in by_res:
            by_res[t.resource].append(t.name)
    chains = {
        res: [[n for n in names if n.endswith(f".{j}") or n == f"H{j}"] for j in range(2)]
        for res, names in by_res.items()
    }
    best = float("inf")
    tried = 0
    for attn in interleavings(chains[ATTN]):
        for exp in interleavings(chains[EXP]):
            try:
                best = min(best, simulate(tasks, {ATTN: attn, EXP: exp}).makespan)
                tried += 1
            except DeadlockError:
                pass
    assert tried > 100
    assert best_zp <= best * (1 + 1e-9), (best_zp, best)

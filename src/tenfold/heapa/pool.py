"""HeaPA's prompt pool: cold queue, two heaps split at the pool median of mean reward, boundary sampling.

HeaPA (arXiv 2601.22448) keeps RLVR prompts in a bounded pool ordered by r̄, the mean reward of a
prompt's last group of rollouts (rewards ±1, so r̄ = 2p - 1 with p the pass rate):

- cold: FIFO of unscored prompts; sampled first, so the first pass over the seeds is uniform.
- low: the harder half (lower r̄), read from its top = its *largest* r̄ (nearest the boundary).
  (`split_at`: an option, not HeaPA's: a fixed r̄ boundary, e.g. 0.0 = pass rate 0.5, instead of the
  median; with a policy that fails most prompts the median sits among all-wrong prompts.)
- high: the easier half, read from its top = its *smallest* r̄ (nearest the boundary).
  The split keeps `low_fraction` (0.5) of the scored items in low, so the boundary is the pool's
  median r̄, not p = 0.5; each insertion moves at most `rebalance_moves` (4) items across, so the split
  can lag, as in the reference code.
- sample(k): drain cold first; then pop 2k candidates alternately from the high and low tops, keep k at
  random, push the rest back. Chosen items leave the pool (sampling without replacement); after their
  rollouts they go to the archive with their new r̄. `mode="mixed"` takes half of the k from the
  easiest end of high instead.
- capacity: when full, evict the hardest item of low (its smallest r̄), else high's smallest.
- reinsertion: when the pool holds fewer than `refill_below` items, the archive is re-estimated over
  the lineage graph (`lineage.py`), shuffled, and re-added in chunks of `chunk` (512).

Each side is a pair of heaps (min and max) with lazy deletion, so every end is O(log N).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tenfold.core.errors import TenfoldError


@dataclass
class PoolItem:
    id: int
    prompt: str
    answer: Any = None
    reward: float | None = None  # r̄ of the last group (None: cold); an estimate for new children
    rollouts: int = 0  # rollouts spent on it so far
    parent: int | None = None
    difficulty: float = 1.0  # the policy's estimate for a child, relative to its parent
    level: int | None = None  # the task's own difficulty label, when it has one (for reports)
    estimated: bool = False  # reward is a prior (a child not yet rolled out), not measured


class _Side:
    """A set of items with O(log N) access to both its smallest and largest reward (lazy deletion)."""

    def __init__(self) -> None:
        self.min: list = []
        self.max: list = []
        self.live: dict[int, tuple[float, int]] = {}  # id -> (reward, version)
        self.items: dict[int, PoolItem] = {}
        self._version = itertools.count()

    def __len__(self) -> int:
        return len(self.live)

    def push(self, item: PoolItem) -> None:
        v = next(self._version)
        self.live[item.id] = (item.reward, v)
        self.items[item.id] = item
        heapq.heappush(self.min, (item.reward, v, item.id))
        heapq.heappush(self.max, (-item.reward, v, item.id))

    def _clean(self, heap: list) -> None:
        while heap and self.live.get(heap[0][2], (None, None))[1] != heap[0][1]:
            heapq.heappop(heap)

    def peek(self, end: str) -> PoolItem | None:
        heap = self.min if end == "min" else self.max
        self._clean(heap)
        return self.items[heap[0][2]] if heap else None

    def pop(self, end: str) -> PoolItem | None:
        item = self.peek(end)
        if item is not None:
            self.remove(item.id)
        return item

    def remove(self, item_id: int) -> PoolItem:
        del self.live[item_id]
        item = self.items.pop(item_id)
        if len(self.min) > 4 * len(self.live) + 64:  # compact stale entries now and then
            self.min = [e for e in self.min if self.live.get(e[2], (None, None))[1] == e[1]]
            self.max = [e for e in self.max if self.live.get(e[2], (None, None))[1] == e[1]]
            heapq.heapify(self.min)
            heapq.heapify(self.max)
        return item

    def __iter__(self) -> Iterator[PoolItem]:
        return iter(list(self.items.values()))


@dataclass
class PoolConfig:
    max_size: int = 30000
    low_fraction: float = 0.5
    rebalance_moves: int = 4
    refill_below: int = 0  # reinsert the archive when the pool holds fewer (0: one batch, set by sample)
    chunk: int = 512
    mode: str = "frontier"  # or "mixed": half of each batch from the easiest end
    split_at: float | None = None  # None: the median (low_fraction), as HeaPA; a value: a fixed r̄
    # boundary instead (0.0 is pass rate 0.5; an option, since the brief leaves the intent open)
    seed: int = 0

    def validate(self) -> PoolConfig:
        if self.max_size < 1 or not 0 < self.low_fraction < 1 or self.rebalance_moves < 1 or self.chunk < 1:
            raise TenfoldError(f"bad pool config: {self}")
        if self.mode not in ("frontier", "mixed"):
            raise TenfoldError(f"mode must be 'frontier' or 'mixed', got {self.mode!r}")
        return self


class HeapPool:
    """The pool; also a prompt source for `tenfold.rl.train_rl` (`sample`, `update`) and an iterator.

    `reestimate(archive_items) -> None` (set by the owner, e.g. HeaPA's lineage graph) may rewrite the
    archived items' rewards before they are reinserted."""

    def __init__(self, items: Iterable[PoolItem] = (), cfg: PoolConfig | None = None):
        self.cfg = (cfg or PoolConfig()).validate()
        self.rng = random.Random(self.cfg.seed)
        self.cold: deque[PoolItem] = deque()
        self.low, self.high = _Side(), _Side()
        self.archive: dict[int, PoolItem] = {}
        self.evicted = 0
        self.reinsertions = 0
        self.reestimate: Callable[[list[PoolItem]], None] | None = None
        self._ids: set[int] = set()
        for it in items:
            self.add(it)

    # ---- size and membership
    def __len__(self) -> int:
        return len(self.cold) + len(self.low) + len(self.high)

    def boundary(self) -> float | None:
        """The reward between the halves (mean of the two tops), None while either side is empty."""
        a, b = self.low.peek("max"), self.high.peek("min")
        if a is None or b is None:
            return None
        return (a.reward + b.reward) / 2

    # ---- adding
    def add(self, item: PoolItem) -> bool:
        """Add one item (cold when it has no reward); False when it was rejected (duplicate id)."""
        if item.id in self._ids:
            return False
        if len(self) >= self.cfg.max_size:
            self._evict()
        self._ids.add(item.id)
        if item.reward is None:
            self.cold.append(item)
        else:
            self._push_scored(item)
        return True

    def _push_scored(self, item: PoolItem) -> None:
        item.reward = float(min(1.0, max(-1.0, item.reward)))
        if self.cfg.split_at is not None:  # a fixed boundary: no rebalancing
            (self.low if item.reward < self.cfg.split_at else self.high).push(item)
            return
        top_low, top_high = self.low.peek("max"), self.high.peek("min")
        if (top_low is not None and item.reward <= top_low.reward) or (
            top_high is not None and item.reward < top_high.reward
        ):
            self.low.push(item)
        else:
            self.high.push(item)
        self._rebalance()

    def _rebalance(self) -> None:
        """Move at most `rebalance_moves` items across so low holds `low_fraction` of the scored ones."""
        for _ in range(self.cfg.rebalance_moves):
            target = math.floor(self.cfg.low_fraction * (len(self.low) + len(self.high)) + 0.5)
            if len(self.low) > target:
                self.high.push(self.low.pop("max"))
            elif len(self.low) < target:
                self.low.push(self.high.pop("min"))
            else:
                break

    def _evict(self) -> None:
        """Make room: the hardest scored item goes (low's smallest r̄, else high's), else the oldest cold."""
        victim = self.low.pop("min") or self.high.pop("min")
        if victim is None and self.cold:
            victim = self.cold.popleft()
        if victim is not None:
            self._ids.discard(victim.id)
            self.evicted += 1

    # ---- sampling
    def sample(self, k: int) -> list[PoolItem]:
        """k items (fewer only if pool and archive together hold fewer); they leave the pool."""
        if k < 1:
            raise TenfoldError(f"k must be >= 1, got {k}")
        if len(self) < max(k, self.cfg.refill_below):
            self.reinsert()
        out: list[PoolItem] = []
        while self.cold and len(out) < k:
            out.append(self.cold.popleft())
        need = k - len(out)
        if need > 0:
            out += self._from_heaps(need)
        for it in out:
            self._ids.discard(it.id)
        return out

    def _from_heaps(self, k: int) -> list[PoolItem]:
        easiest: list[PoolItem] = []
        if self.cfg.mode == "mixed":
            for _ in range(k // 2):
                it = self.high.pop("max")
                if it is None:
                    break
                easiest.append(it)
            k -= len(easiest)
        cand: list[PoolItem] = []
        sides = [(self.high, "min"), (self.low, "max")]
        turn = 0
        while len(cand) < 2 * k and (len(self.high) or len(self.low)):
            side, end = sides[turn % 2]
            it = side.pop(end)
            if it is not None:
                cand.append(it)
            turn += 1
        self.rng.shuffle(cand)
        chosen, rest = cand[:k], cand[k:]
        for it in rest:  # pushed back through the normal path (keeps the split)
            self._push_scored(it)
        return easiest + chosen

    # ---- after rollouts
    def update(self, items: Sequence[PoolItem], rewards: Sequence[Sequence[float]]) -> None:
        """Record each item's new r̄ (mean of its group's rewards) and archive it."""
        if len(items) != len(rewards):
            raise TenfoldError(f"{len(items)} items but {len(rewards)} reward groups")
        for it, rs in zip(items, rewards, strict=True):
            if not rs:
                raise TenfoldError(f"item {it.id} has an empty reward group")
            it.reward = sum(rs) / len(rs)
            it.rollouts += len(rs)
            it.estimated = False
            self.archive[it.id] = it

    def reinsert(self) -> int:
        """Re-estimate the archive, shuffle it, and add it back in chunks; returns how many came back."""
        if not self.archive:
            return 0
        items = list(self.archive.values())
        self.archive.clear()
        if self.reestimate is not None:
            self.reestimate(items)
        self.rng.shuffle(items)
        n = 0
        for i in range(0, len(items), self.cfg.chunk):
            for it in items[i : i + self.cfg.chunk]:
                n += self.add(it)
        self.reinsertions += 1
        return n

    def __iter__(self) -> Iterator[PoolItem]:
        """One item at a time, forever while anything is left (a plain iterator over the pool)."""
        while True:
            got = self.sample(1)
            if not got:
                return
            yield got[0]

    # ---- inspection and checkpoints
    def scored(self) -> list[PoolItem]:
        return list(self.low) + list(self.high)

    def state_dict(self) -> dict:
        return {
            "cfg": asdict(self.cfg),
            "rng": self.rng.getstate(),
            "cold": [asdict(i) for i in self.cold],
            "scored": [asdict(i) for i in self.scored()],
            "archive": [asdict(i) for i in self.archive.values()],
            "evicted": self.evicted,
            "reinsertions": self.reinsertions,
        }

    def load_state_dict(self, d: dict) -> None:
        self.cfg = PoolConfig(**d["cfg"]).validate()
        v, internal, g = d["rng"]
        self.rng.setstate((v, tuple(internal), g))
        self.cold, self.low, self.high, self._ids = deque(), _Side(), _Side(), set()
        self.archive = {x["id"]: PoolItem(**x) for x in d["archive"]}
        for x in d["cold"]:
            self.add(PoolItem(**x))
        for x in d["scored"]:
            self.add(PoolItem(**x))
        self.evicted, self.reinsertions = d["evicted"], d["reinsertions"]

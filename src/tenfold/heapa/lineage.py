"""HeaPA's lineage graph and the topology-aware re-estimation of archived prompts.

Augmented children point to their parent (parent -> child edges; an edge that would close a cycle is
refused). When archived prompts return to the pool their r̄ is re-estimated bottom-up (children before
parents), with g(v, d) = v / d if v >= 0 else v * d (d: the child's difficulty relative to its parent)
and every result clipped to [-1, 1]:

    ChildAgg: v_u <- 1/2 v_u + 1/2 mean_c g(v_c, d_c)
    PathAgg:  v_u <- 1/2 v_u + 1/2 sum_c w_c g(v_c, d_c),  w_c = n_c^(1/tau) / sum n^(1/tau)

with n_c the number of leaves below c (a leaf counts itself), so children that head larger families
weigh more. `flip=True` uses g(v, 1/d) instead: g maps a parent's value to a child's estimate (a
harder child, d > 1, gets a lower r̂), so applying it child -> parent may be inverted; the flipped form
is the alternative the brief asks to test.
"""

from __future__ import annotations

from collections.abc import Iterable

from tenfold.core.errors import TenfoldError


def g(v: float, d: float) -> float:
    """HeaPA's difficulty scaling: positive values shrink with d, negative ones grow with it."""
    if d <= 0:
        raise TenfoldError(f"difficulty must be > 0, got {d}")
    return v / d if v >= 0 else v * d


def clip(v: float) -> float:
    return max(-1.0, min(1.0, v))


def child_prior(parent_reward: float, d: float) -> float:
    """r̂ of a new child from its parent's r̄ this step: g(r̄_p, d), clipped (the augmentation prior)."""
    return clip(g(parent_reward, d))


class Lineage:
    def __init__(self) -> None:
        self.children: dict[int, list[int]] = {}
        self.parent: dict[int, int] = {}
        self.difficulty: dict[int, float] = {}

    def add(self, parent: int, child: int, difficulty: float) -> bool:
        """Record parent -> child; False (and nothing recorded) if it would close a cycle or the child
        already has a parent."""
        if child == parent or child in self.parent or self._reaches(child, parent):
            return False
        self.children.setdefault(parent, []).append(child)
        self.parent[child] = parent
        self.difficulty[child] = float(difficulty)
        return True

    def _reaches(self, start: int, target: int) -> bool:
        stack, seen = [start], set()
        while stack:
            u = stack.pop()
            if u == target:
                return True
            if u in seen:
                continue
            seen.add(u)
            stack += self.children.get(u, [])
        return False

    def leaves_below(self, u: int, memo: dict[int, int] | None = None) -> int:
        memo = {} if memo is None else memo
        if u not in memo:
            kids = self.children.get(u, [])
            memo[u] = 1 if not kids else sum(self.leaves_below(c, memo) for c in kids)
        return memo[u]

    def reestimate(
        self, values: dict[int, float], method: str = "path", tau: float = 1.0, flip: bool = False
    ) -> dict[int, float]:
        """New values for every node in `values` that has children with values (others unchanged).
        Bottom-up: a node's children are re-estimated before it."""
        if method not in ("child", "path"):
            raise TenfoldError(f"method must be 'child' or 'path', got {method!r}")
        if tau <= 0:
            raise TenfoldError(f"tau must be > 0, got {tau}")
        out = dict(values)
        memo: dict[int, int] = {}
        for u in self._postorder(values):
            kids = [c for c in self.children.get(u, []) if c in out]
            if not kids or u not in out:
                continue
            scaled = [g(out[c], 1 / self.difficulty[c] if flip else self.difficulty[c]) for c in kids]
            if method == "child":
                agg = sum(scaled) / len(scaled)
            else:
                ws = [self.leaves_below(c, memo) ** (1 / tau) for c in kids]
                agg = sum(w * s for w, s in zip(ws, scaled, strict=True)) / sum(ws)
            out[u] = clip(0.5 * out[u] + 0.5 * agg)
        return out

    def _postorder(self, nodes: Iterable[int]) -> list[int]:
        """Nodes (and their descendants) with every child before its parent."""
        order, done = [], set()
        for root in nodes:
            stack = [(root, False)]
            while stack:
                u, expanded = stack.pop()
                if u in done:
                    continue
                if expanded:
                    done.add(u)
                    order.append(u)
                    continue
                stack.append((u, True))
                stack += [(c, False) for c in self.children.get(u, []) if c not in done]
        return order

    def state_dict(self) -> dict:
        return {"edges": [[p, c, self.difficulty[c]] for c, p in self.parent.items()]}

    def load_state_dict(self, d: dict) -> None:
        self.__init__()
        for p, c, dd in d["edges"]:
            self.add(int(p), int(c), float(dd))

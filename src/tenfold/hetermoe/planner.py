"""HeterMoE's planner: micro-batch count R, asymmetric expert assignment, and the fluid (LP) bound.

Layout (the paper's): attention, gate, embeddings and head replicated on the M GPUs of the newer type,
the experts spread over the N GPUs of the older type. The planner then chooses

- the asymmetric expert assignment by *gather and squeeze* (the paper's pseudo-code is partly garbled;
  this is our reading of it, as stated in docs/hetermoe.md). With T_A the forward attention time of a
  micro-batch on an attention GPU and T_E its expert time on an expert GPU, a layer leaves a bubble
  T_gather = T_E - T_A on the attention side. Experts move in chunks: n1 = max(1, N/M) per attention
  GPU, n2 = n1·M/N per expert GPU (needs M | N or N | M). Moving a chunk shortens the expert side by
  n2·t_old and lengthens the attention side by n1·t_new (t = one expert's time), so it removes
  T_squeeze = n2·t_old + n1·t_new of bubble. Going through the layers the bubble accumulates; once it
  reaches T_squeeze, floor(bubble / T_squeeze) chunks of that layer move and the bubble shrinks by as
  much. A memory cap bounds the experts an attention GPU takes per layer (our choice: the states of
  the offloaded experts, fp16 weights + fp32 Adam, 16 bytes a parameter, may use `memory_share` of its
  memory).
- R: every divisor of the batch (in sequences) is simulated; the fastest wins (a micro-batch is at least
  one sequence).

`lp_bound` is the brief's fluid bound: fractions x_A, x_E of attention and expert work on the new GPUs,
minimise T s.t. x_A·W_A/(M·a_new) + x_E·W_E/(M·e_new) <= T and (1-x_A)·W_A/(N·a_old) +
(1-x_E)·W_E/(N·e_old) <= T (no communication, no bubbles), solved with scipy's linprog.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from tenfold.core.errors import TenfoldError
from tenfold.hetermoe.costmodel import Cluster, CostModel
from tenfold.hetermoe.schedules import Setting, dist_ep, ep, ep_ideal_ms, hetero_pp, zp


@dataclass
class LPBound:
    ms: float
    x_attention: float  # share of attention work on the new GPUs
    x_expert: float  # share of expert work on the new GPUs


def iteration_work_ms(setting: Setting) -> dict[str, float]:
    """Whole-iteration (forward + backward) attention and expert time if one GPU of each type did it."""
    cm = setting.cost
    tok, L, bf = cm.work.tokens, setting.layers, cm.work.backward_factor
    out = {}
    for side, (dev, _) in (("new", setting.cluster.new), ("old", setting.cluster.old)):
        out[f"attn_{side}"] = L * cm.attention_ms(dev, tok) * (1 + bf) + cm.head_ms(dev, tok)
        out[f"exp_{side}"] = L * cm.expert_ms(dev, tok * cm.model.top_k) * (1 + bf)
    return out


def fluid_bound(
    attn_new: float,
    exp_new: float,
    attn_old: float,
    exp_old: float,
    m: int,
    n: int,
    pin_attention: bool = False,
) -> LPBound:
    """The LP: work given as the time one GPU of each type would take for all of it. `pin_attention`
    fixes x_A = 1 (HeterMoE's layout: attention only on the new GPUs), the bound for that layout."""
    from scipy.optimize import linprog

    # variables (x_A, x_E, T); minimise T
    a_ub = [[attn_new / m, exp_new / m, -1.0], [-attn_old / n, -exp_old / n, -1.0]]
    b_ub = [0.0, -(attn_old + exp_old) / n]
    x_a = (1, 1) if pin_attention else (0, 1)
    res = linprog([0, 0, 1], A_ub=a_ub, b_ub=b_ub, bounds=[x_a, (0, 1), (0, None)], method="highs")
    if not res.success:  # pragma: no cover - the LP is always feasible (x = 0 or 1 are)
        raise RuntimeError(f"LP bound failed: {res.message}")
    return LPBound(float(res.x[2]), float(res.x[0]), float(res.x[1]))


def lp_bound(setting: Setting, pin_attention: bool = False) -> LPBound:
    w = iteration_work_ms(setting)
    m, n = setting.cluster.new[1], setting.cluster.old[1]
    return fluid_bound(w["attn_new"], w["exp_new"], w["attn_old"], w["exp_old"], m, n, pin_attention)


@dataclass
class Assignment:
    experts_moved: list[int]  # per layer, experts that run on the attention GPUs (all of them together)
    n1: int
    n2: int
    note: str = ""

    def shares(self, experts: int) -> list[float]:
        return [x / experts for x in self.experts_moved]


def gather_and_squeeze(setting: Setting, r: int, memory_share: float = 0.25) -> Assignment:
    """Asymmetric expert assignment (see the module docstring) for R = r micro-batches."""
    cm, L, e = setting.cost, setting.layers, setting.cost.model.experts
    (new, m), (old, n) = setting.cluster.new, setting.cluster.old
    if n % m and m % n:
        return Assignment([0] * L, 0, 0, f"off: M={m} and N={n} do not divide one another")
    n1 = max(1, n // m)
    n2 = n1 * m // n
    tok = cm.work.tokens / r
    t_a = cm.attention_ms(new, tok / m)
    t_e = cm.expert_ms(old, tok * cm.model.top_k / n)
    t_new, t_old = cm.per_expert_ms(new, tok), cm.per_expert_ms(old, tok)
    squeeze = n2 * t_old + n1 * t_new
    bytes_per_expert = 16 * cm.model.expert_params
    cap_per_gpu = int(memory_share * new.memory_gb * 1e9 // (bytes_per_expert * L))  # per layer
    chunk_total = n1 * m  # experts moved by one chunk
    by_count = (e - n) // chunk_total if e > n else 0  # every expert GPU keeps at least one expert
    max_chunks = min(cap_per_gpu // n1, by_count)
    moved, bubble = [], 0.0
    for _ in range(L):
        bubble += max(0.0, t_e - t_a)
        chunks = min(max_chunks, math.floor(bubble / squeeze)) if squeeze > 0 else 0
        bubble -= chunks * squeeze
        moved.append(chunks * chunk_total)
    note = (
        f"memory cap: {cap_per_gpu} experts per layer on an attention GPU"
        if cap_per_gpu // n1 < by_count
        else ""
    )
    return Assignment(moved, n1, n2, note)


@dataclass
class Plan:
    cluster: str
    model: str
    seq: int
    batch: int
    R: int
    experts_moved: list[int]
    times_ms: dict[str, float] = field(default_factory=dict)  # per schedule, one iteration
    lp_bound_ms: float = 0.0
    lp_x: tuple[float, float] = (0.0, 0.0)
    lp_pinned_ms: float = 0.0  # the bound with attention pinned to the new GPUs (HeterMoE's layout)
    r_sweep: dict[int, float] = field(default_factory=dict)  # R -> ZP+asym iteration ms
    note: str = ""

    def speedups(self) -> dict[str, float]:
        """HeterMoE (ZP + asymmetric assignment) over every other schedule."""
        hm = self.times_ms["heter_moe"]
        return {k: v / hm for k, v in self.times_ms.items() if k != "heter_moe"}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["speedups"] = self.speedups()
        d["heter_moe_over_lp_bound"] = self.times_ms["heter_moe"] / self.lp_bound_ms
        d["heter_moe_over_layout_bound"] = self.times_ms["heter_moe"] / self.lp_pinned_ms
        return d


def plan(
    cost: CostModel,
    cluster: Cluster,
    r: int | None = None,
    memory_share: float = 0.25,
    check_assignment: bool = True,
) -> Plan:
    """Choose R and the expert assignment; simulate every schedule for the comparison.

    `check_assignment` (our addition): simulate the gather-and-squeeze assignment against none and
    keep the faster (the heuristic can overshoot when chunks are coarse); False trusts it as the paper
    does. `times_ms["heter_moe_gs"]` is always the paper's heuristic at the chosen R."""
    setting = Setting(cost, cluster)
    batch = cost.work.batch
    candidates = [r] if r else [d for d in range(1, batch + 1) if batch % d == 0]
    if r and batch % r:
        raise TenfoldError(f"R={r} must divide the batch of {batch} sequences")
    sweep, best, gs_only = {}, None, {}
    for cand in candidates:
        a = gather_and_squeeze(setting, cand, memory_share)
        t_gs = zp(setting, cand, a.shares(cost.model.experts)).makespan
        gs_only[cand] = t_gs
        if check_assignment and any(a.experts_moved):  # keep gather-and-squeeze only where it helps
            t_none = zp(setting, cand).makespan
            if t_none < t_gs:
                a, t_gs = (
                    Assignment([0] * setting.layers, a.n1, a.n2, "gather-and-squeeze was slower here"),
                    t_none,
                )
        sweep[cand] = t_gs
        if best is None or t_gs < sweep[best[0]]:
            best = (cand, a)
    assert best is not None
    r_best, a = best
    lp, lp_pinned = lp_bound(setting), lp_bound(setting, pin_attention=True)
    times = {
        "heter_moe": sweep[r_best],
        "zp": zp(setting, r_best).makespan,
        "dist_ep": dist_ep(setting).makespan,
        "heter_moe_gs": gs_only[r_best],
        "ep": ep(setting).makespan,
        "ep_ideal": ep_ideal_ms(setting),
        "hetero_pp": min(
            hetero_pp(setting, c).makespan for c in candidates if c >= 2 or len(candidates) == 1
        ),
    }
    return Plan(
        str(cluster),
        cost.model.name,
        cost.work.seq,
        batch,
        r_best,
        a.experts_moved,
        times,
        lp.ms,
        (lp.x_attention, lp.x_expert),
        lp_pinned.ms,
        sweep,
        a.note,
    )

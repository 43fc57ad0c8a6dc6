"""One training iteration of each schedule as tasks for the simulator (`des.simulate`).

Every GPU of a group does the same work (balanced routing, data split evenly), so one representative
GPU per group is simulated: a compute stream and, for the disaggregated schedules, a dispatch and a
combine link (attention -> expert and expert -> attention; backward traffic runs the other way on the
other link, as the separate process groups of the brief allow). Times are milliseconds.

- `zp`: zebra parallelism. Attention (and gate, embeddings, head) on the M new GPUs, experts on the N
  old ones; the batch split into R micro-batches so the two groups work on different micro-batches at
  once. Order (the paper's theorem): attention forward layer by layer over micro-batches 1..R, the
  last layer interleaving forward and backward per micro-batch as they return, then backward in
  reverse layer order; experts the same on their side. Each compute stream list-schedules by that
  order. With `offload` (asymmetric expert assignment), per layer a share of the experts runs on the
  attention GPUs right after that layer's attention; its tokens stay off the network.
- `dist_ep`: the same disaggregated layout without overlap (R = 1).
- `ep`: expert parallelism over all M + N GPUs (DeepSpeed-MoE): each GPU holds an equal data share and
  an equal share of the experts, all-to-all exchanges are collectives, so every step waits for the
  slowest device type.
- `hetero_pp`: heterogeneity-aware pipeline parallelism: two stages (one per device type) with the
  layer split chosen for the best time, expert parallelism inside a stage, 1F1B over R micro-batches.
- `ep_ideal_ms`: the paper's EP(Ideal): the sum of each device type's homogeneous EP throughput.

Not modelled (as said in docs/hetermoe.md): gradient all-reduce of replicated weights (overlapped with
backward by DeepSpeed and here alike), routing imbalance and token dropping, the traffic between
attention GPUs for offloaded experts.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenfold.core.errors import TenfoldError
from tenfold.hetermoe.costmodel import Cluster, CostModel, DeviceProfile
from tenfold.hetermoe.des import Task, Timeline, simulate

ATTN, EXP, A2E, E2A = "attention GPU", "expert GPU", "link attn->exp", "link exp->attn"


@dataclass(frozen=True)
class Setting:
    cost: CostModel
    cluster: Cluster

    @property
    def layers(self) -> int:
        return self.cost.model.layers


def _check_r(setting: Setting, r: int) -> None:
    if r < 1 or setting.cost.work.batch % r:
        raise TenfoldError(
            f"micro-batches R={r} must divide the batch of {setting.cost.work.batch} sequences"
        )


def zp_tasks(setting: Setting, r: int, offload: list[float] | None = None) -> list[Task]:
    """Tasks of one ZP iteration. `offload[li]`: share of layer li's experts on the attention GPUs."""
    _check_r(setting, r)
    cm, L = setting.cost, setting.layers
    (new, m), (old, n) = setting.cluster.new, setting.cluster.old
    off = list(offload) if offload is not None else [0.0] * L
    if len(off) != L or not all(0.0 <= x < 1.0 for x in off):
        raise TenfoldError(f"offload must give a share in [0, 1) for each of the {L} layers, got {off}")
    bf, k, h = cm.work.backward_factor, cm.model.top_k, cm.model.hidden
    tok = cm.work.tokens / r  # tokens per micro-batch
    t_attn = cm.attention_ms(new, tok / m)
    t_head = cm.head_ms(new, tok / m)

    def link(share_remote: float) -> float:  # both ends of the bipartite exchange, the slower one wins
        values = tok * k * h * share_remote
        return max(cm.transfer_ms(new, values / m), cm.transfer_ms(old, values / n))

    tasks: list[Task] = []

    def add(name, res, dur, deps, kind, prio):
        if dur > 0:
            tasks.append(Task(name, res, dur, tuple(d for d in deps if d in names), kind, prio))
            names.add(name)
        else:  # a zero-length task: forward its dependencies to whoever depends on it
            alias[name] = tuple(d for d in deps if d in names)

    names: set[str] = set()
    alias: dict[str, tuple[str, ...]] = {}

    def deps(*ds: str) -> tuple[str, ...]:
        out: list[str] = []
        for d in ds:
            out += alias.get(d, (d,))
        return tuple(out)

    for j in range(r):
        for li in range(L):
            prev = deps(f"C{li - 1}.{j}", f"X{li - 1}.{j}") if li else ()
            t_exp = cm.expert_ms(old, tok * k * (1 - off[li]) / n)
            t_off = cm.expert_ms(new, tok * k * off[li] / m)
            add(f"A{li}.{j}", ATTN, t_attn, prev, "attention", (li, 0, j))
            add(f"X{li}.{j}", ATTN, t_off, deps(f"A{li}.{j}"), "offloaded expert", (li, 1, j))
            add(f"D{li}.{j}", A2E, link(1 - off[li]), deps(f"A{li}.{j}"), "dispatch", (li, j))
            add(f"E{li}.{j}", EXP, t_exp, deps(f"D{li}.{j}"), "expert", (li, j))
            add(f"C{li}.{j}", E2A, link(1 - off[li]), deps(f"E{li}.{j}"), "combine", (li, j))
        add(f"H{j}", ATTN, t_head, deps(f"C{L - 1}.{j}", f"X{L - 1}.{j}"), "head+loss", (L, 0, j))
        grad = f"H{j}"
        for li in reversed(range(L)):
            back = 2 * L - li  # backward stages come after every forward stage, last layer first
            t_exp = cm.expert_ms(old, tok * k * (1 - off[li]) / n) * bf
            t_off = cm.expert_ms(new, tok * k * off[li] / m) * bf
            add(f"Cb{li}.{j}", A2E, link(1 - off[li]), deps(grad), "combine (bwd)", (back, j))
            add(f"Eb{li}.{j}", EXP, t_exp, deps(f"Cb{li}.{j}"), "expert (bwd)", (back, j))
            add(f"Db{li}.{j}", E2A, link(1 - off[li]), deps(f"Eb{li}.{j}"), "dispatch (bwd)", (back, j))
            add(f"Xb{li}.{j}", ATTN, t_off, deps(grad), "offloaded expert (bwd)", (back, 0, j))
            add(
                f"Ab{li}.{j}",
                ATTN,
                t_attn * bf,
                deps(f"Db{li}.{j}", f"Xb{li}.{j}"),
                "attention (bwd)",
                (back, 1, j),
            )
            grad = f"Ab{li}.{j}"
    return tasks


def zp(setting: Setting, r: int, offload: list[float] | None = None) -> Timeline:
    tl = simulate(zp_tasks(setting, r, offload))
    tl.meta = {"schedule": "zp" if not offload or not any(offload) else "zp+asym", "R": r}
    return tl


def dist_ep(setting: Setting) -> Timeline:
    tl = simulate(zp_tasks(setting, 1))
    tl.meta = {"schedule": "dist_ep", "R": 1}
    return tl


def _ep_layer_ms(cm: CostModel, groups: list[tuple[DeviceProfile, int]], tokens: float) -> dict:
    """Per-device-type forward times of one EP layer over `tokens` tokens on all `groups`' GPUs."""
    g = sum(n for _, n in groups)
    k, h = cm.model.top_k, cm.model.hidden
    a2a_values = tokens / g * k * h * (1 - 1 / g) if g > 1 else 0.0
    return {
        "attn": {d.name: cm.attention_ms(d, tokens / g) for d, _ in groups},
        "exp": {d.name: cm.expert_ms(d, tokens * k / g) for d, _ in groups},
        "head": {d.name: cm.head_ms(d, tokens / g) for d, _ in groups},
        "a2a": max(cm.transfer_ms(d, a2a_values) for d, _ in groups),
    }


def ep_tasks(setting: Setting, groups: list[tuple[DeviceProfile, int]] | None = None) -> list[Task]:
    """Synchronous expert parallelism: per layer attention, all-to-all, experts, all-to-all."""
    cm = setting.cost
    groups = list(groups or setting.cluster.groups)
    t = _ep_layer_ms(cm, groups, cm.work.tokens)
    bf, tasks, prev = cm.work.backward_factor, [], []

    def stage(kind: str, times: dict, scale: float, tag: str) -> None:
        nonlocal prev
        names = []
        for d, _ in groups:
            names.append(f"{tag}.{d.name}")
            tasks.append(Task(names[-1], d.name, times[d.name] * scale, tuple(prev), kind))
        prev = names

    def a2a(tag: str, kind: str) -> None:
        nonlocal prev
        if t["a2a"] > 0:
            tasks.append(Task(tag, "all-to-all", t["a2a"], tuple(prev), kind))
            prev = [tag]

    for li in range(setting.layers):
        stage("attention", t["attn"], 1.0, f"A{li}")
        a2a(f"D{li}", "dispatch")
        stage("expert", t["exp"], 1.0, f"E{li}")
        a2a(f"C{li}", "combine")
    stage("head+loss", t["head"], 1.0, "H")
    for li in reversed(range(setting.layers)):
        a2a(f"Cb{li}", "combine (bwd)")
        stage("expert (bwd)", t["exp"], bf, f"Eb{li}")
        a2a(f"Db{li}", "dispatch (bwd)")
        stage("attention (bwd)", t["attn"], bf, f"Ab{li}")
    return tasks


def ep(setting: Setting) -> Timeline:
    tl = simulate(ep_tasks(setting))
    tl.meta = {"schedule": "ep"}
    return tl


def ep_ideal_ms(setting: Setting) -> float:
    """EP(Ideal): each device type trains alone with EP; their throughputs add up."""
    rates = [1.0 / simulate(ep_tasks(setting, [g])).makespan for g in setting.cluster.groups]
    return 1.0 / sum(rates)


def hetero_pp(setting: Setting, r: int) -> Timeline:
    """Two pipeline stages (one per device type), best layer split and stage order, 1F1B."""
    _check_r(setting, r)
    best = None
    for first, second in (setting.cluster.groups, setting.cluster.groups[::-1]):
        for split in range(1, setting.layers):
            tl = simulate(_pp_tasks(setting, r, [first, second], split))
            if best is None or tl.makespan < best.makespan:
                best = tl
                best.meta = {
                    "schedule": "hetero_pp",
                    "R": r,
                    "stages": [first[0].name, second[0].name],
                    "layers": [split, setting.layers - split],
                }
    assert best is not None, "hetero_pp needs at least two layers"
    return best


def _pp_tasks(setting: Setting, r: int, stages: list[tuple[DeviceProfile, int]], split: int) -> list[Task]:
    cm = setting.cost
    tok, bf = cm.work.tokens / r, cm.work.backward_factor
    layer_counts = [split, setting.layers - split]
    fwd = []
    for s, (dev, n) in enumerate(stages):
        t = _ep_layer_ms(cm, [(dev, n)], tok)
        per_layer = t["attn"][dev.name] + t["exp"][dev.name] + 2 * t["a2a"]
        fwd.append(layer_counts[s] * per_layer + (t["head"][dev.name] / 3 if s == 1 else 0.0))
    p2p = max(cm.transfer_ms(d, tok * cm.model.hidden / n) for d, n in stages)
    s0, s1 = (f"stage {i} ({n}x{d.name})" for i, (d, n) in enumerate(stages))
    tasks = []
    for j in range(r):  # 1F1B: backward first among ready tasks, older micro-batches first
        tasks += [
            Task(f"F0.{j}", s0, fwd[0], (), "forward", (1, j)),
            Task(f"P{j}", "p2p", p2p, (f"F0.{j}",), "activations", (1, j)),
            Task(f"F1.{j}", s1, fwd[1], (f"P{j}",), "forward", (1, j)),
            Task(f"B1.{j}", s1, fwd[1] * bf, (f"F1.{j}",), "backward", (0, j)),
            Task(f"Pb{j}", "p2p back", p2p, (f"B1.{j}",), "gradients", (0, j)),
            Task(f"B0.{j}", s0, fwd[0] * bf, (f"Pb{j}",), "backward", (0, j)),
        ]
    return tasks

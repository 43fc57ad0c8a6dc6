"""A real multi-process HeterMoE runtime on torch.distributed (gloo on CPU; NCCL-ready layout).

Ranks 0..M-1 are attention ranks (embeddings, attention, gates, head; data-parallel over the
micro-batch's sequences), ranks M..M+N-1 expert ranks (the experts, split evenly). The zebra schedule
(ZP) runs on three streams per rank, as in the paper: the main thread computes, one thread drives the
dispatch process group (attention -> expert traffic: forward dispatch, backward combine-gradients) and
one the combine group (expert -> attention: forward combine, backward dispatch-gradients); events order
them. Every exchange is an `all_to_all_single` over all ranks with unequal split sizes (zero rows
where a rank sends or receives nothing), preceded in dispatch by an exchange of per-expert counts.
The order of tasks on each stream is the simulator's (`schedules.zp`), so the runtime executes the plan
the planner chose. `ep` is the baseline: every rank does attention on its data share and holds an equal
share of the experts; collectives are blocking.

Backward is manual and segment by segment: a segment is "combine of layer l-1 + attention and gate of
layer l" (or the head), its inputs detached leaves, so gradients can be exchanged between ranks and
the segments run in the schedule's order. After the iteration, attention gradients are summed over the
attention ranks (ZP) or all ranks (EP) and each rank steps Adam on the parameters it owns.

Device generations are emulated per op class: each op is dilated (the thread sleeps) to its cost-model
time on the emulated device type of its rank, so two CPU cores can stand in for a mixed cluster; the
iteration time is then comparable with the simulator's prediction for the same configuration.

Run it with `tenfold hetermoe train` (spawns the processes) or under torchrun:
`torchrun --nproc-per-node 4 -m tenfold.hetermoe.runtime --schedule zp --attention-ranks 2`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from tenfold.core.errors import TenfoldError
from tenfold.hetermoe.costmodel import Cluster, CostModel, DeviceProfile, MoESpec, Workload
from tenfold.hetermoe.des import Timeline
from tenfold.hetermoe.moe import MoEConfig, MoEModel, synthetic_batch
from tenfold.hetermoe.schedules import A2E, ATTN, E2A, EXP, Setting, ep, zp

# Emulated device types: slow enough that each op's emulated time exceeds its real time on a shared
# 2-core machine (tens of ms), with the paper's ratios between them (experts 0.8x, attention core ~3.7x).
EMULATED: dict[str, DeviceProfile] = {
    "emu-new": DeviceProfile("emu-new", 0.0016, 0.0008, 0.007, 48.0, link_latency_ms=0.5, generation=2),
    "emu-old": DeviceProfile("emu-old", 0.00128, 0.00022, 0.007, 32.0, link_latency_ms=0.5, generation=1),
}
WAIT_S = 300.0  # a rank that waits this long for a peer gives up (a hang becomes an error)


@dataclass
class RuntimeConfig:
    schedule: str = "zp"  # zp or ep
    attention_ranks: int = 2  # M (new device type)
    expert_ranks: int = 2  # N (old device type)
    micro_batches: int = 4  # R (ZP only; EP runs the batch at once)
    batch: int = 24  # sequences per iteration
    seq: int = 128
    steps: int = 3
    lr: float = 3e-3
    seed: int = 0
    emulate: bool = True  # dilate ops to the emulated devices' cost-model times
    new_device: str = "emu-new"
    old_device: str = "emu-old"
    model: MoEConfig = field(default_factory=MoEConfig)

    @property
    def world(self) -> int:
        return self.attention_ranks + self.expert_ranks

    def validate(self) -> RuntimeConfig:
        m, n, e = self.attention_ranks, self.expert_ranks, self.model.experts
        if self.schedule not in ("zp", "ep"):
            raise TenfoldError(f"schedule must be 'zp' or 'ep', got {self.schedule!r}")
        if m < 1 or n < 1:
            raise TenfoldError(f"need at least one attention and one expert rank, got M={m} N={n}")
        holders = n if self.schedule == "zp" else m + n
        if e % holders:
            raise TenfoldError(f"{e} experts do not split evenly over {holders} ranks ({self.schedule})")
        shards = self.micro_batches * m if self.schedule == "zp" else m + n
        if self.batch % shards:
            raise TenfoldError(
                f"batch {self.batch} must be divisible by {shards} (micro-batches x data shards)"
            )
        if self.seq > self.model.max_seq:
            raise TenfoldError(f"seq {self.seq} exceeds the model's max_seq {self.model.max_seq}")
        for d in (self.new_device, self.old_device):
            if d not in EMULATED:
                raise TenfoldError(f"unknown emulated device {d!r}; known: {sorted(EMULATED)}")
        return self

    def setting(self) -> Setting:
        c = self.model
        spec = MoESpec("runtime", c.hidden, c.ffn, c.layers, c.experts, c.top_k, c.vocab)
        cluster = Cluster(
            (
                (EMULATED[self.new_device], self.attention_ranks),
                (EMULATED[self.old_device], self.expert_ranks),
            )
        )
        return Setting(CostModel(spec, Workload(self.seq, self.batch, checkpointing=False)), cluster)

    def timeline(self) -> Timeline:
        """The simulator's iteration for this configuration (its orders drive the runtime)."""
        s = self.setting()
        return zp(s, self.micro_batches) if self.schedule == "zp" else ep(s)


class _Stream(threading.Thread):
    """Runs one process group's exchanges in the schedule's order."""

    def __init__(self, names: list[str], run):
        super().__init__(daemon=True)
        self.names, self.run_op, self.error = names, run, None

    def run(self):
        try:
            for n in self.names:
                self.run_op(n)
        except BaseException as e:  # surfaced by the main thread
            self.error = e


class Worker:
    def __init__(self, cfg: RuntimeConfig, rank: int):
        self.cfg, self.rank, self.world = cfg, rank, cfg.world
        c, m = cfg.model, cfg.attention_ranks
        torch.manual_seed(cfg.seed)
        self.model = MoEModel(c)  # same init on every rank; each keeps what it owns
        self.zp = cfg.schedule == "zp"
        self.attn_role = rank < m if self.zp else True
        self.exp_role = rank >= m if self.zp else True
        holders = list(range(m, self.world)) if self.zp else list(range(self.world))
        self.per_rank = c.experts // len(holders)
        self.owner = [holders[e // self.per_rank] for e in range(c.experts)]
        self.local_experts = [e for e in range(c.experts) if self.owner[e] == rank]
        self.device = cfg.new_device if rank < m else cfg.old_device
        self.data_shards = m if self.zp else self.world
        self.shard = rank if self.attn_role else -1
        self.r = cfg.micro_batches if self.zp else 1
        self.a2e = dist.new_group(list(range(self.world)))
        self.e2a = dist.new_group(list(range(self.world))) if self.zp else self.a2e
        self.attn_group = dist.new_group(list(range(m))) if self.zp else None
        tl = cfg.timeline()
        self.tl = tl
        self.dur = {n: t.duration for n, t in tl.tasks.items()}
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    # --- bookkeeping ----------------------------------------------------------------------------------
    def event(self, name: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(name, threading.Event())

    def wait(self, name: str) -> None:
        if not self.event(name).wait(WAIT_S):
            raise RuntimeError(f"rank {self.rank}: timed out waiting for {name}")

    def dilate(self, started: float, task: str) -> None:
        if self.cfg.emulate:
            left = started + self.dur[task] / 1e3 - time.perf_counter()
            if left > 0:
                time.sleep(left)

    def owned_params(self) -> dict[str, torch.nn.Parameter]:
        out = {}
        for name, p in self.model.named_parameters():
            if ".experts." in name:
                e = int(name.split(".experts.")[1].split(".")[0])
                if self.owner[e] == self.rank:
                    out[name] = p
            elif self.attn_role:
                out[name] = p
        return out

    # --- one iteration --------------------------------------------------------------------------------
    def iteration(self, tokens: torch.Tensor, targets: torch.Tensor) -> tuple[float, float, float]:
        """Forward + backward of one batch; returns (loss share, start time, end time)."""
        self.events.clear()
        self.st: dict = {}  # per (kind, layer, micro-batch) state
        self.loss = 0.0
        b = tokens.shape[0]
        per = b // (self.r * self.data_shards)
        self.data = {}
        if self.attn_role:
            for j in range(self.r):
                lo = j * b // self.r + self.shard * per
                self.data[j] = (tokens[lo : lo + per], targets[lo : lo + per])
        self.denom = targets.numel()
        dist.barrier()
        t0 = time.perf_counter()
        if self.zp:
            self._run_zp()
        else:
            self._run_ep()
        return self.loss, t0, time.perf_counter()

    def _run_zp(self) -> None:
        tl = self.tl
        streams = [
            _Stream(tl.order(A2E), self.comm),
            _Stream(tl.order(E2A), self.comm),
        ]
        for st in streams:
            st.start()
        try:
            for name in tl.order(ATTN if self.attn_role else EXP):
                self.compute(name)
        finally:
            for st in streams:
                st.join(WAIT_S)
        for st in streams:
            if st.error is not None:
                raise st.error

    def _run_ep(self) -> None:
        order = self.tl.order("all-to-all")
        L = self.cfg.model.layers
        seq = [f"A{i}" for i in range(L)] + ["H"] + [f"Ab{i}" for i in reversed(range(L))]
        fwd = iter(order)
        for stage in seq:  # attention-side stages with the exchanges and expert stages between them
            if stage.startswith("A") and not stage.startswith("Ab"):
                li = int(stage[1:])
                self.compute(f"A{li}.0", ep_task=f"A{li}.{self.device}")
                self.comm(f"D{li}.0", ep_task=next(fwd))
                self.compute(f"E{li}.0", ep_task=f"E{li}.{self.device}")
                self.comm(f"C{li}.0", ep_task=next(fwd))
            elif stage == "H":
                self.compute("H0", ep_task=f"H.{self.device}")
            else:
                li = int(stage[2:])
                self.comm(f"Cb{li}.0", ep_task=next(fwd))
                self.compute(f"Eb{li}.0", ep_task=f"Eb{li}.{self.device}")
                self.comm(f"Db{li}.0", ep_task=next(fwd))
                self.compute(f"Ab{li}.0", ep_task=f"Ab{li}.{self.device}")

    # --- compute tasks ------------------------------------------------------------------------------
    def compute(self, name: str, ep_task: str | None = None) -> None:
        kind, li, j = _parse(name)
        L = self.cfg.model.layers
        if kind == "A" and li > 0:
            self.wait(f"C{li - 1}.{j}")
        elif kind == "H":
            self.wait(f"C{L - 1}.{j}")
        elif kind == "Ab":
            self.wait(f"Db{li}.{j}")
        elif kind == "E":
            self.wait(f"D{li}.{j}")
        elif kind == "Eb":
            self.wait(f"Cb{li}.{j}")
        t0 = time.perf_counter()
        if kind in ("E", "Eb") and not self.local_experts:
            pass  # an EP rank without experts (not used: experts split evenly)
        else:
            getattr(self, f"_{kind.lower()}")(li, j)
        self.dilate(t0, ep_task or name)
        follow = {"A": f"D{li}.{j}", "E": f"C{li}.{j}", "Eb": f"Db{li}.{j}", "H": f"Cb{L - 1}.{j}"}
        if kind == "Ab":
            if li > 0:
                self.event(f"Cb{li - 1}.{j}").set()
        else:
            self.event(follow[kind]).set()

    def _a(self, li: int, j: int) -> None:
        st, model = self.st, self.model
        if li == 0:
            r = model.embed(self.data[j][0])
        else:
            leaves = self._leaves(li, j)
            r = model.combine(*leaves)
        a, x, w, idx = model.attention_part(li, r)
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)
        token_of = torch.arange(x.shape[0]).repeat_interleave(self.cfg.model.top_k)
        rows = x.index_select(0, token_of[order])
        counts = torch.bincount(flat, minlength=self.cfg.model.experts)
        st[("out", li, j)] = (a, w, rows)
        st[("order", li, j)] = (order, idx.shape)
        st[("counts", li, j)] = counts

    def _leaves(self, li: int, j: int):
        """Segment li's inputs as fresh leaves: layer li-1's residual and weights, and the expert outputs."""
        a, w, _ = self.st[("out", li - 1, j)]
        y = self.st[("y", li - 1, j)]
        leaves = (a.detach().requires_grad_(), w.detach().requires_grad_(), y.requires_grad_())
        self.st[("leaves", li, j)] = leaves
        return leaves

    def _h(self, li: int, j: int) -> None:
        L = self.cfg.model.layers
        leaves = self._leaves(L, j)
        loss = self.model.head_loss(self.model.combine(*leaves), self.data[j][1], self.denom)
        loss.backward()
        self.loss += loss.item()
        self._grads_of_leaves(L, j)

    def _grads_of_leaves(self, li: int, j: int) -> None:
        a, w, y = self.st[("leaves", li, j)]
        order, _ = self.st[("order", li - 1, j)]
        self.st[("g_out", li - 1, j)] = (a.grad, w.grad)
        self.st[("gy_rows", li - 1, j)] = y.grad.reshape(-1, y.shape[-1]).index_select(0, order)

    def _ab(self, li: int, j: int) -> None:
        a, w, rows = self.st[("out", li, j)]
        ga, gw = self.st[("g_out", li, j)]
        torch.autograd.backward([a, w, rows], [ga, gw, self.st[("gx_rows", li, j)]])
        if li > 0:
            self._grads_of_leaves(li, j)

    def _e(self, li: int, j: int) -> None:
        x = self.st[("x_recv", li, j)].requires_grad_()
        counts = self.st[("recv_counts", li, j)]  # (world, local experts)
        starts = torch.cumsum(counts.sum(1), 0) - counts.sum(1)
        pieces, perm = [], []
        for k, e in enumerate(self.local_experts):
            idx = [
                torch.arange(int(starts[s] + counts[s, :k].sum()), int(starts[s] + counts[s, : k + 1].sum()))
                for s in range(self.world)
            ]
            idx = torch.cat(idx)
            if idx.numel():
                pieces.append(self.model.layers[li].experts[e](x.index_select(0, idx)))
                perm.append(idx)
        if perm:
            perm_t = torch.cat(perm)
            y = torch.cat(pieces).index_select(0, torch.argsort(perm_t))
        else:
            y = x * 0
        self.st[("y_send", li, j)] = (x, y)

    def _eb(self, li: int, j: int) -> None:
        x, y = self.st[("y_send", li, j)]
        if y.requires_grad:
            torch.autograd.backward(y, self.st[("gy_recv", li, j)])
        self.st[("gx_send", li, j)] = x.grad if x.grad is not None else torch.zeros_like(x)

    # --- exchanges -----------------------------------------------------------------------------------
    def comm(self, name: str, ep_task: str | None = None) -> None:
        kind, li, j = _parse(name)
        h = self.cfg.model.hidden
        sending = (kind in ("D", "Cb") and self.attn_role) or (kind in ("C", "Db") and self.exp_role)
        if self.zp and sending:
            self.wait(name)  # our part of the exchange is computed
        group = self.a2e if kind in ("D", "Cb") else self.e2a
        if kind == "D":
            self._count_exchange(li, j, group)
        else:
            self.wait(f"splits{li}.{j}")  # this rank's dispatch of (li, j) fixed the split sizes
        t0 = time.perf_counter()
        send_split, recv_split = self.st[("splits", li, j)]
        if kind in ("C", "Db"):
            send_split, recv_split = recv_split, send_split
        if kind == "D":
            data = self.st[("out", li, j)][2].detach() if self.attn_role else torch.zeros(0, h)
        elif kind == "Cb":
            data = self.st[("gy_rows", li, j)] if self.attn_role else torch.zeros(0, h)
        elif kind == "C":
            data = self.st[("y_send", li, j)][1].detach() if self.exp_role else torch.zeros(0, h)
        else:
            data = self.st[("gx_send", li, j)] if self.exp_role else torch.zeros(0, h)
        out = torch.empty(sum(recv_split), h)
        dist.all_to_all_single(out, data.contiguous(), recv_split, send_split, group=group)
        if kind == "D":
            self.st[("x_recv", li, j)] = out
        elif kind == "Cb":
            self.st[("gy_recv", li, j)] = out
        elif kind == "C" and self.attn_role:
            order, shape = self.st[("order", li, j)]
            y = torch.empty_like(out).index_copy_(0, order, out)
            self.st[("y", li, j)] = y.view(shape[0], shape[1], h).detach()
        elif kind == "Db":
            self.st[("gx_rows", li, j)] = out
        self.dilate(t0, ep_task or name)
        self.event(name).set()

    def _count_exchange(self, li: int, j: int, group) -> None:
        """Tell every rank how many rows of each of its experts are coming (split sizes of the data)."""
        pe = self.per_rank
        send = torch.zeros(self.world, pe, dtype=torch.int64)
        if self.attn_role:
            counts = self.st[("counts", li, j)]
            for e, c in enumerate(counts.tolist()):
                send[self.owner[e], e % pe] = c
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv.view(-1), send.view(-1), group=group)
        self.st[("recv_counts", li, j)] = recv
        self.st[("splits", li, j)] = (send.sum(1).tolist(), recv.sum(1).tolist())
        self.event(f"splits{li}.{j}").set()

    # --- after the iteration -------------------------------------------------------------------------
    def sync_gradients(self) -> None:
        """Sum attention gradients over the ranks that hold attention replicas."""
        if not self.attn_role:
            return
        for name, p in self.owned_params().items():
            if ".experts." in name:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, group=self.attn_group)


def _parse(name: str) -> tuple[str, int, int]:
    """'Ab1.3' -> ('Ab', 1, 3); 'H2' -> ('H', -1, 2)."""
    head, _, j = name.partition(".")
    if head.startswith("H"):
        return "H", -1, int(head[1:])
    kind = head.rstrip("0123456789")
    return kind, int(head[len(kind) :]), int(j)


def worker_main(rank: int, cfg: RuntimeConfig, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=cfg.world, init_method=init_method)
    try:
        w = Worker(cfg, rank)
        params = w.owned_params()
        opt = torch.optim.Adam(params.values(), lr=cfg.lr)
        steps = []
        first_grads = {}
        for step in range(cfg.steps):
            tokens, targets = synthetic_batch(cfg.model, cfg.batch, cfg.seq, step, cfg.seed)
            opt.zero_grad(set_to_none=True)
            loss, t0, t1 = w.iteration(tokens, targets)
            t_sync = time.perf_counter()
            w.sync_gradients()
            if step == 0:
                first_grads = {n: p.grad.clone() for n, p in params.items() if p.grad is not None}
            opt.step()
            t_end = time.perf_counter()
            steps.append({"loss_share": loss, "start": t0, "end": t1, "sync_s": t_end - t_sync})
        torch.save({"rank": rank, "steps": steps, "grads": first_grads}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run(cfg: RuntimeConfig) -> dict:
    """Spawn the ranks, train `cfg.steps` steps; per step the loss and the iteration time (first rank's
    start to the last rank's end of the schedule), and the first step's gradients of every parameter."""
    import torch.multiprocessing as mp

    cfg.validate()
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{Path(tmp) / 'init'}"
        mp.start_processes(
            worker_main, args=(cfg, init, tmp), nprocs=cfg.world, start_method="spawn", join=True
        )
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(cfg.world)]
    return merge(ranks, cfg)


def merge(ranks: list[dict], cfg: RuntimeConfig) -> dict:
    steps = []
    for s in range(cfg.steps):
        rows = [r["steps"][s] for r in ranks]
        steps.append(
            {
                "loss": sum(x["loss_share"] for x in rows),
                "iteration_s": max(x["end"] for x in rows) - min(x["start"] for x in rows),
                "sync_and_step_s": max(x["sync_s"] for x in rows),
            }
        )
    grads: dict[str, torch.Tensor] = {}
    for r in ranks:
        for n, g in r["grads"].items():
            grads.setdefault(n, g)  # attention replicas agree after the all-reduce; rank order wins
    return {
        "steps": steps,
        "grads": grads,
        "predicted_s": cfg.timeline().makespan / 1e3,
        "config": _cfg_dict(cfg),
    }


def _cfg_dict(cfg: RuntimeConfig) -> dict:
    d = asdict(cfg)
    return json.loads(json.dumps(d, default=str))


def reference(cfg: RuntimeConfig) -> dict:
    """The same model, data and optimiser in one process: losses per step, first step's gradients."""
    torch.manual_seed(cfg.seed)
    model = MoEModel(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses, grads = [], {}
    for step in range(cfg.steps):
        tokens, targets = synthetic_batch(cfg.model, cfg.batch, cfg.seq, step, cfg.seed)
        opt.zero_grad(set_to_none=True)
        loss = model(tokens, targets)
        loss.backward()
        if step == 0:
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        opt.step()
        losses.append(loss.item())
    return {"losses": losses, "grads": grads}


def compare(result: dict, ref: dict) -> dict:
    """Largest gradient difference relative to that tensor's largest reference entry; loss differences."""
    worst, worst_name = 0.0, ""
    missing = sorted(set(ref["grads"]) - set(result["grads"]))
    for n, g in ref["grads"].items():
        if n in result["grads"]:
            rel = float((result["grads"][n] - g).abs().max() / g.abs().max().clamp_min(1e-12))
            if rel > worst:
                worst, worst_name = rel, n
    losses = [s["loss"] for s in result["steps"]]
    return {
        "grad_max_rel_diff": worst,
        "grad_worst_param": worst_name,
        "grads_missing": missing,
        "loss_max_abs_diff": max(abs(a - b) for a, b in zip(losses, ref["losses"], strict=True)),
        "losses": losses,
        "reference_losses": ref["losses"],
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point under torchrun (reads RANK / WORLD_SIZE / MASTER_ADDR from the environment)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--schedule", default="zp")
    p.add_argument("--attention-ranks", type=int, default=2)
    p.add_argument("--micro-batches", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default="hetermoe_runtime")
    a = p.parse_args(argv)
    world = int(os.environ["WORLD_SIZE"])
    cfg = RuntimeConfig(
        a.schedule, a.attention_ranks, world - a.attention_ranks, a.micro_batches, steps=a.steps
    )
    cfg.validate()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    worker_main(int(os.environ["RANK"]), cfg, "env://", a.out)


if __name__ == "__main__":
    main()

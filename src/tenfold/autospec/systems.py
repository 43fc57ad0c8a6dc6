"""Four learning-augmented systems as small seeded simulators, each with a strong heuristic whose
decisions are logged (the data specifications are generated from) and imitated by a network.

Every simulator returns a `Dataset`: inputs X (n, d), outputs y (n,), and the trace each row comes from
(generation and evaluation data are split by trace, never by sample, so no time series leaks).

- `abr`: adaptive bitrate streaming over generated throughput traces. Classification: the bitrate level
  (6 levels) of the next chunk, from throughput history and buffer; heuristic: buffer-aware rate-based
  (highest level under a buffer-dependent share of the harmonic-mean throughput).
- `cc`: congestion control on one bottleneck queue with varying capacity. Regression: the log change
  of the sending rate, from RTT inflation, delivery/sending ratio, loss and RTT trend; heuristic:
  delay-based AIMD in the style of Vegas/BBR.
- `throughput`: throughput prediction. Regression: the next throughput sample from the last five;
  the target is the trace's real next sample.
- `scheduler`: job scheduling. Classification: which of 4 queued jobs runs next, from their remaining
  sizes and waiting times; heuristic: shortest remaining time with aging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tenfold.core.errors import TenfoldError

BITRATES = np.array([0.3, 0.75, 1.2, 1.85, 2.85, 4.3])  # Mbps, the usual ABR ladder


@dataclass
class Dataset:
    system: str
    X: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) int64 (classification) or float32 (regression)
    trace: np.ndarray  # (n,) trace id of each row
    features: list[str]
    task: str  # "classification" or "regression"
    classes: int = 0  # for classification

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> Dataset:
        return Dataset(
            self.system, self.X[mask], self.y[mask], self.trace[mask], self.features, self.task, self.classes
        )

    def split_by_trace(self, eval_share: float = 0.3, seed: int = 0) -> tuple[Dataset, Dataset]:
        """(generation, evaluation) with whole traces on one side."""
        traces = np.unique(self.trace)
        rng = np.random.default_rng(seed)
        held = set(
            rng.choice(traces, size=max(1, int(round(len(traces) * eval_share))), replace=False).tolist()
        )
        mask = np.array([t in held for t in self.trace])
        return self.subset(~mask), self.subset(mask)


def throughput_trace(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mbps per step: a Markov chain over regimes (poor / mid / good network) with noise and rare dips."""
    levels = np.array([0.4, 1.2, 2.5, 4.5])
    state = rng.integers(len(levels))
    out = np.empty(n)
    for i in range(n):
        if rng.random() < 0.08:
            state = int(np.clip(state + rng.choice([-1, 1]), 0, len(levels) - 1))
        dip = 0.3 if rng.random() < 0.03 else 1.0
        out[i] = max(0.05, levels[state] * dip * rng.lognormal(0.0, 0.25))
    return out


def _abr(rng: np.random.Generator, traces: int, steps: int) -> Dataset:
    rows, ys, tids = [], [], []
    for t in range(traces):
        thr = throughput_trace(rng, steps + 3)
        buffer, last = 8.0, 0
        for i in range(3, steps + 3):
            hist = thr[i - 3 : i]
            hm = 3.0 / np.sum(1.0 / hist)
            share = 0.6 if buffer < 8 else (0.9 if buffer < 16 else 1.2)
            level = int(np.searchsorted(BITRATES, share * hm, side="right") - 1)
            level = int(np.clip(level, 0, len(BITRATES) - 1))
            if buffer < 5.0:  # about to stall: lowest level
                level = 0
            rows.append([hist[-1], hm, buffer, float(last)])
            ys.append(level)
            tids.append(t)
            download = BITRATES[level] * 4.0 / thr[i]  # 4-second chunks
            buffer = float(np.clip(buffer - download, 0.0, 30.0) + 4.0)
            buffer = min(buffer, 30.0)
            last = level
    return Dataset(
        "abr",
        np.array(rows, np.float32),
        np.array(ys),
        np.array(tids),
        ["throughput_last", "throughput_hm3", "buffer_s", "last_level"],
        "classification",
        len(BITRATES),
    )


def _cc(rng: np.random.Generator, traces: int, steps: int) -> Dataset:
    rows, ys, tids = [], [], []
    for t in range(traces):
        cap = throughput_trace(rng, steps) * 10.0  # Mbps at the bottleneck
        rate, queue, base_rtt, prev_rtt = cap[0] * rng.uniform(0.3, 1.5), 0.0, 40.0, 40.0
        buf = 8.0  # Mb of buffer
        for i in range(steps):
            queue = max(0.0, queue + (rate - cap[i]) * 0.1)
            loss = max(0.0, queue - buf) / max(rate * 0.1, 1e-6)
            queue = min(queue, buf)
            rtt = base_rtt + queue / max(cap[i], 1e-3) * 1000 * 0.1
            delivery = min(rate, cap[i])
            x = [rtt / base_rtt, delivery / rate, min(loss, 1.0), (rtt - prev_rtt) / base_rtt]
            # delay-based AIMD: back off with queueing delay or loss, probe up when the path is clear
            if loss > 0.01:
                change = -0.5 * min(1.0, loss * 5 + 0.3)
            elif x[0] > 1.5:
                change = -0.3 * min(1.0, (x[0] - 1.5))
            elif x[1] > 0.95 and x[0] < 1.1:
                change = 0.25
            else:
                change = 0.05 - 0.2 * max(0.0, x[3])
            change = float(np.clip(change + rng.normal(0, 0.01), -0.5, 0.5))
            rows.append(x)
            ys.append(change)
            tids.append(t)
            rate = float(np.clip(rate * np.exp(change), 0.1, 500.0))
            prev_rtt = rtt
    return Dataset(
        "cc",
        np.array(rows, np.float32),
        np.array(ys, np.float32),
        np.array(tids),
        ["rtt_ratio", "delivery_ratio", "loss_rate", "rtt_gradient"],
        "regression",
    )


def _throughput(rng: np.random.Generator, traces: int, steps: int) -> Dataset:
    rows, ys, tids = [], [], []
    for t in range(traces):
        thr = throughput_trace(rng, steps + 5)
        for i in range(5, steps + 5):
            rows.append(thr[i - 5 : i].tolist())
            ys.append(thr[i])
            tids.append(t)
    return Dataset(
        "throughput",
        np.array(rows, np.float32),
        np.array(ys, np.float32),
        np.array(tids),
        [f"throughput_t-{k}" for k in range(5, 0, -1)],
        "regression",
    )


def _scheduler(rng: np.random.Generator, traces: int, steps: int) -> Dataset:
    rows, ys, tids = [], [], []
    for t in range(traces):
        jobs = [[rng.exponential(5.0) + 0.2, 0.0] for _ in range(4)]
        for _ in range(steps):
            score = [size - 0.15 * wait for size, wait in jobs]  # shortest remaining time, with aging
            pick = int(np.argmin(score))
            rows.append([v for job in jobs for v in job])
            ys.append(pick)
            tids.append(t)
            jobs[pick][0] -= 1.0
            for k, job in enumerate(jobs):
                if k != pick:
                    job[1] += 1.0
            if jobs[pick][0] <= 0:
                jobs[pick] = [rng.exponential(5.0) + 0.2, 0.0]
    feats = [f"job{k}_{f}" for k in range(4) for f in ("remaining", "wait")]
    return Dataset(
        "scheduler", np.array(rows, np.float32), np.array(ys), np.array(tids), feats, "classification", 4
    )


SYSTEMS = {"abr": _abr, "cc": _cc, "throughput": _throughput, "scheduler": _scheduler}


def simulate(system: str, traces: int = 60, steps: int = 100, seed: int = 0) -> Dataset:
    if system not in SYSTEMS:
        raise TenfoldError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    if traces < 2 or steps < 1:
        raise TenfoldError(f"need at least 2 traces and 1 step, got traces={traces} steps={steps}")
    return SYSTEMS[system](np.random.default_rng([seed, list(SYSTEMS).index(system)]), traces, steps)

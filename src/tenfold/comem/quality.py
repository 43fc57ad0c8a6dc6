"""CoMem's quality on held-out episodes: each memory arm's success rate with its 95% interval.

Every arm plays the same seeded Vault episodes with the same frozen agent and schedule (R, k):

    full    the whole history every step (no memory model)
    none    no memory: a memory that keeps nothing, so the agent sees only the raw turns since the
            last cut (truncated history)
    oracle  a scripted memory that lists every fact it has seen (the agent's ceiling under CoMem)
    sft     CoMem with the SFT memory model (comem-memory)
    rl      CoMem with the memory model trained by reward (comem-memory-rl)
    sync    the RL memory model, summarising synchronously at the same steps

Quality needs no concurrency, so it runs apart from the latency cells: all of an arm's episodes at
once, in-process, batched. CoMem adopts each summary exactly k steps after starting it
(`PolicyConfig.adopt_at_k`), so what the agent sees does not depend on how fast the memory model ran
on this machine. Success rates come with Wilson 95% intervals; RL against SFT (and against full
context) is compared on the same episodes with an exact McNemar test.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tenfold.comem.runtime import NO_SUMMARY, BackendMemory, PolicyConfig, run_episode
from tenfold.core.benchkit import mcnemar_p, save_figure, wilson_interval
from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar
from tenfold.envs.vault import AGENT_SYSTEM, TASK, VaultConfig, VaultGame

ARMS = ("full", "none", "oracle", "sft", "rl", "sync")
FACT = re.compile(r"door \w+ \d+|fork \d+ (?:left|right)")


class ListingMemory:
    """The scripted oracle: every fact stated in its view (previous summary and new turns), once each."""

    async def summarize(self, messages: list[dict]) -> str:
        facts = dict.fromkeys(FACT.findall(messages[-1]["content"]))
        return "; ".join(facts) + "." if facts else NO_SUMMARY


class NullMemory:
    """Keeps nothing: under the CoMem schedule the agent sees the raw turns since the last cut only."""

    async def summarize(self, messages: list[dict]) -> str:
        return NO_SUMMARY


@dataclass
class QualityConfig:
    steps: list[int] = field(default_factory=lambda: [40, 80])  # episode lengths (the issue: 40+)
    episodes: int = 64  # per arm and length
    interval: int = 4  # R
    k: int = 4  # the latency benchmark's main arms' bound
    doors: int = 2
    forks: int = 1
    seed: int = 40_000  # held-out: SFT and RL train on their own generators' seeds, probes use 10,000-30,000
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    probe_games: int = 16  # memory skill probe (one summary from a perfect previous one) per model
    agent: str | None = None  # checkpoint dirs; None: the shipped models
    sft_memory: str | None = None
    rl_memory: str | None = None

    @classmethod
    def quick(cls) -> QualityConfig:
        return cls(steps=[40])

    def validate(self) -> QualityConfig:
        if unknown := [a for a in self.arms if a not in ARMS]:
            raise TenfoldError(f"unknown arms {unknown}; choose from {ARMS}")
        if self.episodes < 1 or self.probe_games < 1 or not self.steps:
            raise TenfoldError("episodes, probe_games and steps must be given and >= 1")
        for s in self.steps:
            VaultConfig(s, self.doors, self.forks).validate()
        return self


def _models(cfg: QualityConfig) -> dict[str, str]:
    from tenfold.comem.memory_rl import cached_rl_memory
    from tenfold.comem.train import recipe, trained_model

    need = set(cfg.arms)
    out = {"agent": cfg.agent or str(trained_model(recipe("agent")))}
    if "sft" in need:
        out["sft"] = cfg.sft_memory or str(trained_model(recipe("memory")))
    if need & {"rl", "sync"}:
        out["rl"] = cfg.rl_memory or str(cached_rl_memory().path())
    return out


def _recall(results, games) -> tuple[int, int]:
    """(facts stated, facts needed) over every summary the agent adopted."""
    from tenfold.comem.train import fact_recall

    hit = total = 0
    for r, g in zip(results, games, strict=True):
        for s, cut in zip(r.summaries, r.summary_cuts, strict=True):
            h, n = fact_recall(s, g, cut)
            hit, total = hit + h, total + n
    return hit, total


async def play_arm(agent, memory, arm: str, steps: int, cfg: QualityConfig) -> tuple[dict, list[bool]]:
    """One arm's `cfg.episodes` held-out episodes of `steps` rooms, all at once: (its row, per-episode
    success). `agent` is a `Backend`, `memory` a `MemoryModel` (None for `full`)."""
    policy = {"full": "full", "sync": "sync"}.get(arm, "comem")
    pcfg = PolicyConfig(policy, cfg.interval, cfg.k, adopt_at_k=True)
    games = [VaultGame(VaultConfig(steps, cfg.doors, cfg.forks, cfg.seed + i)) for i in range(cfg.episodes)]
    t0 = time.perf_counter()
    res = await asyncio.gather(*(run_episode(g, agent, memory, pcfg, AGENT_SYSTEM, TASK) for g in games))
    wins = [r.success for r in res]
    lo, hi = wilson_interval(sum(wins), len(wins))
    hit, total = _recall(res, games)
    row = {
        "arm": arm, "steps": steps, "episodes": len(wins), "successes": sum(wins),
        "success": sum(wins) / len(wins), "ci_low": lo, "ci_high": hi,
        "score": sum(r.score for r in res) / len(res),
        "fact_recall": hit / total if total else None, "facts": total,
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    return row, wins


def arm_job(arm: str, steps: int, cfg: QualityConfig, paths: dict) -> tuple[dict, list[bool], dict | None]:
    """One (arm, length) cell in this process, with its own in-process models: (row, per-episode
    success, the memory model's skill probe for the sft and rl arms at the first length, else None)."""
    from tenfold.comem.train import memory_skill
    from tenfold.core.backends import LocalBackend

    async def main():
        model = {"sft": "sft", "rl": "rl", "sync": "rl"}.get(arm)
        agent = LocalBackend(paths["agent"], prefix_cache_bytes=1 << 30)
        backend = LocalBackend(paths[model], prefix_cache_bytes=1 << 28) if model else None
        memory = {"none": NullMemory(), "oracle": ListingMemory()}.get(arm) or (
            BackendMemory(backend) if backend else None
        )
        try:
            row, wins = await play_arm(agent, memory, arm, steps, cfg)
            probe = None
            if arm in ("sft", "rl") and steps == cfg.steps[0]:
                probe = await memory_skill(BackendMemory(backend), cfg.probe_games)
            return row, wins, probe
        finally:
            await agent.aclose()
            if backend is not None:
                await backend.aclose()

    return asyncio.run(main())


def run_quality(cfg: QualityConfig, quiet: bool = False, workers: int | None = None) -> dict:
    """Every arm on every length, the cells side by side in `workers` processes of one thread each
    (None: one per core); returns {"setup", "rows", "paired", "probes", "curve"}."""
    from tenfold.core.benchkit import map_jobs

    cfg.validate()
    paths = _models(cfg)
    t0 = time.perf_counter()
    jobs = [(arm, steps, cfg, paths) for steps in cfg.steps for arm in cfg.arms]
    with progress_bar("comem quality", total=len(jobs), quiet=quiet) as bar:
        done = map_jobs(
            arm_job, jobs, workers, on_done=lambda i, _: bar.advance(1, cell=f"{jobs[i][0]}@{jobs[i][1]}")
        )
    rows = [row for row, _, _ in done]
    outcomes = {(job[0], job[1]): wins for job, (_, wins, _) in zip(jobs, done, strict=True)}
    probes = {job[0]: probe for job, (_, _, probe) in zip(jobs, done, strict=True) if probe is not None}
    return {
        "setup": {
            **asdict(cfg),
            **{f"model_{k}": v for k, v in paths.items()},
            "seconds": time.perf_counter() - t0,
        },
        "rows": rows,
        "paired": _paired(outcomes, cfg),
        "probes": probes,
        "curve": reward_curve(paths.get("rl")),
    }


def _paired(outcomes: dict, cfg: QualityConfig) -> list[dict]:
    """RL against SFT and against full context on the same episodes (pooled over lengths): episodes
    won by one arm alone, and the exact McNemar p-values (two-sided; one-sided for RL above)."""
    out = []
    for other in ("sft", "full"):
        if "rl" not in cfg.arms or other not in cfg.arms:
            continue
        rl = [w for s in cfg.steps for w in outcomes[("rl", s)]]
        ot = [w for s in cfg.steps for w in outcomes[(other, s)]]
        only_rl = sum(a and not b for a, b in zip(rl, ot, strict=True))
        only_ot = sum(b and not a for a, b in zip(rl, ot, strict=True))
        out.append({
            "a": "rl", "b": other, "episodes": len(rl), "only_a": only_rl, "only_b": only_ot,
            "p_two_sided": mcnemar_p(only_rl, only_ot), "p_a_above": mcnemar_p(only_rl, only_ot, one_sided=True),
        })  # fmt: skip
    return out


def reward_curve(rl_checkpoint: str | None) -> list[dict]:
    """The RL memory model's training curve (metrics.jsonl beside its checkpoint), [] when absent."""
    if rl_checkpoint is None:
        return []
    path = Path(rl_checkpoint).parent / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        m = json.loads(line)
        point = {"step": m["step"], "reward": m.get("reward_mean"), "kl": m.get("kl")}
        if "eval" in m:
            point |= {k: v for k, v in m["eval"].items() if k.startswith("heldout")}
        out.append(point)
    return out


def pooled(result: dict, arm: str) -> dict:
    """An arm's success over every length: successes, episodes, rate and Wilson interval."""
    rows = [r for r in result["rows"] if r["arm"] == arm]
    wins, n = sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows)
    lo, hi = wilson_interval(wins, n)
    return {
        "successes": wins,
        "episodes": n,
        "success": wins / n if n else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
    }


def markdown_table(result: dict) -> str:
    lines = [
        "| steps | arm | success | 95% interval | critical actions right | facts stated in adopted summaries |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        recall = f"{r['fact_recall']:.3f} of {r['facts']}" if r["fact_recall"] is not None else "-"
        lines.append(
            f"| {r['steps']} | {r['arm']} | {r['successes']}/{r['episodes']} = {r['success']:.2f} | "
            f"{r['ci_low']:.2f}-{r['ci_high']:.2f} | {r['score']:.3f} | {recall} |"
        )
    for p in result["paired"]:
        lines.append(
            f"\n{p['a']} vs {p['b']} on the same {p['episodes']} episodes: won by {p['a']} alone "
            f"{p['only_a']}, by {p['b']} alone {p['only_b']}; exact McNemar p = {p['p_two_sided']:.3g} "
            f"(one-sided, {p['a']} above: {p['p_a_above']:.3g})"
        )
    for name, pr in result["probes"].items():
        lines.append(
            f"\nmemory skill probe, {name}: needed facts stated {pr['fact_recall']:.3f} of {pr['facts']}"
        )
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    fig, axes = plt.subplots(1, 2 if curve else 1, figsize=(11 if curve else 6, 4), squeeze=False)
    ax = axes[0][0]
    steps = sorted({r["steps"] for r in result["rows"]})
    arms = [a for a in ARMS if any(r["arm"] == a for r in result["rows"])]
    width = 0.8 / len(steps)
    for j, s in enumerate(steps):
        rs = {r["arm"]: r for r in result["rows"] if r["steps"] == s}
        xs = [i + (j - (len(steps) - 1) / 2) * width for i in range(len(arms))]
        ys = [rs[a]["success"] for a in arms]
        err = [
            [y - rs[a]["ci_low"] for a, y in zip(arms, ys, strict=True)],
            [rs[a]["ci_high"] - y for a, y in zip(arms, ys, strict=True)],
        ]
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=f"{s} steps")
    ax.set_xticks(range(len(arms)), arms)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"success ({result['rows'][0]['episodes']} episodes, 95% interval)")
    ax.set_title("CoMem quality per memory arm")
    ax.legend()
    if curve:
        ax = axes[0][1]
        ax.plot(
            [c["step"] for c in curve],
            [c["reward"] for c in curve],
            lw=1,
            label="train reward (sampled summaries)",
        )
        ev = [c for c in curve if "heldout_reward" in c]
        ax.plot(
            [c["step"] for c in ev], [c["heldout_reward"] for c in ev], "o-", label="held-out reward (greedy)"
        )
        ax.plot(
            [c["step"] for c in ev],
            [c["heldout_recall_adding"] for c in ev],
            "s--",
            label="held-out recall, cuts adding a fact",
        )
        ax.set_xlabel("RL step")
        ax.set_title("memory model trained by reward")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)

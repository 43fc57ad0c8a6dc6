"""`tenfold t2po bench`: the arms side by side from one cold-start agent, same tasks, same seeds.

Per arm and seed, over training: held-out success, valid-action rate and thinking tokens per turn
(evaluated every `eval_every` steps with the arm's own cut, no resampling), and per step the gradient
norm, KL to the start (k3 estimate) and the training rollouts' metrics. A run *collapses* when its eval
success falls below half its running maximum for 3 consecutive evals, or its gradient norm or KL
exceeds 10x its running median (the issue's definition; the KL's running median starts after the
first update). Reported per arm: final success (mean, sd),
collapsed seeds, thinking tokens per turn against GiGPO's, and resampling's cost against 1 + q + q^2.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tenfold.core.benchkit import check_workers, map_jobs, runs_by_arm, save_figure, seed_sd
from tenfold.core.errors import TenfoldError
from tenfold.t2po.arms import ARMS, RunConfig

COLLAPSE_EVALS = 3  # consecutive evals below half the running maximum
COLLAPSE_FACTOR = 10.0  # gradient norm or KL above this multiple of its running median


@dataclass
class BenchConfig:
    """Defaults are the full run: 5 arms x 8 seeds (hours on 2 CPU cores: a GiGPO step that over-thinks
    takes up to ~160 s on one thread). `quick()` fits the issue's 15 minutes on 2 cores: GiGPO against
    T2PO, 3 seeds of 4 steps of 2 tasks x 4 episodes at the collapse setting (lr 1e-3), held-out eval on
    8 games after every step (5 evals, so the 3-consecutive-evals collapse rule can fire), 16 training
    games, and replies capped at 160 bytes instead of 256 (collapsing runs babble to the cap, and those
    steps dominate the time; the cold start's replies: median 63 bytes, 99th percentile 153, 0.9% above
    160, on 352 turns of 16 training games)."""

    arms: tuple[str, ...] = tuple(ARMS)
    seeds: tuple[int, ...] = tuple(range(8))
    run: RunConfig = field(default_factory=RunConfig)
    train_tasks: int = 48
    eval_tasks: int = 24
    eval_samples: int = 1
    workers: int | None = None
    init: str = "base"  # the cold-start agent's start (tenfold.t2po.train.INITS)

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            arms=("gigpo", "t2po"),
            seeds=(0, 1, 2),
            run=RunConfig(steps=4, tasks_per_step=2, eval_every=1, max_new_tokens=160),
            train_tasks=16,
            eval_tasks=8,
        )

    def validate(self) -> BenchConfig:
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise TenfoldError(f"unknown or no arms {bad}; arms are {list(ARMS)}")
        if not self.seeds or self.train_tasks < 1 or self.eval_tasks < 1 or self.eval_samples < 1:
            raise TenfoldError("need at least one seed, one training task, one eval task and one sample")
        check_workers(self.workers)
        self.run.validate()
        return self


def run_one(arm: str, seed: int, cfg: BenchConfig, agent: str) -> dict:
    """One arm, one seed: train from the cold-start agent, evaluating along the way."""
    import torch

    from tenfold.core.models import load_model
    from tenfold.t2po.arms import evaluate_arm, train_arm
    from tenfold.t2po.train import task_pool

    torch.manual_seed(seed)
    model, tok = load_model(agent)
    train, heldout = task_pool(cfg.train_tasks, "train"), task_pool(cfg.eval_tasks, "heldout")

    def evaluate(m):
        return evaluate_arm(m, tok, ARMS[arm], cfg.run, heldout, cfg.eval_samples)

    model.eval()
    with torch.no_grad():
        start = {"step": 0, **evaluate(model)}
    t = time.perf_counter()
    res, gen = train_arm(model, tok, arm, train, cfg.run, seed, evaluate=evaluate)
    seconds = time.perf_counter() - t
    steps = [
        {
            "step": h["step"],
            "grad_norm": h.get("grad_norm", 0.0),
            "kl": h.get("kl", 0.0),
            **{k: v for k, v in h.items() if k.startswith("train_")},
            "seconds": sum(h["seconds"].values()),
        }
        for h in res.history
    ]
    curve = [start] + [{k: v for k, v in e.items() if k != "rollouts"} for e in res.evals]
    return {
        "arm": arm,
        "seed": seed,
        "curve": curve,
        "steps": steps,
        "final": curve[-1]["success"],
        "final_think_tokens": curve[-1]["think_tokens"],
        "collapse": collapse(curve, steps),
        "resampling": gen.stats.as_dict(),
        "seconds": seconds,
        "samples": res.rollouts,
    }


def collapse(curve: list[dict], steps: list[dict]) -> str | None:
    """Why a run collapsed ("success", "grad_norm", "kl") by the issue's rules, or None."""
    best, below = 0.0, 0
    for e in curve:
        best = max(best, e["success"])
        below = below + 1 if best > 0 and e["success"] < best / 2 else 0
        if below >= COLLAPSE_EVALS:
            return "success"
    for key in ("grad_norm", "kl"):
        seen: list[float] = []
        # the first step's KL to the start is measured before any update, so 0 by construction: in a
        # running median it would make the natural early growth of the KL look like a 10x jump
        for s in steps[1:] if key == "kl" else steps:
            v = s[key]
            if len(seen) >= 3 and v > COLLAPSE_FACTOR * max(statistics.median(seen), 1e-8):
                return key
            seen.append(v)
    return None


def summarise(runs: list[dict]) -> dict:
    arms = runs_by_arm(runs)
    out = {}
    for arm, rs in arms.items():
        finals = [r["final"] for r in rs]
        think = [r["final_think_tokens"] for r in rs]
        res = [r["resampling"] for r in rs]
        out[arm] = {
            "seeds": len(rs),
            "final_mean": statistics.mean(finals),
            "final_sd": seed_sd(finals),
            "start_mean": statistics.mean(r["curve"][0]["success"] for r in rs),
            "best_mean": statistics.mean(max(e["success"] for e in r["curve"]) for r in rs),
            "collapsed": sum(r["collapse"] is not None for r in rs),
            "collapse_reasons": [r["collapse"] for r in rs],
            "think_tokens": statistics.mean(think),
            "start_think_tokens": statistics.mean(r["curve"][0]["think_tokens"] for r in rs),
            "valid_rate": statistics.mean(r["curve"][-1]["valid_rate"] for r in rs),
            "train_think_tokens": statistics.mean(
                statistics.mean(s.get("train_think_tokens", 0.0) for s in r["steps"]) for r in rs
            ),
            "q": statistics.mean(x["q"] for x in res),
            "generations_per_eligible": statistics.mean(x["measured_per_eligible"] for x in res),
            "expected_per_eligible": statistics.mean(x["expected_per_eligible"] for x in res),
            "step_seconds": statistics.mean(statistics.mean(s["seconds"] for s in r["steps"]) for r in rs),
        }
    base = out.get("gigpo")
    for s in out.values():
        s["think_ratio_to_gigpo"] = (
            s["think_tokens"] / base["think_tokens"] if base and base["think_tokens"] else None
        )
        s["start_think_ratio_to_gigpo"] = (
            s["start_think_tokens"] / base["start_think_tokens"]
            if base and base["start_think_tokens"]
            else None
        )
    return out


def bench(cfg: BenchConfig, agent: str | Path, quiet: bool = False) -> dict:
    """Every (arm, seed) run, side by side in `cfg.workers` processes; results and summary."""
    from tenfold.t2po.train import build_games, task_pool

    cfg = cfg.validate()
    build_games(task_pool(cfg.train_tasks, "train") + task_pool(cfg.eval_tasks, "heldout"), cfg.workers)
    jobs = [(arm, seed, cfg, str(agent)) for seed in cfg.seeds for arm in cfg.arms]
    t = time.perf_counter()
    runs = map_jobs(run_one, jobs, cfg.workers)
    return {
        "config": asdict(cfg),
        "agent": str(agent),
        "runs": runs,
        "summary": summarise(runs),
        "seconds": time.perf_counter() - t,
    }


def markdown(result: dict) -> str:
    lines = [
        "| arm | seeds | success start → final (sd) | best | collapsed | think tokens / turn | vs GiGPO | valid | generations / eligible turn (1+q+q²) | s / step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, s in result["summary"].items():
        ratio = s["think_ratio_to_gigpo"]
        lines.append(
            f"| {arm} | {s['seeds']} | {s['start_mean']:.2f} → {s['final_mean']:.2f} ({s['final_sd']:.2f}) "
            f"| {s['best_mean']:.2f} | {s['collapsed']} | {s['think_tokens']:.1f} "
            f"| {'' if ratio is None else f'{ratio:.2f}'} | {s['valid_rate']:.2f} "
            f"| {s['generations_per_eligible']:.2f} ({s['expected_per_eligible']:.2f}) | {s['step_seconds']:.1f} |"
        )
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [  # (title, y label, per-eval or per-step key, y scale)
        ("success (one line per seed)", "held-out success", "success", "linear"),
        ("valid actions", "held-out valid-action rate", "valid_rate", "linear"),
        ("thinking length", "thinking tokens / turn", "think_tokens", "linear"),
        ("gradient norm", "gradient norm", "grad_norm", "log"),
        ("KL to the start (k3)", "KL", "kl", "symlog"),  # symlog: KL is exactly 0 before any update
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8))
    colours = {}
    for r in result["runs"]:
        c = colours.setdefault(r["arm"], f"C{len(colours)}")
        for ax, (_, _, key, _) in zip(axes, panels, strict=True):
            points = r["curve"] if key in r["curve"][0] else r["steps"]
            ax.plot(
                [p["step"] for p in points], [p.get(key, float("nan")) for p in points], color=c, alpha=0.6
            )
    for ax, (title, ylabel, _, scale) in zip(axes, panels, strict=True):
        ax.set(xlabel="RL step", ylabel=ylabel, title=title)
        ax.set_yscale(scale, **({"linthresh": 1e-3} if scale == "symlog" else {}))
    handles = [plt.Line2D([], [], color=c) for c in colours.values()]  # one legend entry per arm
    axes[0].legend(handles, list(colours), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)

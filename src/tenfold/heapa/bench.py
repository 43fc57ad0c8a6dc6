"""`tenfold heapa bench`: prompt-selection arms at an equal rollout budget, same seeds, same warm policy.

Arms: uniform; DAPO filtering (uniform + dynamic sampling, every generated rollout counted);
prioritized (p proportional to (1 - s + eps)^(1/T)); HeaPA heap only; HeaPA + augmentation; HeaPA +
augmentation + PathAgg; and, beyond the paper, the heap split at pass rate 0.5 instead of the median.
Each arm trains a copy of the warm-started tiny policy on the same seed problems (L1-L6) until the
rollout budget is spent, evaluating held-out accuracy per level along the way (avg@2 at temperature
1.0, top-p 0.7). Reported: final accuracy (mean and spread over seeds), rollouts to reach uniform's final
accuracy, wall-clock per step and the share of it spent in the prompt source (pool + validator).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tenfold.core.benchkit import check_workers, map_jobs, save_figure
from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar
from tenfold.envs.arith import (
    ANSWER_FORMATS,
    LEVELS,
    sample_problems,
)
from tenfold.heapa.arms import ARMS, evaluate_policy, make_source, train_arm
from tenfold.heapa.sources import HeaPASource


@dataclass
class BenchConfig:
    """Defaults are the full sweep: 7 arms x 3 seeds of about 4.5 minutes each on one CPU core with
    worked answers; `quick()` is the reproduction's few-minute run of uniform against full HeaPA."""

    arms: tuple[str, ...] = ARMS
    seeds: tuple[int, ...] = (0, 1, 2)
    problems: int = 120  # seed prompts, levels in turn (the cold first pass takes problems / P steps)
    budget: int = 12288  # rollouts per arm and seed (uniform levels off after about 4,000)
    group_size: int = 8
    prompts_per_step: int = 16  # P; 32 gained about as much per rollout
    lr: float = 1e-4  # 3e-4 gained about as much; see docs/heapa.md for what lower and higher did
    eval_every: int = 8
    eval_n: int = 40  # held-out problems per level
    eval_samples: int = 2  # avg@2 at temperature 1.0, top-p 0.7 (the paper: avg@16, same sampling)
    pool_size: int = 30000
    split_at: float | None = None  # the HeaPA arms' boundary (None: the median, as the paper)
    answers: str = "worked"  # the policy's answer format: "worked" steps or the "bare" number
    workers: int | None = None  # runs side by side, one process and one CPU thread each (None: one per core)

    @classmethod
    def quick(cls) -> BenchConfig:
        """Uniform against full HeaPA, 3 seeds, 24 steps each (about 6 minutes on one core)."""
        return cls(
            arms=("uniform", "heap+aug+path"),
            problems=120,
            budget=3072,
            prompts_per_step=16,
            eval_every=4,
            eval_n=30,
        )

    def validate(self) -> BenchConfig:
        bad = [a for a in self.arms if a not in ARMS]
        if bad:
            raise TenfoldError(f"unknown arms {bad}; arms are {ARMS}")
        if self.answers not in ANSWER_FORMATS:
            raise TenfoldError(f"answers must be one of {ANSWER_FORMATS}, got {self.answers!r}")
        check_workers(self.workers)
        if len(self.seeds) < 1 or self.budget < self.group_size * self.prompts_per_step:
            raise TenfoldError("need at least one seed and a budget of at least one step")
        return self


def run_arm(arm: str, seed: int, cfg: BenchConfig, warm_dir: Path) -> dict:
    import torch

    from tenfold.core.models import load_model

    torch.manual_seed(seed)
    policy, tok = load_model(warm_dir)
    problems = sample_problems(cfg.problems, seed)
    source = make_source(arm, problems, seed, cfg, policy, tok)
    t = time.perf_counter()
    res = train_arm(policy, tok, source, arm, seed, cfg, evaluate=lambda m: evaluate_policy(m, tok, cfg))
    seconds = time.perf_counter() - t
    start = evaluate_policy(load_model(warm_dir)[0].eval(), tok, cfg)
    steps = res.history
    step_s = [sum(h["seconds"].values()) for h in steps]
    src_s = [h["seconds"]["source"] for h in steps]
    out = {
        "arm": arm,
        "seed": seed,
        "steps": res.steps,
        "rollouts": res.rollouts,
        "curve": [{"rollouts": 0, **start}] + res.evals,
        "final": res.evals[-1]["mean"],
        "seconds": seconds,
        "step_seconds": statistics.mean(step_s),
        "source_share": sum(src_s) / sum(step_s),
        "informative_share": statistics.mean(h["informative_share"] for h in steps),
    }
    if isinstance(source, HeaPASource):
        st = source.stats()
        gen = st["seconds"]["augment_generate"]
        out["heapa"] = st
        # pool + validator bookkeeping only (the variants' generation is rollout work, counted apart)
        out["pool_share"] = st["seconds"]["pool"] / sum(step_s)
        out["augment_generate_share"] = gen / sum(step_s)
        source.close()
    return out


def rollouts_to_reach(curve: list[dict], target: float) -> float | None:
    """First rollout count at which the evaluated mean accuracy reaches `target` (linear between
    evaluations); None if it never does."""
    for a, b in zip(curve, curve[1:], strict=False):
        if b["mean"] >= target:
            if a["mean"] >= target:
                return float(a["rollouts"])
            f = (target - a["mean"]) / (b["mean"] - a["mean"])
            return a["rollouts"] + f * (b["rollouts"] - a["rollouts"])
    return None if not curve or curve[0]["mean"] < target else 0.0


def run_bench(cfg: BenchConfig, quiet: bool = False) -> dict:
    from tenfold.heapa.train import WarmStart, warm_policy

    cfg.validate()
    warm = warm_policy(WarmStart.for_answers(cfg.answers), quiet=quiet)
    jobs = [(arm, seed, cfg, warm) for seed in cfg.seeds for arm in cfg.arms]
    with progress_bar("heapa bench", total=len(jobs), quiet=quiet) as bar:
        # each run is seeded on its own, so its result does not depend on what runs beside it
        runs = map_jobs(
            run_arm, jobs, cfg.workers, lambda i, r: bar.advance(1, arm=r["arm"], final=r["final"])
        )
    return {"config": asdict(cfg), "runs": runs, "summary": summarize(runs, cfg)}


def summarize(runs: list[dict], cfg: BenchConfig) -> dict:
    """Per arm: final accuracy over seeds, and the rollouts it takes to reach uniform's final accuracy
    (same seed) as two shares: of the rollouts uniform itself took to first reach that accuracy
    (`rollout_ratio_to_uniform`, strict: on a flat, noisy curve uniform reaches its final value early),
    and of uniform's whole budget (`rollout_share_of_uniform_budget`, the plain reading of "reaches
    uniform's final accuracy with x% of its rollouts")."""
    out: dict = {}
    uniform_final = {r["seed"]: r["final"] for r in runs if r["arm"] == "uniform"}
    uniform_spent = {r["seed"]: r["rollouts"] for r in runs if r["arm"] == "uniform"}
    for arm in cfg.arms:
        rs = [r for r in runs if r["arm"] == arm]
        finals = [r["final"] for r in rs]
        reach = [
            rollouts_to_reach(r["curve"], uniform_final[r["seed"]]) for r in rs if r["seed"] in uniform_final
        ]
        uni_reach = {
            r["seed"]: rollouts_to_reach(r["curve"], uniform_final[r["seed"]])
            for r in runs
            if r["arm"] == "uniform"
        }
        ratio = [
            (x / uni_reach[r["seed"]]) if x is not None and uni_reach.get(r["seed"]) else None
            for r, x in zip(rs, reach, strict=True)
        ]
        share = [
            x / uniform_spent[r["seed"]] if x is not None else None for r, x in zip(rs, reach, strict=True)
        ]
        out[arm] = {
            "final_mean": statistics.mean(finals),
            "final_sd": statistics.pstdev(finals),
            "final_per_seed": finals,
            "final_per_level": {
                f"L{lv}": statistics.mean(r["curve"][-1][f"L{lv}"] for r in rs) for lv in LEVELS
            },
            "rollouts_to_uniform_final": reach,
            "rollout_ratio_to_uniform": ratio,
            "rollout_share_of_uniform_budget": share,
            "step_seconds": statistics.mean(r["step_seconds"] for r in rs),
            "source_share": statistics.mean(r["source_share"] for r in rs),
            "informative_share": statistics.mean(r["informative_share"] for r in rs),
        }
        if "pool_share" in rs[0]:
            out[arm]["pool_share"] = statistics.mean(r["pool_share"] for r in rs)
            out[arm]["augment_generate_share"] = statistics.mean(r["augment_generate_share"] for r in rs)
    return out


def markdown(result: dict) -> str:
    s = result["summary"]
    c = result["config"]
    lines = [
        f"Budget {c['budget']} rollouts per arm and seed; {len(c['seeds'])} seeds; group size {c['group_size']}, "
        f"{c['prompts_per_step']} prompts per step; held-out accuracy = mean over L1-L6 ({c['eval_n']} problems each).",
        "",
        "| arm | final accuracy (mean ± sd) | per seed | rollouts to uniform's final / uniform's | "
        "the same / uniform's budget | informative groups | s per step | source share of step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, x in s.items():
        ratios = ["-" if v is None else f"{v:.2f}" for v in x["rollout_ratio_to_uniform"]]
        shares = ["-" if v is None else f"{v:.2f}" for v in x.get("rollout_share_of_uniform_budget", [])]
        share = f"{x['source_share']:.1%}"
        if "pool_share" in x:
            share += f" (pool+validator {x['pool_share']:.1%}, variant generation {x['augment_generate_share']:.1%})"
        lines.append(
            f"| {arm} | {x['final_mean']:.3f} ± {x['final_sd']:.3f} | {' / '.join(f'{v:.3f}' for v in x['final_per_seed'])} | "
            f"{' / '.join(ratios)} | {' / '.join(shares)} | {x['informative_share']:.2f} | {x['step_seconds']:.2f} | {share} |"
        )
    lines += ["", "| arm | " + " | ".join(f"L{lv}" for lv in LEVELS) + " |", "|---|" + "---|" * len(LEVELS)]
    for arm, x in s.items():
        lines.append(
            f"| {arm} | " + " | ".join(f"{x['final_per_level'][f'L{lv}']:.2f}" for lv in LEVELS) + " |"
        )
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for arm in result["config"]["arms"]:
        rs = [r for r in result["runs"] if r["arm"] == arm]
        grid = np.linspace(0, result["config"]["budget"], 25)
        ys = [
            np.interp(grid, [p["rollouts"] for p in r["curve"]], [p["mean"] for p in r["curve"]]) for r in rs
        ]
        m = np.mean(ys, axis=0)
        ax.plot(grid, m, label=arm)
        if len(ys) > 1:
            sd = np.std(ys, axis=0)
            ax.fill_between(grid, m - sd, m + sd, alpha=0.15)
    ax.set_xlabel("rollouts")
    ax.set_ylabel("held-out accuracy (mean over L1-L6)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


__all__ = ["ARMS", "BenchConfig", "markdown", "plot", "run_bench"]

"""`tenfold resd bench`: RESD against SDPO, SDPO + solution buffer and GRPO with 8 rollouts per prompt,
plus the ablations and the oracle-reflection run, from one warm-start model on one task stream.

The stream is held-out-family tasks with training seeds (where the warm start rarely succeeds) mixed
with training-family tasks; evaluation is on held-out families with held-out seeds: mean@4 (success
averaged over 4 samples per task), best@4 (a task solved by any of the 4) and per-test-case accuracy.
Samples are counted as program rollouts (RESD: 1 per prompt per iteration, plus its reflection and
curation generations, reported apart; GRPO: 8 per prompt), so arms compare at equal samples.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from tenfold.core.benchkit import runs_by_arm, seed_sd
from tenfold.core.errors import TenfoldError
from tenfold.core.sampler import SamplingParams, generate
from tenfold.envs.manufactoria import HELDOUT_FAMILIES, TRAIN_FAMILIES, Task, task_pool
from tenfold.resd.loop import LoopConfig, Resd

# arm -> how it changes the loop (None: GRPO, run by tenfold.rl)
ARMS: dict[str, dict | None] = {
    "resd": {},
    "resd-oracle": {"reflector": "oracle"},
    "resd-ema-reflect": {"reflect_with": "teacher"},
    "sdpo": {"teacher_context": "sdpo"},
    "sdpo+ss": {"teacher_context": "sdpo+ss"},
    "no-reflection": {"use_reflection": False},
    "no-playbook": {"use_playbook": False},
    "no-solutions": {"use_solutions": False},
    "grpo8": None,
}
ABLATIONS = ("no-reflection", "no-playbook", "no-solutions")


def chat_ids(tok, text: str) -> list[int]:
    return list(tok.apply_chat_template([{"role": "user", "content": text}], True))


@torch.no_grad()
def evaluate(
    model, tok, tasks: list[Task], samples: int = 4, cfg: LoopConfig | None = None, seed: int = 999
) -> dict:
    """mean@k, best@k and per-test-case accuracy of `samples` programs per task (the loop's sampling)."""
    cfg = cfg or LoopConfig()
    prompts = [chat_ids(tok, t.prompt()) for t in tasks for _ in range(samples)]
    params = [
        SamplingParams(cfg.program_tokens, cfg.temperature, cfg.top_p, seed=seed * 100_003 + i)
        for i in range(len(prompts))
    ]
    model.eval()
    gens = generate(model, tok, prompts, params)
    checks = [tasks[i // samples].check(g.text) for i, g in enumerate(gens)]
    per_task = [checks[i * samples : (i + 1) * samples] for i in range(len(tasks))]
    return {
        "mean_at_k": statistics.mean(c.reward for c in checks),
        "best_at_k": statistics.mean(float(any(c.reward for c in cs)) for cs in per_task),
        "test_accuracy": statistics.mean(c.test_accuracy for c in checks),
        "parse_errors": statistics.mean(float(bool(c.error)) for c in checks),
        "k": samples,
    }


@dataclass
class BenchConfig:
    arms: tuple[str, ...] = (
        "resd",
        "resd-oracle",
        "resd-ema-reflect",
        "sdpo",
        "sdpo+ss",
        "grpo8",
        "no-reflection",
        "no-playbook",
        "no-solutions",
    )
    seeds: tuple[int, ...] = tuple(range(5))
    stream_tasks: int = 128  # one pass: stream_tasks / batch_size batches x K iterations
    heldout_families_share: float = 0.75  # of the stream: where success is rare
    eval_tasks: int = 48
    eval_every: int = 4  # iterations
    # batch 16 (the paper: 32) so that a run is 32 iterations in about 3 CPU minutes
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(batch_size=16))
    grpo_group: int = 8
    workers: int | None = None

    @classmethod
    def quick(cls) -> BenchConfig:
        """RESD against SDPO, SDPO + solution buffer and GRPO-8x, 2 seeds of the full bench's stream
        (about 12 minutes on 2 CPU cores)."""
        return cls(arms=("resd", "sdpo", "sdpo+ss", "grpo8"), seeds=(0, 1))

    def validate(self) -> BenchConfig:
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms or not self.seeds:
            raise TenfoldError(f"unknown or no arms {bad} (arms: {list(ARMS)}), or no seeds")
        if self.stream_tasks < 1 or self.eval_tasks < 1 or not 0 <= self.heldout_families_share <= 1:
            raise TenfoldError(f"bad stream / eval sizes: {self}")
        self.loop.validate()
        return self


def stream(cfg: BenchConfig) -> list[Task]:
    """The training stream: held-out families with training seeds, mixed with training families, in
    a fixed interleaved order (the same for every arm and seed)."""
    n_held = round(cfg.stream_tasks * cfg.heldout_families_share)
    held = task_pool(max(1, n_held), "train", families=HELDOUT_FAMILIES, offset=500_000)[:n_held]
    rest = task_pool(max(1, cfg.stream_tasks - n_held), "train", families=TRAIN_FAMILIES, offset=500_000)
    rest = rest[: cfg.stream_tasks - n_held]
    out, i, j = [], 0, 0
    while i < len(held) or j < len(rest):  # interleave evenly
        if j >= len(rest) or (i < len(held) and i * len(rest) <= j * len(held)):
            out.append(held[i])
            i += 1
        else:
            out.append(rest[j])
            j += 1
    return out


def run_resd_arm(model, tok, arm: str, cfg: BenchConfig, seed: int, heldout: list[Task]) -> dict:
    loop = replace(cfg.loop, seed=seed, **ARMS[arm])
    trainer = Resd(model, tok, loop)
    curve = [{"iteration": 0, "samples": 0, **evaluate(model, tok, heldout, cfg=loop)}]
    tasks, samples = stream(cfg), 0
    batches = [tasks[i : i + loop.batch_size] for i in range(0, len(tasks), loop.batch_size)]
    t0 = time.perf_counter()
    for batch in batches:
        for _ in range(loop.inner_iters):
            trainer.iteration(batch)
            samples += len(batch)
            if trainer.steps % cfg.eval_every == 0:
                curve.append(
                    {
                        "iteration": trainer.steps,
                        "samples": samples,
                        **evaluate(model, tok, heldout, cfg=loop),
                    }
                )
    if curve[-1]["iteration"] != trainer.steps:
        curve.append(
            {"iteration": trainer.steps, "samples": samples, **evaluate(model, tok, heldout, cfg=loop)}
        )
    return {
        "arm": arm,
        "seed": seed,
        "curve": curve,
        "history": [h.__dict__ for h in trainer.history],
        "playbook": [h.playbook for h in trainer.history],
        "context": trainer.ctx.stats.as_dict(),
        "step_seconds": statistics.mean(h.seconds for h in trainer.history),
        "seconds": time.perf_counter() - t0,
    }


@dataclass(frozen=True)
class _Item:
    """A stream task as the single-turn RL trainer wants it: a prompt (chat ids) and the task."""

    prompt: tuple[int, ...]
    task: Task


def run_grpo_arm(model, tok, cfg: BenchConfig, seed: int, heldout: list[Task]) -> dict:
    """GRPO with `grpo_group` rollouts per prompt over the same stream, same batch, iterations and lr."""
    from tenfold.rl import Config, UniformSource, train_rl

    loop = replace(cfg.loop, seed=seed)
    tasks = stream(cfg)
    iterations = -(-len(tasks) // loop.batch_size) * loop.inner_iters
    rl = Config(
        group_size=cfg.grpo_group,
        prompts_per_step=min(loop.batch_size, len(tasks)),
        steps=iterations,
        lr=loop.learning_rate,
        grad_clip=loop.grad_clip,
        temperature=loop.temperature,
        top_p=loop.top_p,
        max_new_tokens=loop.program_tokens,
        stop=(),  # programs are several lines: the end-of-turn token ends them
        seed=seed,
        eval_every=cfg.eval_every,
    )
    items = [_Item(tuple(chat_ids(tok, t.prompt())), t) for t in tasks]
    curve = [{"iteration": 0, "samples": 0, **evaluate(model, tok, heldout, cfg=loop)}]
    t0 = time.perf_counter()
    res = train_rl(
        model,
        tok,
        UniformSource(items, seed=seed),
        lambda item, text: item.task.check(text).reward,
        rl,
        evaluate=lambda m: evaluate(m, tok, heldout, cfg=loop),
        quiet=True,
    )
    curve += [
        {
            "iteration": e["step"],
            "samples": e["rollouts"],
            **{k: v for k, v in e.items() if k not in ("step", "rollouts")},
        }
        for e in res.evals
    ]
    return {
        "arm": "grpo8",
        "seed": seed,
        "curve": curve,
        "step_seconds": statistics.mean(sum(h["seconds"].values()) for h in res.history),
        "seconds": time.perf_counter() - t0,
    }


def run_one(arm: str, seed: int, cfg: BenchConfig, model_path: str) -> dict:
    """One arm, one seed, from the warm-start model at `model_path`."""
    from tenfold.core.models import load_model

    torch.manual_seed(seed)
    model, tok = load_model(model_path)
    heldout = task_pool(cfg.eval_tasks, "heldout")
    if ARMS[arm] is None:
        return run_grpo_arm(model, tok, cfg, seed, heldout)
    return run_resd_arm(model, tok, arm, cfg, seed, heldout)


def bench(cfg: BenchConfig, model_path: str, quiet: bool = False) -> dict:
    """Every (arm, seed) run side by side in `cfg.workers` processes; runs and their summary."""
    from tenfold.core.benchkit import map_jobs

    cfg = cfg.validate()
    jobs = [(arm, seed, cfg, str(model_path)) for seed in cfg.seeds for arm in cfg.arms]
    t = time.perf_counter()
    runs = map_jobs(run_one, jobs, cfg.workers)
    return {"config": asdict(cfg), "model": str(model_path), "runs": runs, "summary": summarise(runs),
            "seconds": time.perf_counter() - t}  # fmt: skip


def samples_to_reach(curve: list[dict], level: float) -> float:
    """Samples at the first eval whose mean@k reaches `level` (inf if never)."""
    return next((c["samples"] for c in curve if c["mean_at_k"] >= level), float("inf"))


def summarise(runs: list[dict]) -> dict:
    arms = runs_by_arm(runs)
    out = {}
    for arm, rs in arms.items():
        final = [r["curve"][-1] for r in rs]
        out[arm] = {
            "seeds": len(rs),
            "start": statistics.mean(r["curve"][0]["mean_at_k"] for r in rs),
            "start_test_accuracy": statistics.mean(r["curve"][0]["test_accuracy"] for r in rs),
            "mean_at_k": statistics.mean(f["mean_at_k"] for f in final),
            "mean_at_k_sd": seed_sd([f["mean_at_k"] for f in final]),
            "best_at_k": statistics.mean(f["best_at_k"] for f in final),
            "test_accuracy": statistics.mean(f["test_accuracy"] for f in final),
            "samples": statistics.mean(r["curve"][-1]["samples"] for r in rs),
            "playbook": statistics.mean(r["playbook"][-1] for r in rs) if "playbook" in rs[0] else 0.0,
            "step_seconds": statistics.mean(r["step_seconds"] for r in rs),
            "bad_reflections": _share(rs, "bad_reflections", "reflections"),
            "bad_curations": _share(rs, "bad_curations", "curations"),
        }
    grpo = arms.get("grpo8")
    if grpo:  # GRPO-8x's accuracy after a quarter of its samples, and who reaches it with how many
        firsts = [next(c for c in r["curve"] if c["samples"] >= r["curve"][-1]["samples"] / 4) for r in grpo]
        quarter = statistics.mean(c["mean_at_k"] for c in firsts)
        out["grpo8"]["grpo_quarter_samples"] = statistics.mean(c["samples"] for c in firsts)
        for arm, rs in arms.items():
            out[arm]["grpo_quarter_level"] = quarter
            out[arm]["samples_to_grpo_quarter"] = statistics.mean(
                samples_to_reach(r["curve"], quarter) for r in rs
            )
    return out


def _share(runs: list[dict], bad: str, total: str) -> float:
    """Malformed reflections (or curations) the model wrote, as a share of all, over the runs."""
    n = sum(r.get("context", {}).get(total, 0) for r in runs)
    return sum(r.get("context", {}).get(bad, 0) for r in runs) / n if n else 0.0


def markdown(result: dict) -> str:
    lines = [
        "| arm | seeds | mean@4 start → final (sd) | best@4 | per-test accuracy | samples | playbook | s / iteration |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, s in result["summary"].items():
        lines.append(
            f"| {arm} | {s['seeds']} | {s['start']:.3f} → {s['mean_at_k']:.3f} ({s['mean_at_k_sd']:.3f}) "
            f"| {s['best_at_k']:.3f} | {s['test_accuracy']:.3f} | {s['samples']:.0f} | {s['playbook']:.0f} "
            f"| {s['step_seconds']:.1f} |"
        )
    return "\n".join(lines)


def plot(result: dict, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tenfold.core.benchkit import save_figure

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colours: dict[str, str] = {}
    for r in result["runs"]:
        c = colours.setdefault(r["arm"], f"C{len(colours)}")
        xs = [p["samples"] for p in r["curve"]]
        axes[0].plot(xs, [p["mean_at_k"] for p in r["curve"]], color=c, alpha=0.6)
        axes[1].plot(xs, [p["test_accuracy"] for p in r["curve"]], color=c, alpha=0.6)
        if "playbook" in r:
            axes[2].plot(range(1, len(r["playbook"]) + 1), r["playbook"], color=c, alpha=0.6)
    axes[0].set(xlabel="program samples", ylabel="held-out mean@4", title="held-out families")
    axes[1].set(xlabel="program samples", ylabel="per-test-case accuracy", title="per test case")
    for ax in axes[:2]:  # GRPO-8x spends 8x the samples of the other arms
        ax.set_xscale("symlog", linthresh=64)
    axes[2].set(xlabel="iteration", ylabel="entries", title="playbook size")
    axes[0].legend([plt.Line2D([], [], color=c) for c in colours.values()], list(colours), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)

"""tenfold-base's benchmark: the probes of the model against the issue's targets, and (when a training
run's checkpoints are at hand) the same probes over training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tenfold.base.probes import ProbeConfig
from tenfold.base.train import MODEL_NAME

# the targets the probes are held to (copy and recall from the issue; chat and arithmetic our own)
TARGETS = {"copy@200": 0.95, "copy@800": 0.90, "recall": 0.90, "chat valid": 0.95, "arith mean": 0.5}


@dataclass
class BenchConfig:
    model: str = MODEL_NAME
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    curve_dir: str | None = None  # a training run's folder (step-N checkpoints): probes over training
    curve_every: int = 1
    curve_probes: ProbeConfig = field(default_factory=ProbeConfig.quick)  # per checkpoint: the quick set
    workers: int | None = None

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(probes=ProbeConfig.quick())


def run(cfg: BenchConfig) -> dict:
    from tenfold.base.api import curve, evaluate

    result = {"model": cfg.model, "probes": evaluate(cfg.model, cfg.probes, cfg.workers), "config": cfg}
    if cfg.curve_dir:
        result["curve"] = curve(cfg.curve_dir, cfg.curve_probes, cfg.workers, cfg.curve_every)
    return result


def markdown(result: dict) -> str:
    p = result["probes"]
    lines = ["| probe | value | target |", "|---|---|---|"]
    for k, v in p.items():
        if k == "recall tokens":
            continue
        target = TARGETS.get(k)
        shown = f"{v:.3f}" if k.startswith("loss/") else f"{v:.0%}"
        lines.append(f"| {k} | {shown} | {'' if target is None else f'>= {target:.0%}'} |")
    return "\n".join(lines)


SKILLS = ("copy@50", "copy@200", "copy@800", "recall", "arith mean", "chat valid")


def plot(result: dict, path: str | Path) -> Path:
    """Skills (bars, with targets) and, when measured, the skills and held-out losses over training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tenfold.core.benchkit import save_figure

    p = result["probes"]
    curve = result.get("curve")
    fig, axes = plt.subplots(1, 3 if curve else 1, figsize=(15 if curve else 6, 4), squeeze=False)
    ax = axes[0][0]
    skills = [s for s in SKILLS if s in p]
    ax.bar(skills, [p[s] for s in skills], color="tab:blue")
    for i, s in enumerate(skills):
        if s in TARGETS:
            ax.plot([i - 0.4, i + 0.4], [TARGETS[s]] * 2, color="tab:red")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{result['model']}: probes (red: targets)")
    ax.tick_params(axis="x", rotation=30)
    if curve:
        steps = [pt["step"] for pt in curve]
        for s in skills:
            axes[0][1].plot(steps, [pt[s] for pt in curve], marker="o", label=s)
        axes[0][1].set_title("skills over training")
        axes[0][1].set_xlabel("step")
        axes[0][1].legend(fontsize=7)
        for k in [k for k in curve[0] if k.startswith("loss/")]:
            axes[0][2].plot(steps, [pt[k] for pt in curve], label=k.removeprefix("loss/"))
        axes[0][2].set_title("held-out loss per component (nats/token)")
        axes[0][2].set_xlabel("step")
        axes[0][2].set_yscale("log")
        axes[0][2].legend(fontsize=7)
    return save_figure(fig, path)

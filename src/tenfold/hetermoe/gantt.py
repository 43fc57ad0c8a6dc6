"""Gantt pictures of simulated (or measured) iterations: which GPU stream does what, when."""

from __future__ import annotations

from pathlib import Path

from tenfold.hetermoe.des import Timeline

COLORS = {
    "attention": "#1f77b4",
    "attention (bwd)": "#9ecae1",
    "expert": "#d62728",
    "expert (bwd)": "#ff9896",
    "offloaded expert": "#9467bd",
    "offloaded expert (bwd)": "#c5b0d5",
    "dispatch": "#2ca02c",
    "dispatch (bwd)": "#98df8a",
    "combine": "#ff7f0e",
    "combine (bwd)": "#ffbb78",
    "head+loss": "#7f7f7f",
    "forward": "#1f77b4",
    "backward": "#9ecae1",
    "activations": "#2ca02c",
    "gradients": "#98df8a",
}


def plot_timelines(timelines: dict[str, Timeline], path: str | Path, title: str = "") -> Path:
    """One panel per schedule, all on the same time axis (ms); each row a stream of one GPU type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sum(len(tl.utilisation()) for tl in timelines.values())
    fig, axes = plt.subplots(
        len(timelines),
        1,
        figsize=(12, 1.0 + 0.45 * rows),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [len(tl.utilisation()) for tl in timelines.values()]},
    )
    span = max(tl.makespan for tl in timelines.values())
    seen: dict[str, object] = {}
    for ax, (name, tl) in zip(axes[:, 0], timelines.items(), strict=True):
        resources = list(tl.utilisation())
        for y, res in enumerate(resources):
            for n, t in tl.tasks.items():
                if t.resource != res:
                    continue
                bar = ax.barh(
                    y,
                    tl.end[n] - tl.start[n],
                    left=tl.start[n],
                    height=0.8,
                    color=COLORS.get(t.kind, "#bcbd22"),
                    edgecolor="white",
                    linewidth=0.3,
                )
                seen.setdefault(t.kind, bar)
        ax.set_yticks(
            range(len(resources)), [f"{r} ({tl.utilisation()[r]:.0%})" for r in resources], fontsize=8
        )
        ax.invert_yaxis()
        ax.set_xlim(0, span * 1.01)
        ax.set_title(f"{name}: {tl.makespan:.0f} ms", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time in the iteration (ms); row labels give busy share")
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=6, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

"""The verification benchmark: tenfold's engine against plain Marabou on the same competition-style
instances (`competition.build`), one engine after the other on the same machine, same time limits.

Reported per instance and in total: the answer of each engine, how tenfold decided it, and the time.
Agreement counts only instances both decide. Plain Marabou runs one process per instance (as a user
runs it); tenfold runs Marabou pieces on every core, so the summary also gives the ratio against plain
Marabou with its total time halved (two instances at once on two cores, the best plain Marabou could
do here). The Sub-normalised controllers (`sub_controllers`) are run apart: there plain Marabou
answers for another network (maraboupy 2.0.0 encodes Sub by a constant as an addition), so its
answers are checked against onnxruntime instead of counted as disagreements.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tenfold.core.benchkit import save_figure


@dataclass
class VerifyBenchConfig:
    controllers: int = 5
    per_kind: int = 3  # properties of each of the 3 forms per controller
    images: int = 2
    robust: int = 12  # robustness properties per image classifier
    sub_controllers: int = 1
    timeout_s: int = 60
    seed: int = 0
    workers: int | None = None  # tenfold's Marabou processes (None: one per core)

    @classmethod
    def quick(cls) -> VerifyBenchConfig:
        return cls(controllers=2, per_kind=2, images=1, robust=10, sub_controllers=1, timeout_s=30)


def run(cfg: VerifyBenchConfig, quiet: bool = False, keep_dir: str | Path | None = None) -> dict:
    from tenfold.autospec import competition
    from tenfold.autospec.bab import SolveConfig
    from tenfold.autospec.instances import compare, read_instances, run_instances, summary

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(keep_dir or tmp)
        csv_path = competition.build(
            root,
            cfg.controllers,
            cfg.per_kind,
            cfg.images,
            cfg.robust,
            sub_controllers=cfg.sub_controllers,
            timeout_s=cfg.timeout_s,
            seed=cfg.seed,
        )
        rows = read_instances(csv_path)
        solve_cfg = SolveConfig(workers=cfg.workers)
        ours = run_instances(rows, "tenfold", solve_cfg, quiet=quiet)
        theirs = run_instances(rows, "marabou", quiet=quiet)
        sub = {}
        if cfg.sub_controllers:
            sub_rows = read_instances(root / "instances_sub.csv")
            sub_ours = run_instances(sub_rows, "tenfold", solve_cfg, quiet=quiet)
            sub_theirs = run_instances(sub_rows, "marabou", quiet=quiet)
            sub = {
                "instances": len(sub_rows),
                "agreement": compare(sub_ours, sub_theirs),
                "marabou_sat_not_reproduced": sum(
                    r["result"] == "violated" and not r["rechecked"] for r in sub_theirs
                ),
                "tenfold": [_slim(r) for r in sub_ours],
                "marabou": [_slim(r) for r in sub_theirs],
            }
    agreement = compare(ours, theirs)
    s_ours, s_theirs = summary(ours), summary(theirs)
    decided = {
        "tenfold": s_ours["holds"] + s_ours["violated"],
        "marabou": s_theirs["holds"] + s_theirs["violated"],
    }
    return {
        "config": asdict(cfg),
        "instances": [
            {"name": Path(a["vnnlib"]).stem, "tenfold": _slim(a), "marabou": _slim(b)}
            for a, b in zip(ours, theirs, strict=True)
        ],
        "summary": {
            "tenfold": s_ours,
            "marabou": s_theirs,
            "decided": decided,
            "agreement": agreement,
            "time_ratio": agreement["time_ratio"],
            "time_ratio_vs_two_marabou_processes": agreement["time_ratio"] / 2,
            "all_rechecked": all(r["rechecked"] for r in ours if r["result"] == "violated"),
        },
        "sub_normalised": sub,
    }


def _slim(r: dict) -> dict:
    keep = ("result", "reason", "method", "seconds", "rechecked")
    out = {k: r[k] for k in keep}
    out["onnx"] = Path(r["onnx"]).name
    out["boxes"] = r.get("stats", {}).get("boxes")
    out["marabou_pieces"] = r.get("stats", {}).get("marabou_pieces")
    return out


def family(name: str) -> str:
    return name.split("_")[0]


def markdown(result: dict) -> str:
    s = result["summary"]
    t, m = s["tenfold"], s["marabou"]
    methods = ", ".join(f"{k or 'undecided'} {v}" for k, v in t["by_method"].items())
    lines = [
        "| engine | holds | violated | unknown | decided | total time s |",
        "|---|---|---|---|---|---|",
        f"| plain Marabou | {m['holds']} | {m['violated']} | {m['unknown']} | {s['decided']['marabou']} | {m['seconds']:.1f} |",
        f"| tenfold | {t['holds']} | {t['violated']} | {t['unknown']} | {s['decided']['tenfold']} | {t['seconds']:.1f} |",
        "",
        f"Both decide {s['agreement']['both_decided']} instances and disagree on {s['agreement']['disagree']}; "
        f"tenfold alone decides {s['agreement']['only_ours']}, plain Marabou alone {s['agreement']['only_theirs']}. "
        f"Total time, plain Marabou / tenfold: {s['time_ratio']:.2f}x "
        f"({s['time_ratio_vs_two_marabou_processes']:.2f}x against two plain Marabou processes at once; "
        f"{s['agreement']['time_ratio_both_decided']:.2f}x over the instances both decide). "
        f"How tenfold decided: {methods}.",
        "",
        "| family | instances | tenfold decided | Marabou decided | tenfold s | Marabou s |",
        "|---|---|---|---|---|---|",
    ]
    fams: dict[str, list] = {}
    for inst in result["instances"]:
        fams.setdefault(family(inst["name"]), []).append(inst)
    for fam, xs in fams.items():
        dec = {e: sum(x[e]["result"] != "unknown" for x in xs) for e in ("tenfold", "marabou")}
        secs = {e: sum(x[e]["seconds"] for x in xs) for e in ("tenfold", "marabou")}
        lines.append(
            f"| {fam} | {len(xs)} | {dec['tenfold']} | {dec['marabou']} | {secs['tenfold']:.1f} | {secs['marabou']:.1f} |"
        )
    sub = result.get("sub_normalised") or {}
    if sub:
        a = sub["agreement"]
        lines += [
            "",
            f"Sub-normalised controllers ({sub['instances']} instances): the answers differ on {a['disagree']} of "
            f"{a['both_decided']} decided by both; {sub['marabou_sat_not_reproduced']} of plain Marabou's "
            "counterexamples do not reproduce in onnxruntime.",
        ]
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limit = result["config"]["timeout_s"]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    colors = {"holds": "tab:green", "violated": "tab:red", "unknown": "tab:gray"}
    for status, color in colors.items():
        xs = [i for i in result["instances"] if i["tenfold"]["result"] == status]
        ax.scatter(
            [max(1e-3, i["marabou"]["seconds"]) for i in xs],
            [max(1e-3, i["tenfold"]["seconds"]) for i in xs],
            c=color,
            s=18,
            label=f"tenfold: {status}",
        )
    ax.plot([1e-3, limit * 1.5], [1e-3, limit * 1.5], "k:", lw=0.8)
    ax.axvline(limit, color="gray", lw=0.6, ls="--")
    ax.set(xscale="log", yscale="log", xlabel="plain Marabou, s (dashed: time limit)", ylabel="tenfold, s")
    ax.set_title(
        f"{len(result['instances'])} instances, {result['summary']['time_ratio']:.1f}x less time in total"
    )
    ax.legend(fontsize=8)
    return save_figure(fig, path)

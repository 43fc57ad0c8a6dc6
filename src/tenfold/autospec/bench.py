"""`tenfold autospec bench`: AutoSpec against hand-written specs, a uniform grid and clustering boxes on
the four systems over several seeds; verification of the generated specs against the trained network;
and the deliberately flawed network.

Per (system, seed): simulate traces, split generation/evaluation by trace, generate specs with each
method from the generation split, score them on the evaluation split (precision, recall, F1,
tightness). Then train the network on the generation split, export it to ONNX and verify every
AutoSpec spec (interval pre-check, sampling, Marabou). Finally train a second network on labels
corrupted in one region (outside every hand-written rule) and compare, for AutoSpec's and the
hand-written specs: the share of evaluation points in that region where the network's output breaks a
covering spec, and whether verification finds a re-checked counterexample inside the region.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tenfold.autospec.baselines import hand_written
from tenfold.autospec.generate import GenConfig, autospec, clusters, grid
from tenfold.autospec.metrics import score
from tenfold.autospec.nets import export_onnx, flaw_box, flawed_labels, predict, train_net
from tenfold.autospec.spec import Spec
from tenfold.autospec.systems import SYSTEMS, Dataset, simulate
from tenfold.autospec.verify import verify
from tenfold.core.benchkit import map_jobs, save_figure
from tenfold.core.progress import progress_bar

METHODS = {"autospec": autospec, "hand-written": hand_written, "grid": grid, "clusters": clusters}


VERIFY_METHODS = ("interval", "sampling", "bounds", "splitting", "marabou")  # how verify decides a spec


@dataclass
class BenchConfig:
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    traces: int = 60
    steps: int = 100
    net_steps: int = 800
    marabou_timeout_s: int = 10
    verify_seeds: int = 3  # verification and the flawed network on the first this many seeds
    flaw_steps_factor: int = 3  # the flawed network trains this many times longer, so that it fits
    # its small corrupted region (at net_steps it picks the corrupted label in under half of it)
    workers: int | None = None  # cases side by side, one process and CPU thread each (None: one per core)

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(traces=40, steps=80, net_steps=500)


def _flaw_check(specs: list[Spec], net, ev: Dataset, onnx_path: Path, timeout: int) -> dict:
    """How a spec set sees a network in the flawed region: the share of evaluation points in the region
    that a spec covers and the network's output breaks, and the specs refuted inside the region (each
    spec cut to its intersection with the flaw box, verified, counterexample re-checked)."""
    y = predict(net, ev.X, ev.task)
    _, region = flawed_labels(ev)
    rlo, rhi = flaw_box(ev)
    covered = np.zeros(len(ev), bool)
    broken = np.zeros(len(ev), bool)
    cut = []
    for s in specs:
        c = s.covers(ev.X)
        covered |= c
        broken |= c & ~s.allows(y)
        lo, hi = np.maximum(s.lo, rlo), np.minimum(s.hi, rhi)
        if (lo < hi).all():  # a shared face is not an overlap
            cut.append(Spec(tuple(lo), tuple(hi), s.classes, s.interval, s.support, A=s.A, b=s.b))
    verdicts = verify(cut, onnx_path, timeout)
    # the share of the cut boxes' volume where the network breaks the spec (uniform samples)
    rng = np.random.default_rng(0)
    hits = total = 0
    for c in cut:
        pts = rng.uniform(c.lo, c.hi, size=(500, len(c.lo))).astype(np.float32)
        pts = pts[c.covers(pts)]
        hits += int((~c.allows(predict(net, pts, ev.task))).sum())
        total += len(pts)
    n = int(region.sum())
    return {
        "region_points": n,
        "region_covered": float((covered & region).sum() / n) if n else 0.0,
        "region_violated": float((broken & region).sum() / n) if n else 0.0,
        "specs_meeting_region": len(cut),
        "refuted_in_region": sum(v.status == "refuted" and v.rechecked for v in verdicts),
        "violated_volume_share": hits / total if total else 0.0,
    }


def run_one(system: str, seed: int, cfg: BenchConfig, verify_it: bool) -> dict:
    data = simulate(system, cfg.traces, cfg.steps, seed)
    gen, ev = data.split_by_trace(0.3, seed)
    specs = {name: fn(gen) for name, fn in METHODS.items()}
    row: dict = {"system": system, "seed": seed, "generation_points": len(gen), "evaluation_points": len(ev)}
    row["scores"] = {name: score(s, ev) for name, s in specs.items()}
    if not verify_it:
        return row
    with tempfile.TemporaryDirectory() as tmp:
        net = train_net(gen, steps=cfg.net_steps, seed=seed)
        path = export_onnx(net, gen.X.shape[1], Path(tmp) / "net.onnx")
        verdicts = verify(specs["autospec"], path, cfg.marabou_timeout_s)
        row["verification"] = {
            "specs": len(verdicts),
            "verified": sum(v.status == "verified" for v in verdicts),
            "refuted": sum(v.status == "refuted" for v in verdicts),
            "refuted_rechecked": sum(v.status == "refuted" and v.rechecked for v in verdicts),
            "unknown": sum(v.status == "unknown" for v in verdicts),
            "by_method": {m: sum(v.method == m for v in verdicts) for m in VERIFY_METHODS},
            "seconds": sum(v.seconds for v in verdicts),
            "max_seconds": max((v.seconds for v in verdicts), default=0.0),
        }
        row["network_scores"] = {name: score(s, ev, predict(net, ev.X, ev.task)) for name, s in specs.items()}
        # the same cells cut to polytopes (bounds on pairwise input differences): F1 and verification
        poly = autospec(gen, GenConfig(polytope=True))
        pv = verify(poly, path, cfg.marabou_timeout_s)
        row["polytope"] = {
            "scores": score(poly, ev),
            "verified": sum(v.status == "verified" for v in pv),
            "refuted": sum(v.status == "refuted" and v.rechecked for v in pv),
            "unknown": sum(v.status == "unknown" for v in pv),
            "specs": len(pv),
            "seconds": sum(v.seconds for v in pv),
        }
        bad_gen, _ = flawed_labels(gen)
        flawed = train_net(bad_gen, steps=cfg.net_steps * cfg.flaw_steps_factor, seed=seed)
        fpath = export_onnx(flawed, gen.X.shape[1], Path(tmp) / "flawed.onnx")

        row["flaw"] = {
            name: {
                "good": _flaw_check(specs[name], net, ev, path, cfg.marabou_timeout_s),
                "flawed": _flaw_check(specs[name], flawed, ev, fpath, cfg.marabou_timeout_s),
            }
            for name in ("autospec", "hand-written")
        }
    return row


def run_bench(cfg: BenchConfig, quiet: bool = False) -> dict:
    cases = [(s, seed, cfg, seed in cfg.seeds[: cfg.verify_seeds]) for s in cfg.systems for seed in cfg.seeds]
    with progress_bar("autospec bench", total=len(cases), quiet=quiet) as bar:
        # each case seeds its own data and network, so its row does not depend on where it runs
        rows = map_jobs(run_one, cases, cfg.workers, lambda i, r: bar.advance(1))
    return {"config": cfg.__dict__, "rows": rows, "summary": summarize(rows, cfg)}


def _sum_verification(vs: list[dict]) -> dict:
    """Verification counts and times added over seeds (the longest single spec: the max)."""
    out = {
        k: sum(v[k] for v in vs)
        for k in ("specs", "verified", "refuted", "refuted_rechecked", "unknown", "seconds")
    }
    out["by_method"] = {m: sum(v["by_method"].get(m, 0) for v in vs) for m in VERIFY_METHODS}
    out["max_seconds"] = max(v["max_seconds"] for v in vs)
    out["seeds"] = len(vs)
    return out


def summarize(rows: list[dict], cfg: BenchConfig) -> dict:
    out = {}
    for system in cfg.systems:
        rs = [r for r in rows if r["system"] == system]
        f1 = {m: [r["scores"][m]["f1"] for r in rs] for m in METHODS}
        out[system] = {
            "f1_mean": {m: statistics.mean(v) for m, v in f1.items()},
            "f1_std": {m: statistics.pstdev(v) for m, v in f1.items()},
            "precision_mean": {m: statistics.mean(r["scores"][m]["precision"] for r in rs) for m in METHODS},
            "recall_mean": {m: statistics.mean(r["scores"][m]["recall"] for r in rs) for m in METHODS},
            "tightness_mean": {m: statistics.mean(r["scores"][m]["tightness"] for r in rs) for m in METHODS},
            "autospec_beats_all_every_seed": all(
                r["scores"]["autospec"]["f1"] > max(r["scores"][m]["f1"] for m in METHODS if m != "autospec")
                for r in rs
            ),
        }
        v = [r for r in rs if "verification" in r]
        if v:
            out[system]["verification"] = _sum_verification([r["verification"] for r in v])
            out[system]["polytope"] = {
                "f1_mean": statistics.mean(r["polytope"]["scores"]["f1"] for r in v),
                **{
                    k: sum(r["polytope"][k] for r in v)
                    for k in ("specs", "verified", "refuted", "unknown", "seconds")
                },
            }
            out[system]["flaw"] = v[0]["flaw"]
            out[system]["flaw_rise"] = {  # per verified seed: violated share in region, flawed - good
                name: [
                    r["flaw"][name]["flawed"]["region_violated"] - r["flaw"][name]["good"]["region_violated"]
                    for r in v
                ]
                for name in v[0]["flaw"]
            }
    return out


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        "| system | AutoSpec F1 | hand-written F1 | grid F1 | clusters F1 | AutoSpec P / R / tightness | AutoSpec best on every seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, x in s.items():

        def f(m: str, x=x) -> str:
            return f"{x['f1_mean'][m]:.3f} ± {x['f1_std'][m]:.3f}"

        lines.append(
            f"| {system} | {f('autospec')} | {f('hand-written')} | {f('grid')} | {f('clusters')} | "
            f"{x['precision_mean']['autospec']:.2f} / {x['recall_mean']['autospec']:.2f} / "
            f"{x['tightness_mean']['autospec']:.2f} | {'yes' if x['autospec_beats_all_every_seed'] else 'no'} |"
        )
    lines += [
        "",
        "| system | specs | verified | refuted (counterexample re-checked) | unknown | decided by interval / sampling / bounds / splitting / Marabou | time total (max) s |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, x in s.items():
        if "verification" not in x:
            continue
        v = x["verification"]
        lines.append(
            f"| {system} | {v['specs']} | {v['verified']} | {v['refuted']} ({v['refuted_rechecked']}) | {v['unknown']} | "
            f"{' / '.join(str(v['by_method'].get(m, 0)) for m in VERIFY_METHODS)} | "
            f"{v['seconds']:.2f} ({v['max_seconds']:.2f}) |"
        )
    lines += [
        "",
        "| system | AutoSpec boxes: F1 / verified of specs | polytopes: F1 / verified / refuted / unknown of specs | polytope time s |",
        "|---|---|---|---|",
    ]
    for system, x in s.items():
        if "polytope" not in x:
            continue
        v, p = x["verification"], x["polytope"]
        lines.append(
            f"| {system} | {x['f1_mean']['autospec']:.3f} / {v['verified']} of {v['specs']} | "
            f"{p['f1_mean']:.3f} / {p['verified']} / {p['refuted']} / {p['unknown']} of {p['specs']} | {p['seconds']:.2f} |"
        )
    lines += [
        "",
        "| system | specs | region covered | violated in region: good net | flawed net | specs refuted in region: good | flawed | violated share of region volume: good | flawed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for system, x in s.items():
        if "flaw" not in x:
            continue
        for name, fl in x["flaw"].items():
            g, b = fl["good"], fl["flawed"]
            lines.append(
                f"| {system} | {name} | {b['region_covered']:.2f} | {g['region_violated']:.2f} | {b['region_violated']:.2f} | "
                f"{g['refuted_in_region']} of {g['specs_meeting_region']} | {b['refuted_in_region']} of {b['specs_meeting_region']} | "
                f"{g['violated_volume_share']:.2f} | {b['violated_volume_share']:.2f} |"
            )
    rises = {k: x["flaw_rise"] for k, x in s.items() if "flaw_rise" in x}
    if rises:
        lines += [
            "",
            "| system | rise in violated share, AutoSpec (per seed) | hand-written (per seed) |",
            "|---|---|---|",
        ]
        for system, r in rises.items():
            lines.append(
                f"| {system} | {' / '.join(f'{v:.2f}' for v in r['autospec'])} | "
                f"{' / '.join(f'{v:.2f}' for v in r['hand-written'])} |"
            )
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    systems = list(s)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    w = 0.2
    for k, m in enumerate(METHODS):
        ax.bar(
            [i + (k - 1.5) * w for i in range(len(systems))],
            [s[x]["f1_mean"][m] for x in systems],
            w,
            yerr=[s[x]["f1_std"][m] for x in systems],
            label=m,
            capsize=2,
        )
    ax.set_xticks(range(len(systems)), systems)
    ax.set_ylabel(f"F1 on held-out traces (mean ± sd, {len(result['config']['seeds'])} seeds)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncol=4, loc="lower center")
    return save_figure(fig, path)

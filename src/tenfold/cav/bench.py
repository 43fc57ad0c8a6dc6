"""`tenfold cav bench`: detector AP per fusion mode, attack success per setting, and CAD's operating point.

All on generated scenes the detectors never trained on: validation seeds pick CAD's thresholds, test
seeds give every reported number.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tenfold.cav.attack import WhiteBoxConfig
from tenfold.cav.cases import make_cases
from tenfold.cav.evaluate import SETTINGS, applicable, collect_evidence, pick_threshold, run_attack
from tenfold.cav.geometry import box_iou
from tenfold.cav.perception import observe
from tenfold.cav.train import TEST_SEED_OFFSET, VAL_SEED_OFFSET, TrainConfig, evaluate_ap, load_perception
from tenfold.cav.world import generate_scene
from tenfold.core.benchkit import check_workers, map_jobs, save_figure
from tenfold.core.progress import progress_bar

CAD_SETTINGS = (("early", "raycast"), ("intermediate", "whitebox"))  # the attacks CAD is evaluated on
UNSEEN_SEED_OFFSET = 3_000_000


@dataclass
class BenchConfig:
    val_scenes: int = 100
    test_scenes: int = 200
    unseen_scenes: int = 200  # scenes searched for targets no benign CAV observes (CAD's hard case)
    ap_scenes: int = 100
    whitebox: WhiteBoxConfig = field(default_factory=WhiteBoxConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    workers: int | None = None  # attack jobs side by side, one process and CPU thread each (None: per core)

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(val_scenes=20, test_scenes=24, unseen_scenes=30, ap_scenes=20)


def _key(mode: str, attack: str) -> str:
    return f"{mode}/{attack}"


def _cases(offset: int, n: int, unseen: bool = False) -> list:
    seeds = range(offset, offset + n)
    return make_cases(seeds, "spoof", unseen=unseen) + make_cases(seeds, "remove", unseen=unseen)


def run_bench(cfg: BenchConfig, quiet: bool = False) -> dict:
    check_workers(cfg.workers)
    t0 = time.time()
    perception = load_perception(cfg.train, quiet=quiet)
    ap = evaluate_ap(perception, [TEST_SEED_OFFSET + i for i in range(cfg.ap_scenes)], quiet=quiet)
    val, test = _cases(VAL_SEED_OFFSET, cfg.val_scenes), _cases(TEST_SEED_OFFSET, cfg.test_scenes)
    unseen = _cases(UNSEEN_SEED_OFFSET, cfg.unseen_scenes, unseen=True)
    jobs = [
        (c, s, split) for split, cs in (("val", val), ("unseen", unseen)) for c in cs for s in CAD_SETTINGS
    ]
    jobs += [(c, s, "test") for c in test for s in SETTINGS if applicable(c.kind, s[1])]
    _perception[repr(cfg.train)] = perception
    with progress_bar("attack + CAD", len(jobs), quiet) as bar:
        # every job seeds its own randomness, so its record does not depend on where it runs
        records = map_jobs(run_job, [(*job, cfg) for job in jobs], cfg.workers, lambda i, r: bar.advance(1))
    return {
        "config": asdict(cfg),
        "ap": ap,
        "records": records,
        "summary": summarise(records),
        "seconds": time.time() - t0,
    }


_perception: dict = {}  # per process: the detectors, loaded once


def run_job(case, setting: tuple[str, str], split: str, cfg: BenchConfig) -> dict:
    """One attack on one case, and CAD's evidence when CAD is evaluated on that setting: one record."""
    key = repr(cfg.train)
    if key not in _perception:
        _perception[key] = load_perception(cfg.train, quiet=True)
    perception = _perception[key]
    mode, attack = setting
    scene = generate_scene(case.seed)
    t = len(scene.frames) - 1
    rec = {"split": split, "seed": case.seed, "kind": case.kind, "setting": _key(mode, attack)}
    # a removal is only meaningful when the victim sees the target without an attack
    if case.kind == "remove":
        scans = observe(scene, t)
        boxes, _ = perception.detect(scans, case.victim, mode, scene.pose(t, case.victim))
        rec["attackable"] = bool(len(boxes) and box_iou(boxes, case.box[None]).max() > 0)
        # returns of the target from vehicles other than the attacker: beyond its reach
        rec["benign_returns"] = int(
            sum((s.hit_ids == case.target_id).sum() for v, s in scans.items() if v != case.attacker)
        )
    else:
        rec["attackable"] = True
    if rec["attackable"]:
        ts = time.time()
        a = run_attack(perception, case, mode, attack, cfg.whitebox, scene)
        rec.update(success=a.success, seconds=time.time() - ts)
        if (mode, attack) in CAD_SETTINGS:
            ev = collect_evidence(perception, case, a, mode, scene=scene)
            rec.update(cad=asdict(ev))
    return rec


def summarise(records: list[dict]) -> dict:
    out: dict = {"success": {}, "cad": {}}
    test = [r for r in records if r["split"] == "test" and r["attackable"]]
    for mode, attack in SETTINGS:
        key = _key(mode, attack)
        for kind in ("spoof", "remove"):
            rs = [r["success"] for r in test if r["setting"] == key and r["kind"] == kind]
            if rs:
                out["success"][f"{key}/{kind}"] = {"rate": float(np.mean(rs)), "n": len(rs)}
        rs = [r["success"] for r in test if r["setting"] == key]
        if rs:
            out["success"][key] = {"rate": float(np.mean(rs)), "n": len(rs)}
        # removals of a target no benign CAV sees (< 3 returns): the attacker controls all the evidence
        rs = [r["success"] for r in test if r["setting"] == key and r.get("benign_returns", 99) < 3]
        if rs:
            out["success"][f"{key}/remove-unseen"] = {"rate": float(np.mean(rs)), "n": len(rs)}
    # CAD: thresholds per kind on validation, then the operating point over both kinds
    thresholds = {}
    for kind in ("spoof", "remove"):
        val = [
            r for r in records if r["split"] == "val" and r.get("cad") and r["kind"] == kind and r["success"]
        ]
        pos = [r["cad"]["positive"] for r in val]
        neg = [x for r in val for x in r["cad"]["negatives"][kind]]
        thresholds[kind] = pick_threshold(pos, neg)[0] if pos else float("inf")
    out["cad"]["thresholds"] = thresholds
    for split in ("test", "unseen"):
        rs = [r for r in records if r["split"] == split and r.get("cad")]
        for key in ["all"] + [_key(*s) for s in CAD_SETTINGS]:
            sub = [r for r in rs if key == "all" or r["setting"] == key]
            name = key if split == "test" else f"unseen/{key}"
            out["cad"][name] = cad_stats(sub, thresholds)
    unseen = [r for r in records if r["split"] == "unseen" and r["attackable"]]
    for key in [_key(*s) for s in CAD_SETTINGS]:
        for kind in ("spoof", "remove"):
            rs = [r["success"] for r in unseen if r["setting"] == key and r["kind"] == kind]
            if rs:
                out["success"][f"unseen/{key}/{kind}"] = {"rate": float(np.mean(rs)), "n": len(rs)}
    return out


def cad_stats(records: list[dict], thresholds: dict[str, float]) -> dict:
    """TPR over successful attacks (with the attacker's honest and forged map), FPR over legitimate objects."""
    hits = [r for r in records if r["success"]]
    mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    flag = lambda r, f="positive": r["cad"][f] > thresholds[r["kind"]]  # noqa: E731
    negs = [x > thresholds[k] for r in records for k in ("spoof", "remove") for x in r["cad"]["negatives"][k]]
    seen = [r for r in hits if r["cad"]["observed"]]
    return {
        "attacks": len(hits),
        "tpr": mean([flag(r) for r in hits]),
        "tpr_forged": mean([flag(r, "positive_forged") for r in hits]),
        "fpr": mean(negs),
        "negatives": len(negs),
        "observed_share": len(seen) / len(hits) if hits else float("nan"),
        "benign_detector_errors": int(sum(r["cad"]["benign_errors"] for r in records)),
    }


def markdown(result: dict) -> str:
    ap, s = result["ap"], result["summary"]
    lines = ["| perception | AP@0.5 | AP@0.7 |", "|---|---|---|"]
    lines += [f"| {m} | {v['ap50']:.3f} | {v['ap70']:.3f} |" for m, v in ap.items()]
    lines += [
        "",
        "| fusion / attack | spoof success | remove success | remove, target unseen by benign CAVs | all |",
        "|---|---|---|---|---|",
    ]
    for mode, attack in SETTINGS:
        k = _key(mode, attack)
        cell = lambda kk: (  # noqa: E731
            f"{s['success'][kk]['rate']:.0%} (n={s['success'][kk]['n']})" if kk in s["success"] else "-"
        )
        lines.append(
            f"| {k} | {cell(k + '/spoof')} | {cell(k + '/remove')} | {cell(k + '/remove-unseen')} | {cell(k)} |"
        )
    c = s["cad"]
    lines += [
        "",
        f"CAD thresholds (validation): spoof {c['thresholds']['spoof']:.2f} m^2, remove {c['thresholds']['remove']:.2f} m^2",
        "",
        "| CAD on | scenes | successful attacks | TPR | TPR, attacker forges its map | FPR (legitimate objects) "
        "| target seen by a benign CAV |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("test", "unseen"):
        for k in ["all"] + [_key(*x) for x in CAD_SETTINGS]:
            v = c[k if split == "test" else f"unseen/{k}"]
            lines.append(
                f"| {k} | {'held-out' if split == 'test' else 'target unseen by benign CAVs'} | {v['attacks']} | "
                f"{v['tpr']:.1%} | {v['tpr_forged']:.1%} | {v['fpr']:.1%} of {v['negatives']} | {v['observed_share']:.0%} |"
            )
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    keys = [_key(*k) for k in SETTINGS]
    x = np.arange(len(keys))
    for off, kind in ((-0.2, "spoof"), (0.2, "remove")):
        vals = [s["success"].get(f"{k}/{kind}", {}).get("rate", np.nan) for k in keys]
        ax.bar(x + off, vals, 0.4, label=kind)
    ax.set_xticks(x, [k.replace("/", "\n") for k in keys], fontsize=7)
    ax.set_ylabel("attack success rate")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("attacks on the victim's perception (test scenes)")
    # CAD: TPR / FPR as the thresholds sweep, on the test evidence
    recs = [r for r in result["records"] if r["split"] == "test" and r.get("cad") and r["success"]]
    for kind in ("spoof", "remove"):
        pos = np.array([r["cad"]["positive"] for r in recs if r["kind"] == kind])
        neg = np.array([x for r in recs for x in r["cad"]["negatives"][kind]])
        if len(pos) and len(neg):
            ths = np.unique(np.concatenate([[-1.0], pos, neg]))
            ax2.plot([(neg > t).mean() for t in ths], [(pos > t).mean() for t in ths], label=kind, marker=".")
    c = s["cad"]["all"]
    ax2.scatter([c["fpr"]], [c["tpr"]], color="k", zorder=3, label="chosen on validation")
    ax2.set_xlabel("false-positive rate (legitimate objects flagged)")
    ax2.set_ylabel("true-positive rate (successful attacks flagged)")
    ax2.set_title("CAD on the test scenes")
    ax2.legend()
    return save_figure(fig, path)

"""The AutoSpec reproduction: F1 against three baselines on four systems, verification, the flawed network."""

from __future__ import annotations

from tenfold.autospec.api import bench, verify_bench
from tenfold.autospec.bench import METHODS, BenchConfig, markdown, plot
from tenfold.core.benchkit import write_json
from tenfold.core.reproduce import Context, Row, register

CATCH = 0.2  # a flaw is caught when the share of region points breaking a covering spec rises this much


@register(
    "autospec", "AutoSpec: specifications for networks in learning-augmented systems, generated and verified"
)
def reproduce(ctx: Context) -> list[Row]:
    cfg = BenchConfig.quick() if ctx.quick else BenchConfig()
    result = bench(cfg, quiet=ctx.quiet)
    write_json(result, ctx.out_dir / "autospec_bench.json")
    (ctx.out_dir / "autospec_bench.md").write_text(markdown(result) + "\n")
    plot(result, ctx.plot_path("f1"))
    s = result["summary"]
    margins = {
        sys: x["f1_mean"]["autospec"] - max(x["f1_mean"][m] for m in METHODS if m != "autospec")
        for sys, x in s.items()
    }
    every_seed = sum(x["autospec_beats_all_every_seed"] for x in s.values())
    ver = {sys: x["verification"] for sys, x in s.items() if "verification" in x}
    decided = sum(v["verified"] + v["refuted_rechecked"] for v in ver.values())
    total = sum(v["specs"] for v in ver.values())

    # caught on a system: on every verified seed the generated specs' violated share rises by CATCH or
    # more and the hand-written specs' by less
    caught = [
        sys
        for sys, x in s.items()
        if "flaw_rise" in x
        and min(x["flaw_rise"]["autospec"]) >= CATCH
        and max(x["flaw_rise"]["hand-written"]) < CATCH
    ]
    return [*_spec_rows(cfg, s, margins, every_seed, ver, decided, total, caught), *_verifier_rows(ctx)]


def _verifier_rows(ctx: Context) -> list[Row]:
    """tenfold's verifier against plain Marabou on the competition-style instances (issue #30)."""
    from tenfold.autospec import verify_bench as vb

    cfg = vb.VerifyBenchConfig.quick() if ctx.quick else vb.VerifyBenchConfig()
    result = verify_bench(cfg, quiet=ctx.quiet)
    write_json(result, ctx.out_dir / "autospec_verify_bench.json")
    (ctx.out_dir / "autospec_verify_bench.md").write_text(vb.markdown(result) + "\n")
    vb.plot(result, ctx.plot_path("verify"))
    s = result["summary"]
    a = s["agreement"]
    n = len(result["instances"])
    return [
        Row(
            "verifier answers agree with plain Marabou wherever both decide (disagreements)",
            "every answer agrees with plain Marabou where it decides (issue)",
            "autospec_verify_disagreements",
            a["disagree"],
            0,
            higher_is_better=False,
            detail=f"both decide {a['both_decided']} of {n} competition-style instances; every tenfold "
            f"counterexample re-checked in onnxruntime: {s['all_rechecked']}",
        ),
        Row(
            "instances decided: tenfold minus plain Marabou, same time limit",
            "decides at least as many instances (issue)",
            "autospec_verify_decided_margin",
            s["decided"]["tenfold"] - s["decided"]["marabou"],
            0,
            detail=f"tenfold {s['decided']['tenfold']}, plain Marabou {s['decided']['marabou']} of {n} "
            f"({cfg.timeout_s} s limit each)",
        ),
        Row(
            "total verification time, plain Marabou / tenfold (2-core machine)",
            ">= 3x lower total time (issue)",
            "autospec_verify_time_ratio",
            s["time_ratio"],
            3.0,
            detail=f"{s['marabou']['seconds']:.1f} s vs {s['tenfold']['seconds']:.1f} s; against two plain Marabou "
            f"processes at once {s['time_ratio_vs_two_marabou_processes']:.2f}x",
        ),
    ]


def _spec_rows(cfg, s, margins, every_seed, ver, decided, total, caught) -> list[Row]:
    return [
        Row(
            "AutoSpec F1 above hand-written, grid and clustering specs (worst system, mean over seeds)",
            "AutoSpec outperforms all three",
            "autospec_f1_margin_worst_system",
            min(margins.values()),
            0.001,
            detail="; ".join(
                f"{k}: AutoSpec {s[k]['f1_mean']['autospec']:.3f}, best other +{v:.3f}"
                for k, v in margins.items()
            )
            + f"; best on every seed in {every_seed} of {len(s)} systems ({len(cfg.seeds)} seeds)",
        ),
        Row(
            "generated specs decided: verified, or refuted with a re-checked counterexample",
            "all (issue target)",
            "autospec_specs_decided_share",
            decided / total if total else float("nan"),
            1.0,
            detail="; ".join(
                f"{k}: {v['verified']} verified, {v['refuted_rechecked']} refuted, {v['unknown']} unknown, {v['seconds']:.2f} s"
                for k, v in ver.items()
            ),
        ),
        Row(
            "flawed network: generated specs catch it, hand-written ones miss it (systems)",
            "generated specs catch violations the hand-written ones miss (issue)",
            "flaw_caught_systems",
            len(caught),
            len([x for x in s.values() if "flaw" in x]),
            detail="rise in the violated share of region points, good -> flawed network, per seed: "
            + "; ".join(
                f"{k}: AutoSpec {'/'.join(f'{v:.2f}' for v in x['flaw_rise']['autospec'])}, hand-written "
                f"{'/'.join(f'{v:.2f}' for v in x['flaw_rise']['hand-written'])}"
                for k, x in s.items()
                if "flaw_rise" in x
            ),
        ),
    ]

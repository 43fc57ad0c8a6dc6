"""tenfold-base's rows: the probes of the shipped model against their targets."""

from __future__ import annotations

from tenfold.base.bench import TARGETS, BenchConfig, markdown, plot, run
from tenfold.core.benchkit import write_json
from tenfold.core.reproduce import Context, Row, register


@register(
    "base", "tenfold-base: the pretrained small LM (probes on held-out seeds)", artefacts=("tenfold-base",)
)
def reproduce(ctx: Context) -> list[Row]:
    cfg = BenchConfig.quick() if ctx.quick else BenchConfig()
    result = run(cfg)
    write_json(result, ctx.out_dir / "base_probes.json")
    (ctx.out_dir / "base_probes.md").write_text(markdown(result) + "\n")
    plot(result, ctx.plot_path("probes"))
    p, pc = result["probes"], cfg.probes
    losses = {k.removeprefix("loss/"): v for k, v in p.items() if k.startswith("loss/")}
    loss_detail = ", ".join(f"{k} {v:.2f}" for k, v in losses.items())
    arith = ", ".join(f"{k.removeprefix('arith ')} {v:.0%}" for k, v in p.items() if k.startswith("arith L"))
    return [
        Row(
            "copy a note's value 200 tokens back (exact match)",
            "issue: >= 95%",
            "base_copy_200",
            p["copy@200"],
            TARGETS["copy@200"],
            detail=f"n={pc.copy_n} per distance; at 50 tokens {p['copy@50']:.0%}",
        ),
        Row(
            "copy a note's value 800 tokens back (exact match)",
            "issue: >= 90%",
            "base_copy_800",
            p["copy@800"],
            TARGETS["copy@800"],
            detail=f"n={pc.copy_n}",
        ),
        Row(
            f"recall of {pc.recall_facts} facts from about 1K tokens",
            "issue: >= 90%",
            "base_recall_10_facts",
            p["recall"],
            TARGETS["recall"],
            detail=f"{pc.recall_episodes} episodes, {p['recall tokens']} tokens of context before the question",
        ),
        Row(
            "worked arithmetic, mean over levels L1-L6",
            "ours: >= 50%",
            "base_arith_mean",
            p["arith mean"],
            TARGETS["arith mean"],
            detail=f"n={pc.arith_n} per level: {arith}",
        ),
        Row(
            "chat replies well formed (text, then <|end|>)",
            "ours: >= 95%",
            "base_chat_valid",
            p["chat valid"],
            TARGETS["chat valid"],
            detail=f"exact reply {p['chat exact']:.0%} (n={pc.chat_n}); held-out loss per component: {loss_detail}",
        ),
    ]

"""`tenfold base ...`: probe tenfold-base (or any checkpoint), pretrain it, show its data mixture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, WorkersOpt, finish_bench

app = typer.Typer(
    help="tenfold-base: the pretrained small LM the LLM systems fine-tune from.", no_args_is_help=True
)


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option(help="tenfold-base, or a local checkpoint dir")] = "tenfold-base",
    quick: QuickOpt = False,
    over_training: Annotated[
        Path | None,
        typer.Option(
            help="a training run's folder, or a tenfold-base build folder (its stages in order): "
            "also probe its step-N checkpoints (quick probes)"
        ),
    ] = None,
    every: Annotated[int, typer.Option(help="with --over-training: every N-th checkpoint")] = 1,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Probe a model on held-out seeds: copy at 50/200/800 tokens, recall of 10 facts, arithmetic per
    level, chat format, held-out loss per mixture component."""
    from tenfold.base.bench import BenchConfig, markdown, plot, run
    from tenfold.base.probes import ProbeConfig
    from tenfold.core.errors import TenfoldError

    if every < 1:
        raise TenfoldError(f"every must be >= 1, got {every}")
    cfg = BenchConfig(
        model=model,
        probes=ProbeConfig.quick() if quick else ProbeConfig(),
        curve_dir=str(over_training) if over_training else None,
        curve_every=every,
        workers=workers,
    )
    result = run(cfg)
    finish_bench(result, markdown(result), json_path, plot_path, plot)


@app.command()
def pretrain(
    retrain: Annotated[bool, typer.Option(help="pretrain again even when cached")] = False,
) -> None:
    """Pretrain tenfold-base with its recipe into the user cache (resumes an interrupted run); the same
    as `tenfold artefacts build tenfold-base`."""
    from tenfold.base.api import pretrain as run_pretrain

    print(run_pretrain(retrain=retrain))


@app.command()
def mixture(
    docs: Annotated[int, typer.Option(help="documents to sample")] = 2000,
    seed: int = 0,
    show: Annotated[str | None, typer.Option(help="print one document of this component")] = None,
) -> None:
    """The pretraining mixture: each component's share of documents and of tokens (from a sample)."""
    from collections import Counter

    from tenfold.base.mixture import COMPONENTS, MIXTURE_VERSION, component_documents, documents, encode_doc
    from tenfold.core.errors import TenfoldError
    from tenfold.core.tokenizer import Tokenizer

    tok = Tokenizer.byte_level()
    if show is not None:
        d = component_documents(show, seed, 1)[0]
        print(tok.decode(encode_doc(tok, d)[0], skip_special_tokens=False))
        return
    if docs < 1:
        raise TenfoldError(f"docs must be >= 1, got {docs}")
    n, tokens = Counter(), Counter()
    for d in documents(seed, docs):
        n[d.component] += 1
        tokens[d.component] += len(encode_doc(tok, d)[0])
    total = sum(tokens.values())
    print(f"mixture {MIXTURE_VERSION}: {docs} documents, {total / docs:.0f} tokens each on average")
    for c in COMPONENTS:
        print(f"  {c:9s} {n[c] / docs:6.1%} of documents  {tokens[c] / total:6.1%} of tokens")

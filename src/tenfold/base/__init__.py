"""tenfold-base: one pretrained small Llama-architecture LM that tenfold's LLM systems fine-tune from,
as the papers start from Qwen or Llama. Pretrained here on CPU cores, on a generated mixture that
teaches copying, recall, lists, worked arithmetic, program traces, text games and the chat format.

    from tenfold.base import load, evaluate
    model, tok = load()                 # the shipped model (a standard Hugging Face checkpoint)
    evaluate()                          # the probes: copy at 50/200/800 tokens, recall, arithmetic, chat

Like `core`, `rl` and `envs`, this is a shared layer: systems may import it; it imports no system.
Entry points: `tenfold.base.api` (`load`, `evaluate`, `curve`, `pretrain`); CLI `tenfold base`; by
name anywhere a model is asked for: `--model tenfold-base`.
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.base.api": ["curve", "evaluate", "load", "pretrain"],
        "tenfold.base.mixture": ["MIXTURE_VERSION", "documents"],
        "tenfold.base.probes": ["ProbeConfig", "run_probes"],
        "tenfold.base.train": ["BaseRecipe"],
    },
)

__all__ = [
    "MIXTURE_VERSION",
    "BaseRecipe",
    "ProbeConfig",
    "curve",
    "documents",
    "evaluate",
    "load",
    "pretrain",
    "run_probes",
]

"""MARS: multimodal adaptive rank search for LoRA fine-tuning of multimodal LLMs (University of
Michigan and NVIDIA; arXiv 2603.00720).

MARS picks the LoRA rank pair (vision-encoder rank, LLM rank) with two fitted scaling laws instead of a
grid search: Law-T predicts each module's convergence time, pairs whose modules converge together are
kept, and Law-P's predicted perplexity chooses among them.

    from tenfold.mars import api
    res = api.search(api.SearchConfig(run=api.RunConfig(data_size=512)))

Entry points: `tenfold.mars.api` (`search`, `grid`, `finetune`, `bench`, `pretrained`); the pieces for
your own PEFT model in `tenfold.mars.lora` and `tenfold.mars.laws`; CLI `tenfold mars`.
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        # not `search`, `finetune`, `bench`: modules of the package have those names (use `api.search`)
        "tenfold.mars.api": ["RunConfig", "SearchConfig", "grid", "pretrained"],
        "tenfold.mars.laws": ["LawP", "LawT", "choose", "fit_law_p", "fit_law_t"],
        "tenfold.mars.lora": ["RankMismatchError", "check_ranks", "lora_config"],
    },
)

__all__ = [
    "LawP",
    "LawT",
    "RankMismatchError",
    "RunConfig",
    "SearchConfig",
    "check_ranks",
    "choose",
    "fit_law_p",
    "fit_law_t",
    "grid",
    "lora_config",
    "pretrained",
]

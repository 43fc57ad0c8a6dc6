"""The shared LM core: models, tokenizer, sampler, training, backends, server, reproduce framework."""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.core.backends": ["Backend", "Completion", "LocalBackend", "OpenAIBackend", "make_backend"],
        "tenfold.core.errors": ["CheckpointError", "ContextLengthError", "TenfoldError", "UnknownModelError"],
        "tenfold.core.models": ["PRESETS", "build_preset", "load_model", "save_model"],
        "tenfold.core.sampler": ["DecodeBatch", "Generation", "SamplingParams", "StepState", "generate"],
        "tenfold.core.tokenizer": ["Tokenizer"],
        "tenfold.core.train": ["TrainConfig", "train_lm"],
    },
)

__all__ = [
    "PRESETS",
    "Backend",
    "CheckpointError",
    "Completion",
    "ContextLengthError",
    "DecodeBatch",
    "Generation",
    "LocalBackend",
    "OpenAIBackend",
    "SamplingParams",
    "StepState",
    "TenfoldError",
    "Tokenizer",
    "TrainConfig",
    "UnknownModelError",
    "build_preset",
    "generate",
    "load_model",
    "make_backend",
    "save_model",
    "train_lm",
]

"""The shared LM core: models, tokenizer, sampler, training, backends, server, reproduce framework."""

from tenfold.core.backends import Backend, Completion, LocalBackend, OpenAIBackend, make_backend
from tenfold.core.errors import CheckpointError, ContextLengthError, TenfoldError, UnknownModelError
from tenfold.core.models import PRESETS, build_preset, load_model, save_model
from tenfold.core.sampler import DecodeBatch, Generation, SamplingParams, StepState, generate
from tenfold.core.tokenizer import Tokenizer
from tenfold.core.train import TrainConfig, train_lm

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

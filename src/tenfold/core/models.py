"""Model presets built from Hugging Face configs (no download), and checkpoint save/load.

Presets are Llama-style decoders (RMSNorm, RoPE, SwiGLU, tied embeddings) plus one Mixtral-style
sparse MoE. They start randomly initialised from a fixed seed; `tenfold.core.train` trains them on
generated data. A local directory holding `config.json` + safetensors weights (a tenfold checkpoint or
any Hugging Face causal-LM checkpoint) loads through the same `load_model` call.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, MixtralConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from tenfold.core.device import pick_device
from tenfold.core.errors import CheckpointError, UnknownModelError
from tenfold.core.io import atomic_write_text
from tenfold.core.tokenizer import HFTokenizer, Tokenizer, load_tokenizer


@dataclass(frozen=True)
class Preset:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    context: int = 32768
    experts: int = 0  # 0: dense Llama; >0: Mixtral-style MoE
    experts_per_token: int = 2
    note: str = ""


PRESETS: dict[str, Preset] = {
    "tiny": Preset(hidden=128, layers=4, heads=4, kv_heads=4, ffn=512, note="~1M params, dense"),
    "micro": Preset(
        hidden=128,
        layers=2,
        heads=4,
        kv_heads=4,
        ffn=512,
        note="~0.6M params, dense; tiny's width, half its depth",
    ),
    "small": Preset(hidden=256, layers=6, heads=8, kv_heads=8, ffn=1024, note="~6M params, dense"),
    "base": Preset(hidden=512, layers=8, heads=8, kv_heads=8, ffn=1792, note="~30M params, dense"),
    "moe-tiny": Preset(
        hidden=128, layers=2, heads=4, kv_heads=4, ffn=256, experts=4, note="~1M params, 4 experts, top-2"
    ),
}

META_FILE = "tenfold.json"
hf_logging.disable_progress_bar()  # our own progress bars only; loading a 1M-param model needs none
hf_logging.set_verbosity_error()


def preset_config(name: str, vocab_size: int) -> LlamaConfig | MixtralConfig:
    """The HF config of a preset for a tokenizer with `vocab_size` tokens."""
    if name not in PRESETS:
        raise UnknownModelError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}")
    p = PRESETS[name]
    tok = Tokenizer.byte_level()
    common = dict(
        vocab_size=vocab_size,
        hidden_size=p.hidden,
        intermediate_size=p.ffn,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.kv_heads,
        max_position_embeddings=p.context,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_id,
        eos_token_id=[tok.eos_id, tok.end_id],
        pad_token_id=tok.pad_id,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    )
    if p.experts:
        return MixtralConfig(**common, num_local_experts=p.experts, num_experts_per_tok=p.experts_per_token)
    return LlamaConfig(**common)


def build_preset(name: str, seed: int = 0) -> tuple[PreTrainedModel, Tokenizer]:
    """A freshly initialised preset model (same seed, same weights) and the byte-level tokenizer."""
    tok = Tokenizer.byte_level()
    cfg = preset_config(name, tok.vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    return model, tok


def load_model(
    name_or_path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, Tokenizer | HFTokenizer]:
    """Load a preset by name, or a checkpoint from a local directory. Returns (model, tokenizer) in eval mode.

    Nothing is downloaded: a name that is not a preset must be an existing local directory.
    """
    dev = pick_device(device)
    name = str(name_or_path)
    if name in PRESETS:
        model, tok = build_preset(name)
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise UnknownModelError(
                f"model {name!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a local checkpoint directory"
            )
        if not (path / "config.json").is_file():
            raise CheckpointError(f"checkpoint directory {str(path)!r} has no config.json")
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        except Exception as exc:  # transformers raises OSError/ValueError/KeyError variously
            raise CheckpointError(f"cannot load model weights from {str(path)!r}: {exc}") from exc
        tok = load_tokenizer(path)
        if isinstance(tok, HFTokenizer):
            gen_cfg = getattr(model, "generation_config", None)
            tok.add_stop_ids(
                getattr(gen_cfg, "eos_token_id", None) or getattr(model.config, "eos_token_id", None)
            )
    if dtype is not None:
        model = model.to(dtype)
    model.to(dev).eval()
    return model, tok


def save_model(model: PreTrainedModel, tokenizer: Tokenizer | HFTokenizer, path: str | Path, **meta) -> Path:
    """Save weights (safetensors), config and tokenizer.json to `path`; `meta` goes to tenfold.json."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save(path)
    if meta:
        atomic_write_text(path / META_FILE, json.dumps(meta, indent=2, default=str))
    return path


def model_name(name_or_path: str | Path) -> str:
    """A short display name: the preset name, or the checkpoint directory's name."""
    s = str(name_or_path)
    return s if s in PRESETS else Path(s).expanduser().resolve().name


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def context_length(model: PreTrainedModel) -> int:
    cfg = model.config
    return int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 2048))


def describe_presets() -> list[dict]:
    rows = []
    for name, p in PRESETS.items():
        model, _ = build_preset(name)
        rows.append({"name": name, "params": count_params(model), **asdict(p)})
    return rows

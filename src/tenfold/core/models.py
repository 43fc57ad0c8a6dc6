"""Model presets built from Hugging Face configs (no download), and checkpoint save/load.

Presets are Llama-style decoders (RMSNorm, RoPE, SwiGLU, tied embeddings) plus one Mixtral-style
sparse MoE. They start randomly initialised from a fixed seed; `tenfold.core.train` trains them on
generated data. A local directory holding `config.json` + safetensors weights (a tenfold checkpoint or
any Hugging Face causal-LM checkpoint) loads through the same `load_model` call.

Checkpoints are verified on load. `save_model` records the size and sha256 of every file in the directory
under "files" in `tenfold.json`, and `load_model` checks them before reading anything else. Any checkpoint
(recorded or not) is then refused when its tensors do not match its config (missing, unexpected, wrongly
shaped) or when a weight is NaN/Inf: each is a one-line `CheckpointError`, never a model with random or
garbage weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, MixtralConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from tenfold.core.device import pick_device
from tenfold.core.errors import CheckpointError, TenfoldError, UnknownModelError, one_line
from tenfold.core.io import atomic_write_text, file_sha256
from tenfold.core.presets import PRESETS
from tenfold.core.tokenizer import HFTokenizer, Tokenizer, load_tokenizer

META_FILE = "tenfold.json"
RECORD_KEY = "files"  # in META_FILE: {file name: {"size": bytes, "sha256": hex digest}}
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


def trained_model_dir(name: str, train: bool = False) -> Path:
    """Checkpoint directory of a trained model known by name (`tenfold.systems.TRAINED_MODELS`), such as
    tenfold-base: shipped or cached; missing, an error naming the build command (or, with `train`,
    trained now)."""
    return Path(_trained_module(name).model_dir(train=train))


def _trained_module(name: str):
    import importlib

    from tenfold.systems import TRAINED_MODELS

    if name not in TRAINED_MODELS:
        raise UnknownModelError(
            f"unknown trained model {name!r}; trained models are {sorted(TRAINED_MODELS)}"
        )
    return importlib.import_module(TRAINED_MODELS[name])


def trained_model_key(name: str) -> str:
    """The artefact key of a trained model known by name (changes when its recipe does)."""
    return _trained_module(name).model_key()


def trained_model_preset(name: str) -> str:
    """The preset (architecture) of a trained model known by name."""
    return _trained_module(name).describe()["preset"]


def known_model_names() -> list[str]:
    from tenfold.systems import TRAINED_MODELS

    return [*TRAINED_MODELS, *sorted(PRESETS)]


def load_model(
    name_or_path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, Tokenizer | HFTokenizer]:
    """Load a trained model by name (tenfold-base), an untrained preset by name, or a checkpoint from a
    local directory. Returns (model, tokenizer) in eval mode.

    Nothing is downloaded: a name that is neither a trained model nor a preset must be an existing local
    directory.
    """
    from tenfold.systems import TRAINED_MODELS

    dev = pick_device(device)
    name = str(name_or_path)
    if name in PRESETS:
        model, tok = build_preset(name)
    else:
        path = trained_model_dir(name) if name in TRAINED_MODELS else Path(name).expanduser()
        if not path.is_dir():
            raise UnknownModelError(
                f"model {name!r} is neither a trained model or preset ({', '.join(known_model_names())}) "
                "nor a local checkpoint directory"
            )
        if not (path / "config.json").is_file():
            raise CheckpointError(f"checkpoint directory {str(path)!r} has no config.json")
        verify_checkpoint_files(path)
        tok = load_tokenizer(path)
        try:
            model, info = AutoModelForCausalLM.from_pretrained(
                str(path),
                local_files_only=True,
                dtype=dtype or _config_dtype(path),
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # reported in `info` and refused below, with the names
            )
        except Exception as exc:  # transformers raises OSError/ValueError/KeyError variously
            raise CheckpointError(f"cannot load model weights from {str(path)!r}: {one_line(exc)}") from exc
        _check_tensor_names(path, info)
        if isinstance(tok, HFTokenizer):
            gen_cfg = getattr(model, "generation_config", None)
            tok.add_stop_ids(
                getattr(gen_cfg, "eos_token_id", None) or getattr(model.config, "eos_token_id", None)
            )
    if dtype is not None:
        model = model.to(dtype)
    model.to(dev).eval()
    if name not in PRESETS:
        _check_finite(path, model, dtype)
    return model, tok


def _config_dtype(path: Path) -> torch.dtype | None:
    """The dtype the checkpoint's config.json names. Weights stored narrower than that (the float16
    copies of shipped float32 models) are widened back to it; transformers alone would keep the
    stored dtype."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    name = cfg.get("dtype") or cfg.get("torch_dtype") if isinstance(cfg, dict) else None
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) else None


def save_model(model: PreTrainedModel, tokenizer: Tokenizer | HFTokenizer, path: str | Path, **meta) -> Path:
    """Save weights (safetensors), config and tokenizer.json to `path`; `meta` goes to tenfold.json.

    tenfold.json also records the size and sha256 of every file in the directory (under "files"), which
    `load_model` verifies. Files added to the directory afterwards (a trainer's optimizer state) are not
    in the record and not checked.
    """
    if RECORD_KEY in meta:
        raise TenfoldError(f"save_model: {RECORD_KEY!r} is reserved in {META_FILE} for the file record")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save(path)
    files = {
        f.name: {"size": f.stat().st_size, "sha256": file_sha256(f)}
        for f in sorted(path.iterdir())
        if f.is_file() and f.name != META_FILE and not f.name.startswith(".")
    }
    atomic_write_text(path / META_FILE, json.dumps({**meta, RECORD_KEY: files}, indent=2, default=str))
    return path


def verify_checkpoint_files(path: str | Path) -> bool:
    """Check every file in the checkpoint's record (tenfold.json "files") for presence, size and sha256.

    Returns False when the checkpoint has no record (saved before records existed, or not by tenfold);
    raises `CheckpointError` naming the first file that does not match.
    """
    path = Path(path)
    meta_file = path / META_FILE
    if not meta_file.is_file():
        return False
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has an unreadable {META_FILE}: {one_line(exc)}"
        ) from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} has a malformed {META_FILE}: not a JSON object")
    if RECORD_KEY not in meta:
        return False
    files = meta[RECORD_KEY]
    if not isinstance(files, dict) or not files:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has a malformed file record in {META_FILE}: expected a non-empty object"
        )
    for fname, rec in files.items():
        if not (_plain_file_name(fname) and isinstance(rec, dict)):
            raise CheckpointError(
                f"checkpoint {str(path)!r} has a malformed file record in {META_FILE}: entry {fname!r:.80}"
            )
        if not (isinstance(rec.get("size"), int) and isinstance(rec.get("sha256"), str)):
            raise CheckpointError(
                f"checkpoint {str(path)!r} has a malformed file record in {META_FILE}: "
                f"entry {fname!r:.80} needs an integer size and a sha256 string"
            )
    for fname, rec in files.items():  # cheap checks first, so a deleted or truncated file is named at once
        f = path / fname
        if not f.is_file():
            raise CheckpointError(
                f"checkpoint {str(path)!r} is missing {fname}, which was saved with it ({META_FILE} lists it)"
            )
        size = f.stat().st_size
        if size != rec["size"]:
            raise CheckpointError(
                f"checkpoint file {str(f)!r} has size {size} bytes but was saved with {rec['size']}: "
                "it was changed or truncated after saving"
            )
    for fname, rec in files.items():
        f = path / fname
        if file_sha256(f) != rec["sha256"].lower():
            raise CheckpointError(
                f"checkpoint file {str(f)!r} does not match the sha256 recorded in {META_FILE}: "
                "it is corrupted or was changed after saving"
            )
    return True


def _plain_file_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and Path(name).name == name
    )


def _names(keys, n: int = 3) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _check_tensor_names(path: Path, info: dict) -> None:
    """Refuse a checkpoint whose tensors are not exactly the model's (transformers' loading info).

    Tied weights (lm_head tied to the embedding) and keys a model declares ignorable are not reported by
    transformers, so they do not count here.
    """
    missing = [str(k) for k in info.get("missing_keys") or ()]
    unexpected = [str(k) for k in info.get("unexpected_keys") or ()]
    mismatched = sorted(info.get("mismatched_keys") or (), key=lambda m: str(m[0]))
    errors = [str(e) for e in info.get("error_msgs") or ()]
    if not (missing or unexpected or mismatched or errors):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing tensor(s): {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensor(s): {_names(unexpected)}")
    if mismatched:
        shown = [
            f"{m[0]} (shape {list(m[1])} in the checkpoint, {list(m[2])} in the model)"
            if len(m) >= 3
            else str(m[0])
            for m in mismatched
        ]
        parts.append(f"{len(mismatched)} tensor(s) with the wrong shape: {_names(shown, 2)}")
    if errors:
        parts.append(f"load errors: {one_line('; '.join(errors), 200)}")
    raise CheckpointError(
        f"checkpoint {str(path)!r} does not match its config.json: {'; '.join(parts)}; refusing to load it "
        "(the model would run with randomly initialised weights)"
    )


def _check_finite(path: Path, model: torch.nn.Module, dtype: torch.dtype | None) -> None:
    """Refuse NaN/Inf in any floating-point parameter or buffer (one pass, one reduction per tensor)."""
    for group in (model.named_parameters(), model.named_buffers()):
        for tname, t in group:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                as_dtype = f" (as {str(dtype).removeprefix('torch.')})" if dtype is not None else ""
                raise CheckpointError(
                    f"checkpoint {str(path)!r} has non-finite values (NaN or Inf) in {tname}{as_dtype}; "
                    "refusing to load it"
                )


def model_name(name_or_path: str | Path) -> str:
    """A short display name: the trained model's or preset's name, or the checkpoint directory's name."""
    from tenfold.systems import TRAINED_MODELS

    s = str(name_or_path)
    return s if s in PRESETS or s in TRAINED_MODELS else Path(s).expanduser().resolve().name


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def context_length(model: PreTrainedModel) -> int:
    cfg = model.config
    return int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 2048))

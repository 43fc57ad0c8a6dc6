"""The model presets: configs only, so listing them (`tenfold models`) imports neither torch nor
transformers. `core.models.build_preset` turns one into a model."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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


def param_count(p: Preset, vocab_size: int) -> int:
    """Parameters of a preset's model, from its config: tied embeddings (V x d), per layer the attention
    projections (q and o are d x d, k and v are d x d * kv_heads / heads), the SwiGLU MLP (three d x ffn
    matrices, per expert for MoE, plus the router's d x experts) and two RMSNorm weights, and the final norm."""
    d, head = p.hidden, p.hidden // p.heads
    attention = 2 * d * d + 2 * d * head * p.kv_heads
    mlp = 3 * d * p.ffn * (p.experts or 1) + d * p.experts
    return vocab_size * d + p.layers * (attention + mlp + 2 * d) + d


def describe_presets() -> list[dict]:
    from tenfold.core.tokenizer import Tokenizer

    vocab = Tokenizer.byte_level().vocab_size
    return [{"name": name, "params": param_count(p, vocab), **asdict(p)} for name, p in PRESETS.items()]


def describe_trained() -> list[dict]:
    """One row per trained model known by name (`tenfold.systems.TRAINED_MODELS`): its preset's row with
    the model's name, a note and where it would load from ("shipped", "cache" or "missing")."""
    import importlib

    from tenfold.systems import TRAINED_MODELS

    rows = {r["name"]: r for r in describe_presets()}
    out = []
    for name, module in TRAINED_MODELS.items():
        info = importlib.import_module(module).describe()
        out.append({**rows[info["preset"]], "name": name, "note": info["note"], "state": info["state"]})
    return out

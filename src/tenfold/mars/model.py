"""The tiny LLaVA: transformers' `LlavaForConditionalGeneration` with a small CLIP vision tower, a
two-layer GELU projector and a Llama language model (tenfold-base's weights, or a fresh `tiny` preset).

Inputs are `<|bos|>`, one image token per patch (16 for a 32x32 image in 8x8 patches), then the bytes
of "Q: <question>\\nA: " and the answer; the answer and a closing `<|eos|>` are the labels. The image
token is one id past the byte-level vocabulary, so text can never forge it.

Scoring needs one forward pass: the answer-token loss (perplexity is its exp), and exact-match
accuracy, which is the share of examples whose every answer token (and the eos) is the argmax under
the gold prefix: exactly the examples greedy decoding would answer right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tenfold.core.errors import CheckpointError, TenfoldError, one_line
from tenfold.core.train import IGNORE
from tenfold.mars.data import IMAGE_SIZE, Example

PATCH = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2


@dataclass(frozen=True)
class VisionSpec:
    """The CLIP vision tower's shape (a deliberately tiny ViT: 16 patches of 8x8)."""

    hidden: int = 64
    layers: int = 3
    heads: int = 4
    mlp: int = 256


def build(language: str = "tenfold-base", vision: VisionSpec = VisionSpec(), seed: int = 0):
    """(model, tokenizer): a fresh vision tower and projector (seeded) on a language model that is
    tenfold-base's weights (`language="tenfold-base"`) or a fresh `tiny` preset (`"scratch"`)."""
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    from tenfold.core.models import build_preset, load_model

    if language not in ("tenfold-base", "scratch"):
        raise TenfoldError(f"language must be 'tenfold-base' or 'scratch', got {language!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lm, tok = (
            load_model("tenfold-base", "cpu") if language == "tenfold-base" else build_preset("tiny", seed)
        )
        text = lm.config.to_dict()
        image_id = text["vocab_size"]
        text["vocab_size"] = image_id + 1
        vc = CLIPVisionConfig(
            hidden_size=vision.hidden,
            intermediate_size=vision.mlp,
            num_hidden_layers=vision.layers,
            num_attention_heads=vision.heads,
            image_size=IMAGE_SIZE,
            patch_size=PATCH,
            num_channels=3,
        )
        cfg = LlavaConfig(
            vision_config=vc,
            text_config=type(lm.config)(**text),
            image_token_index=image_id,
            vision_feature_layer=-1,  # the last layer: with 3 layers, LLaVA's -2 would leave one unused
            vision_feature_select_strategy="default",  # patch tokens only (no CLS)
            projector_hidden_act="gelu",
            tie_word_embeddings=True,
        )
        model = LlavaForConditionalGeneration(cfg)
        state = {k.removeprefix("model."): v for k, v in lm.state_dict().items() if k.startswith("model.")}
        emb = state.pop("embed_tokens.weight")
        grown = torch.cat([emb, emb.mean(0, keepdim=True)])  # the image token starts at the mean embedding
        missing = model.model.language_model.load_state_dict({**state, "embed_tokens.weight": grown})
        if missing.missing_keys or missing.unexpected_keys:
            raise TenfoldError(f"language model weights do not fit: {missing}")
        model.tie_weights()
    return model, tok


def image_token_id(model) -> int:
    return int(model.config.image_token_index)


def save(model, tok, path: str | Path, **meta) -> Path:
    from tenfold.core.models import save_model

    return save_model(model, tok, path, **meta)


def load(path: str | Path, device: str = "cpu"):
    """(model, tokenizer) of a tiny LLaVA checkpoint folder (weights widened to float32)."""
    from transformers import LlavaForConditionalGeneration

    from tenfold.core.models import verify_checkpoint_files
    from tenfold.core.tokenizer import load_tokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{str(path)!r} is not a model folder (no config.json)")
    verify_checkpoint_files(path)
    try:
        model = LlavaForConditionalGeneration.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32
        )
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError variously
        raise CheckpointError(f"cannot load a LLaVA model from {str(path)!r}: {one_line(exc)}") from exc
    return model.to(device).eval(), load_tokenizer(path)


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor


def encode(examples: Sequence[Example], tok, image_id: int) -> list[tuple[list[int], list[int], np.ndarray]]:
    """(ids, labels, image) per example; labels are IGNORE outside the answer and its eos."""
    out = []
    for ex in examples:
        prompt = [tok.bos_id, *([image_id] * IMAGE_TOKENS), *tok.encode(f"Q: {ex.question}\nA: ")]
        answer = [*tok.encode(ex.answer), tok.eos_id]
        out.append((prompt + answer, [IGNORE] * len(prompt) + answer, ex.image))
    return out


def collate(encoded: Sequence[tuple[list[int], list[int], np.ndarray]], pad_id: int) -> Batch:
    """Right-padded batch (the image tokens come first, at the same positions in every row)."""
    n = max(len(ids) for ids, _, _ in encoded)
    ids = torch.full((len(encoded), n), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), n), dtype=torch.long)
    for i, (x, y, _) in enumerate(encoded):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    pixels = torch.from_numpy(np.stack([img for _, _, img in encoded]))
    return Batch(ids, mask, labels, pixels)


def answer_losses(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per example: (sum of answer-token NLL, answer token count, all answer tokens argmax-correct)."""
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=batch.pixel_values
    ).logits[:, :-1]
    target = batch.labels[:, 1:]
    keep = target != IGNORE
    nll = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2).float(), target.clamp(min=0), reduction="none"
    ).masked_fill(~keep, 0.0)
    right = (logits.argmax(-1) == target) | ~keep
    return nll.sum(1), keep.sum(1), right.all(1)


def batch_loss(model, batch: Batch) -> torch.Tensor:
    """Mean NLL over the batch's answer tokens (the training loss)."""
    nll, count, _ = answer_losses(model, batch)
    return nll.sum() / count.sum().clamp(min=1)


@torch.no_grad()
def score(model, encoded, pad_id: int, batch_size: int = 64) -> dict:
    """{"loss": mean answer-token NLL, "ppl": exp(loss), "accuracy": exact-match share} over `encoded`."""
    was_training = model.training
    model.eval()
    nll = count = right = 0.0
    for i in range(0, len(encoded), batch_size):
        n, c, r = answer_losses(model, collate(encoded[i : i + batch_size], pad_id))
        nll, count, right = nll + n.sum().item(), count + c.sum().item(), right + r.sum().item()
    model.train(was_training)
    loss = nll / max(count, 1)
    return {"loss": loss, "ppl": float(np.exp(loss)), "accuracy": right / max(len(encoded), 1)}

"""A user's own Hugging Face checkpoint (not made by tenfold) loads through `load_model` and generates.

The checkpoint is built here offline: a small Qwen2-style model and a word-level HF tokenizer with a chat
template, saved with `save_pretrained` as any hub checkpoint would be.
"""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from tenfold.core.errors import CheckpointError
from tenfold.core.models import load_model
from tenfold.core.sampler import SamplingParams, generate
from tenfold.core.tokenizer import HFTokenizer

WORDS = [
    "<unk>",
    "<s>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "user",
    "assistant",
    "hello",
    "world",
    "the",
    "cat",
    "\n",
]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _save_checkpoint(path, tie_word_embeddings=False):
    raw = RawTokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = TEMPLATE
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(WORDS),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=2,
        tie_word_embeddings=tie_word_embeddings,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    return _save_checkpoint(tmp_path_factory.mktemp("hf") / "my-model")


def test_load_and_generate(hf_checkpoint):
    model, tok = load_model(hf_checkpoint)
    assert isinstance(tok, HFTokenizer) and type(model).__name__ == "Qwen2ForCausalLM"
    assert tok.encode("hello world") == [7, 8]
    assert tok.stop_ids == {2}
    out = generate(model, tok, [tok.encode("the cat")], SamplingParams(max_new_tokens=5, ignore_eos=True))[0]
    with torch.no_grad():  # independent greedy reference: argmax of full forwards
        ids = [9, 10]
        for _ in range(5):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert out.token_ids == ids[2:]


def test_chat_template_of_checkpoint(hf_checkpoint):
    _, tok = load_model(hf_checkpoint)
    ids = tok.apply_chat_template([{"role": "user", "content": "hello"}])
    # <|im_start|> user hello <|im_end|> <|im_start|> assistant (the word-level split drops newlines)
    assert ids == [3, 5, 7, 4, 3, 6]


def test_missing_tensor_is_refused(hf_checkpoint, tmp_path):
    """A user's checkpoint has no sha256 record, but a tensor it lacks is still refused (not random)."""
    path = shutil.copytree(hf_checkpoint, tmp_path / "broken")
    weights = load_file(str(path / "model.safetensors"))
    del weights["lm_head.weight"]  # untied: the model needs it
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="1 missing tensor.*lm_head.weight"):
        load_model(path)


def test_tied_lm_head_is_not_missing(tmp_path):
    path = _save_checkpoint(tmp_path / "tied", tie_word_embeddings=True)
    assert "lm_head.weight" not in load_file(str(path / "model.safetensors"))
    model, _ = load_model(path)
    assert model.lm_head.weight is model.model.embed_tokens.weight

"""A user's own Hugging Face checkpoint (not made by tenfold) loads through `load_model` and generates.

The checkpoint is built here offline: a small Qwen2-style model and a word-level HF tokenizer with a chat
template, saved with `save_pretrained` as any hub checkpoint would be.
"""

import pytest
import torch
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

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


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "my-model"
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
    )
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


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

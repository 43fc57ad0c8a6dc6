import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.core.errors import TenfoldError
from tenfold.core.tokenizer import SPECIAL_TOKENS, IncrementalDecoder, Tokenizer, load_tokenizer

TOK = Tokenizer.byte_level()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_any_unicode(text):
    ids = TOK.encode(text)
    assert TOK.decode(ids) == text
    # byte-level: one token per UTF-8 byte, ids = 8 + byte value (independent of the library)
    assert ids == [len(SPECIAL_TOKENS) + b for b in text.encode("utf-8")]


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_incremental_decoder_reassembles_text(text):
    dec = IncrementalDecoder(TOK)
    pieces = [dec.push(t) for t in TOK.encode(text)]
    pieces.append(dec.flush())
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces if "\ufffd" not in text)


def test_special_tokens_in_text_are_plain_bytes():
    ids = TOK.encode("<|user|>hi<|end|>")
    assert not set(ids) & TOK.special_ids
    assert TOK.decode(ids) == "<|user|>hi<|end|>"


def test_chat_template_structure():
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    ids = TOK.apply_chat_template(msgs)
    expected = [TOK.bos_id, TOK.role_ids["system"], *TOK.encode("be brief"), TOK.end_id]
    expected += [TOK.role_ids["user"], *TOK.encode("hi"), TOK.end_id, TOK.role_ids["assistant"]]
    assert ids == expected
    assert TOK.render_chat(msgs) == "<|bos|><|system|>be brief<|end|><|user|>hi<|end|><|assistant|>"
    assert TOK.apply_chat_template(msgs, add_generation_prompt=False) == expected[:-1]


def test_bad_chat_messages():
    with pytest.raises(TenfoldError, match="role"):
        TOK.apply_chat_template([{"role": "wizard", "content": "x"}])
    with pytest.raises(TenfoldError, match="dict"):
        TOK.apply_chat_template(["hello"])


def test_save_load_round_trip(tmp_path):
    path = TOK.save(tmp_path)
    assert path.name == "tokenizer.json"
    tok2 = load_tokenizer(tmp_path)
    assert isinstance(tok2, Tokenizer)
    text = "héllo 世界 🎉"
    assert tok2.encode(text) == TOK.encode(text)
    assert (tok2.pad_id, tok2.bos_id, tok2.eos_id, tok2.end_id) == (
        TOK.pad_id,
        TOK.bos_id,
        TOK.eos_id,
        TOK.end_id,
    )


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_token_bytes_concatenate_to_utf8(text):
    assert b"".join(TOK.token_bytes(t) for t in TOK.encode(text)) == text.encode("utf-8")

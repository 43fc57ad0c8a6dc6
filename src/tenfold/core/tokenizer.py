"""Byte-level tokenizer built with the `tokenizers` library, with chat roles as special tokens.

Ids 0..7 are special tokens; ids 8..263 are the 256 byte values in byte order, so any UTF-8 string
round-trips exactly and no text is ever out of vocabulary. Plain text never produces special tokens
(a user typing "<|assistant|>" gets bytes, not a role switch), so chat structure cannot be forged.

Chat template (one line per message, no newlines added):
    <|bos|><|system|>...<|end|><|user|>...<|end|><|assistant|>
The model ends its turn with <|end|>; <|eos|> ends a plain completion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizerModel
from tokenizers import decoders, models, pre_tokenizers

from tenfold.core.errors import CheckpointError, TenfoldError, one_line
from tenfold.core.io import atomic_write_text

SPECIAL_TOKENS = [
    "<|pad|>",
    "<|bos|>",
    "<|eos|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|tool|>",
    "<|end|>",
]
ROLES = ("system", "user", "assistant", "tool")
TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"


def _byte_to_unicode() -> dict[int, str]:
    """Map each byte to a printable unicode character (the byte-level BPE convention).

    Printable Latin-1 bytes map to themselves; the others are shifted above U+0100 so that every
    byte has a visible, whitespace-free symbol in the vocabulary.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _build_byte_level() -> HFTokenizerModel:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for b, ch in _byte_to_unicode().items():
        vocab[ch] = len(SPECIAL_TOKENS) + b
    tk = HFTokenizerModel(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(SPECIAL_TOKENS)
    return tk


class Tokenizer:
    """The tenfold tokenizer: `encode`/`decode` plus chat-template helpers.

    Wraps a `tokenizers.Tokenizer`; saved and loaded as `tokenizer.json`.
    """

    def __init__(self, tk: HFTokenizerModel):
        missing = [t for t in SPECIAL_TOKENS if tk.token_to_id(t) is None]
        if missing:
            raise CheckpointError(
                f"tokenizer lacks the special tokens {missing}; expected all of {SPECIAL_TOKENS}"
            )
        tk.encode_special_tokens = True  # text never turns into special tokens
        self._tk = tk
        self.pad_id = tk.token_to_id("<|pad|>")
        self.bos_id = tk.token_to_id("<|bos|>")
        self.eos_id = tk.token_to_id("<|eos|>")
        self.end_id = tk.token_to_id("<|end|>")
        self.role_ids = {r: tk.token_to_id(f"<|{r}|>") for r in ROLES}
        self.special_ids = frozenset(tk.token_to_id(t) for t in SPECIAL_TOKENS)

    # construction / persistence
    @classmethod
    def byte_level(cls) -> Tokenizer:
        return cls(_build_byte_level())

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(f"no tokenizer file at {str(path)!r}")
        return cls(HFTokenizerModel.from_file(str(path)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path.mkdir(parents=True, exist_ok=True)
            path = path / TOKENIZER_FILE
        return atomic_write_text(path, self._tk.to_str())

    @property
    def vocab_size(self) -> int:
        return self._tk.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    # text <-> ids
    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TenfoldError(f"encode expects a str, got {type(text).__name__}")
        return self._tk.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tk.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._tk.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tk.token_to_id(token)

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token (a lone byte of a multi-byte character stays that byte)."""
        n = len(SPECIAL_TOKENS)
        if n <= token_id < n + 256:
            return bytes([token_id - n])
        return self.decode([token_id], skip_special_tokens=False).encode()

    @property
    def stop_ids(self) -> frozenset[int]:
        """Token ids that end generation by default: end-of-text and end-of-turn."""
        return frozenset({self.eos_id, self.end_id})

    # chat
    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of a conversation; ends with `<|assistant|>` when `add_generation_prompt`."""
        ids = [self.bos_id]
        for i, msg in enumerate(messages):
            role, content = _check_message(msg, i)
            ids.append(self.role_ids[role])
            ids.extend(self.encode(content))
            ids.append(self.end_id)
        if add_generation_prompt:
            ids.append(self.role_ids["assistant"])
        return ids

    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The chat template as text (for display and logs)."""
        return self.decode(
            self.apply_chat_template(messages, add_generation_prompt), skip_special_tokens=False
        )


def _check_message(msg: dict, index: int) -> tuple[str, str]:
    if not isinstance(msg, dict) or "role" not in msg:
        raise TenfoldError(f"message {index} must be a dict with 'role' and 'content', got {msg!r:.80}")
    role, content = msg["role"], msg.get("content") or ""
    if role not in ROLES:
        raise TenfoldError(f"message {index} has role {role!r}; accepted roles are {list(ROLES)}")
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise TenfoldError(f"message {index} content must be a string, got {type(content).__name__}")
    return role, content


class HFTokenizer:
    """Adapter giving a local Hugging Face tokenizer (from a user's checkpoint) the `Tokenizer` interface."""

    def __init__(self, path: str | Path):
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        # A checkpoint whose tokenizer is a plain tokenizer.json must load as such: AutoTokenizer would pick
        # the class of the model type (e.g. Qwen2Tokenizer) and rebuild a different vocabulary from it.
        cls = AutoTokenizer
        try:
            cfg = json.loads((Path(path) / HF_TOKENIZER_CONFIG).read_text())
            if cfg.get("tokenizer_class") in ("TokenizersBackend", "PreTrainedTokenizerFast"):
                cls = PreTrainedTokenizerFast
        except (OSError, ValueError):
            pass
        try:
            self._tk = cls.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises many types here
            hint = "" if (Path(path) / TOKENIZER_FILE).is_file() else f" (it has no {TOKENIZER_FILE})"
            raise CheckpointError(
                f"cannot load a tokenizer from {str(path)!r}{hint}: {one_line(exc, 300)}"
            ) from exc
        special = set(self._tk.all_special_tokens)
        if not any(t not in special for t in self._tk.get_vocab()):
            # transformers builds an empty tokenizer from a bare tokenizer_config.json: every text would
            # encode to nothing, so refuse it instead of generating from empty prompts
            raise CheckpointError(
                f"the tokenizer in {str(path)!r} has no vocabulary beyond its special tokens: its vocabulary "
                f"files are missing; tenfold needs {TOKENIZER_FILE} (or {HF_TOKENIZER_CONFIG} + vocabulary files)"
            )
        self.eos_id = self._tk.eos_token_id
        self.bos_id = self._tk.bos_token_id
        self.pad_id = self._tk.pad_token_id if self._tk.pad_token_id is not None else (self.eos_id or 0)
        self.end_id = self.eos_id
        self.special_ids = frozenset(self._tk.all_special_ids)
        self.extra_stop_ids: set[int] = set()

    @property
    def vocab_size(self) -> int:
        return len(self._tk)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        return self._tk.encode(text, add_special_tokens=False)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._tk.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        return self.decode([token_id], skip_special_tokens=False).encode()

    def token_to_id(self, token: str) -> int | None:
        tid = self._tk.convert_tokens_to_ids(token)
        return None if tid == self._tk.unk_token_id else tid

    @property
    def stop_ids(self) -> frozenset[int]:
        ids = {self.eos_id} if self.eos_id is not None else set()
        return frozenset(ids | self.extra_stop_ids)

    def add_stop_ids(self, ids: int | Sequence[int] | None) -> None:
        """Extra end tokens, e.g. the checkpoint's generation_config eos ids (chat models end turns with them)."""
        if ids is not None:
            self.extra_stop_ids |= {int(i) for i in ([ids] if isinstance(ids, int) else ids)}

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
        msgs = [
            dict(zip(("role", "content"), _check_message(m, i), strict=True)) for i, m in enumerate(messages)
        ]
        if not getattr(self._tk, "chat_template", None):
            raise TenfoldError("this checkpoint's tokenizer has no chat template; use completions instead")
        out = self._tk.apply_chat_template(
            msgs, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
        )
        return [int(t) for t in out]

    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        return self.decode(
            self.apply_chat_template(messages, add_generation_prompt), skip_special_tokens=False
        )

    def save(self, path: str | Path) -> Path:
        self._tk.save_pretrained(str(path))
        return Path(path)


def load_tokenizer(path: str | Path) -> Tokenizer | HFTokenizer:
    """Load the tokenizer of a checkpoint directory: tenfold's own, else the checkpoint's HF tokenizer."""
    path = Path(path)
    tok_file = path / TOKENIZER_FILE if path.is_dir() else path
    if path.is_dir() and not tok_file.is_file() and not (path / HF_TOKENIZER_CONFIG).is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} has no {TOKENIZER_FILE} (or {HF_TOKENIZER_CONFIG} + vocabulary files); "
            "tenfold needs the tokenizer the model was trained with: copy it into the directory "
            "(save_model writes it)"
        )
    if tok_file.is_file():
        try:
            data = json.loads(tok_file.read_text())
            added = {t["content"] for t in data.get("added_tokens", [])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"unreadable tokenizer file {str(tok_file)!r}: {exc}") from exc
        if set(SPECIAL_TOKENS) <= added:
            return Tokenizer.from_file(tok_file)
    return HFTokenizer(path)


class IncrementalDecoder:
    """Turns a growing token list into text deltas, holding back incomplete UTF-8 sequences.

    Used for streaming and for stop-string checks: `push(token)` returns the newly stable text.
    """

    def __init__(self, tokenizer: Tokenizer | HFTokenizer, skip_special_tokens: bool = True):
        self.tok = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the window re-decoded each step
        self._read = 0  # end of the text already emitted
        self.text = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        done = self.tok.decode(self.ids[self._prefix : self._read], self.skip)
        full = self.tok.decode(self.ids[self._prefix :], self.skip)
        if len(full) > len(done) and not full.endswith("\ufffd"):
            delta = full[len(done) :]
            self._prefix, self._read = self._read, len(self.ids)
            self.text += delta
            return delta
        return ""

    def flush(self) -> str:
        """Emit whatever is held back (a truncated UTF-8 sequence decodes to U+FFFD)."""
        done = self.tok.decode(self.ids[self._prefix : self._read], self.skip)
        full = self.tok.decode(self.ids[self._prefix :], self.skip)
        delta = full[len(done) :]
        self._prefix = self._read = len(self.ids)
        self.text += delta
        return delta

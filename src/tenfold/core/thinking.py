"""The token-level thinking intervention (TTI) of T2PO (Wang et al., arXiv 2605.02178): cut a model's
thinking when its uncertainty stops moving.

At every decode step t of a sequence, with p_t the softmax of the raw logits, H_t its entropy (nats)
and |V| the vocabulary size, the uncertainty signal is

    M_t = alpha * max_v log p_t(v) + (1 - alpha) * (1 - H_t / log|V|)        (alpha = 0.6)

so M_t lies in [-alpha log|V|, 1 - alpha]. A stagnation counter grows by one when |M_t - M_{t-1}| <= eps
and drops to 0 otherwise (the first step has no M_{t-1}: the counter stays 0). When it reaches
`patience`, a sequence inside thinking (its prompt + generated text has an unclosed `<think>`) gets the
close tag `</think>` forced, then samples normally again; a sequence outside thinking is ended. A hard
budget also forces the close tag once `budget` tokens were generated inside thinking. Nothing but the
close tag (or the end) is ever injected. Paper values: eps = 1e-4, patience = 20, budget = 200.

Deviation from the paper: there the close tag is one token (Qwen3's `</think>`); here it is forced as
the tokenizer's encoding of the tag, one token per step, in order, so the byte-level tokenizer's
8-byte `</think>` takes 8 steps (the state machine pauses while it is forced). A one-token tag behaves
as in the paper.

One state machine (`CutoffMachine`, fed one M_t at a time), two thin front-ends sharing it:
`ThinkingHook` for `tenfold.core.sampler.generate` / the server engine, and `ThinkingLogitsProcessor`
for Hugging Face `model.generate`. Both keep one machine per sequence and report a `ThinkingTrace`
(the M_t of each generated token, thinking tokens, why and where it cut) and T2PO's turn score, the
mean M_t over the generated tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor

from tenfold.core.errors import TenfoldError
from tenfold.core.sampling import StepState

STOP = "stop"  # a CutoffMachine action: end the sequence (an int action is a token to force)


def uncertainty_signal(logits: torch.Tensor, alpha: float = 0.6) -> torch.Tensor:
    """M_t for every row of `logits` (..., vocab): alpha * max log p + (1 - alpha) * (1 - H / log|V|).

    Masked tokens (-inf logits) have p = 0 and add nothing to the entropy (0 * log 0 := 0, where plain
    `p * log p` would give NaN); a row with no finite logit at all has no distribution and gives NaN."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    plogp = torch.where(logp > -math.inf, logp.exp() * logp, torch.zeros_like(logp))
    entropy = -plogp.sum(-1)
    return alpha * logp.max(-1).values + (1 - alpha) * (1 - entropy / math.log(logits.shape[-1]))


@dataclass
class ThinkingCutoff:
    """Configuration of the intervention. `cut=False` only records M_t (turn scores without the cut);
    `min_position`: M_t is recorded, and the stagnation counter runs, from this generated token on;
    `budget=None`: no hard budget. `end_outside=False` never ends a sequence: the counter runs only
    inside thinking (restarting at 0 whenever the sequence is outside it), so the intervention only
    ever closes thinking. The paper ends the answer too (True); for a byte-level agent whose answer is a
    short action, near-certain bytes make flat stretches of M_t that would end it half-written.
    `reset_at_tags=True` restarts the counter whenever the sequence enters or leaves thinking, so a
    flat end of thinking does not carry into the answer: an answer is ended only after `patience` flat
    steps of its own (longer than any valid short answer), while a degenerate answer still is."""

    alpha: float = 0.6
    eps: float = 1e-4
    patience: int = 20
    budget: int | None = 200
    open_tag: str = "<think>"
    close_tag: str = "</think>"
    cut: bool = True
    min_position: int = 0
    end_outside: bool = True
    reset_at_tags: bool = False

    def validate(self) -> ThinkingCutoff:
        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def count(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not number(self.alpha) or not 0.0 <= self.alpha <= 1.0:
            raise TenfoldError(f"thinking cutoff alpha must be a number in [0, 1], got {self.alpha!r}")
        if not number(self.eps) or self.eps < 0:
            raise TenfoldError(f"thinking cutoff eps must be a finite number >= 0, got {self.eps!r}")
        if not count(self.patience) or self.patience < 1:
            raise TenfoldError(f"thinking cutoff patience must be an integer >= 1, got {self.patience!r}")
        if self.budget is not None and (not count(self.budget) or self.budget < 0):
            raise TenfoldError(f"thinking cutoff budget must be an integer >= 0 or None, got {self.budget!r}")
        if not count(self.min_position) or self.min_position < 0:
            raise TenfoldError(
                f"thinking cutoff min_position must be an integer >= 0, got {self.min_position!r}"
            )
        for name in ("open_tag", "close_tag"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TenfoldError(
                    f"thinking cutoff {name} must be a non-empty string, got {getattr(self, name)!r}"
                )
        if self.open_tag in self.close_tag or self.close_tag in self.open_tag:
            raise TenfoldError(
                f"thinking cutoff tags must not contain each other, got {self.open_tag!r} and {self.close_tag!r}"
            )
        for name in ("cut", "end_outside", "reset_at_tags"):
            if not isinstance(getattr(self, name), bool):
                raise TenfoldError(
                    f"thinking cutoff {name} must be true or false, got {getattr(self, name)!r}"
                )
        return self


@dataclass
class ThinkingTrace:
    """What the intervention saw and did to one sequence.

    `signals[k]` is M_t of the step that chose generated token `min_position + k`, forced close-tag steps
    included; a step at which the hook ended the sequence chose no token and adds no signal (the HF
    processor forces the end-of-sequence token there instead, and records that step's M_t for it).
    `think_tokens`: tokens the model generated inside thinking (forced close-tag tokens not counted).
    `cut_reason` ("stagnation" / "budget" / None) and `cut_at` (the number of generated tokens before
    it) describe the first intervention; `ended` says whether the hook ended the sequence. `forced`: the
    generated-token positions whose token the hook forced (the close tag's), e.g. to mask from a loss."""

    signals: list[float] = field(default_factory=list)
    forced: list[int] = field(default_factory=list)
    think_tokens: int = 0
    cut_reason: str | None = None
    cut_at: int | None = None
    ended: bool = False


class _TagScanner:
    """Whether a growing byte stream is inside thinking: the last tag seen is the open tag."""

    def __init__(self, open_tag: str, close_tag: str, prompt: bytes):
        self.open, self.close = open_tag.encode(), close_tag.encode()
        self.keep = max(len(self.open), len(self.close)) - 1  # enough to see a tag split across tokens
        self.inside, self.tail = False, b""
        self.push(prompt)

    def push(self, data: bytes) -> bool:
        buf, old = self.tail + data, len(self.tail)
        # only tags ending in the new bytes are new (the tail was scanned before); the later one wins
        o, c = buf.rfind(self.open), buf.rfind(self.close)
        o = o if o >= 0 and o + len(self.open) > old else -1
        c = c if c >= 0 and c + len(self.close) > old else -1
        if o >= 0 or c >= 0:
            self.inside = o > c
        self.tail = buf[-self.keep :] if self.keep else b""
        return self.inside


class CutoffMachine:
    """The TTI state machine of one sequence, driven one decode step at a time: `step(m)` takes that
    step's M_t and returns None (sample normally), a token id to force, or `STOP`. Every step emits one
    token except a `STOP`; `saw(token_bytes)` tells it the text of tokens emitted since (to follow the
    think tags), and `inside` may be set directly when no tokenizer is involved (tests)."""

    def __init__(
        self,
        cfg: ThinkingCutoff,
        close_ids: Sequence[int],
        inside: bool = False,
        scanner: _TagScanner | None = None,
    ):
        self.cfg, self.close_ids = cfg, list(close_ids)
        self.scanner = scanner
        self.inside = scanner.inside if scanner is not None else inside
        self.was_inside = self.inside
        self.trace = ThinkingTrace()
        self.position = 0  # generated tokens so far
        self.prev: float | None = None  # the previous counted M_t
        self.still = 0  # the stagnation counter
        self.closing: list[int] = []  # close-tag tokens still to force, one per step

    def saw(self, data: bytes) -> None:
        if self.scanner is not None:
            self.inside = self.scanner.push(data)

    def step(self, m: float, stop_emits_token: bool = False) -> int | str | None:
        cfg, t, pos = self.cfg, self.trace, self.position
        counted = pos >= cfg.min_position
        if self.closing:  # mid close tag: keep forcing it; the counter restarted at the cut
            t.forced.append(pos)
            self._record(m, counted)
            self.prev = m if counted else self.prev
            return self.closing.pop(0)
        if counted:  # stagnation: |M_t - M_{t-1}| <= eps (NaN compares false: a reset)
            self.still = self.still + 1 if self.prev is not None and abs(m - self.prev) <= cfg.eps else 0
            self.prev = m
            if not self.inside and not cfg.end_outside:
                self.still = 0  # only thinking is ever cut: outside it nothing accumulates
            if cfg.reset_at_tags and self.inside != self.was_inside:
                self.still = 0  # a flat run of thinking does not carry into the answer (or back)
        self.was_inside = self.inside
        reason = None
        if cfg.cut and self.inside and cfg.budget is not None and t.think_tokens >= cfg.budget:
            reason = "budget"
        elif cfg.cut and self.still >= cfg.patience:
            reason = "stagnation"
        if reason is not None:
            self.still = 0
            if t.cut_reason is None:
                t.cut_reason, t.cut_at = reason, pos
            if not self.inside:  # nothing left to truncate but the answer's tail: end the sequence
                t.ended = True
                if stop_emits_token:
                    self._record(m, counted)
                return STOP
            self.closing = list(self.close_ids)
            t.forced.append(pos)
            self._record(m, counted)
            return self.closing.pop(0)
        if self.inside:
            t.think_tokens += 1
        self._record(m, counted)
        return None

    def _record(self, m: float, counted: bool) -> None:
        if counted:
            self.trace.signals.append(float(m))
        self.position += 1


def _token_bytes(tokenizer, ids: Sequence[int]) -> bytes:
    """The text of `ids` as bytes (exact per byte for tenfold's tokenizers; tags are what matters)."""
    if hasattr(tokenizer, "token_bytes"):
        return b"".join(tokenizer.token_bytes(int(t)) for t in ids)
    return tokenizer.decode(list(ids), skip_special_tokens=False).encode()


def _encode(tokenizer, text: str) -> list[int]:
    try:  # transformers tokenizers would add BOS without this
        return list(tokenizer.encode(text, add_special_tokens=False))
    except TypeError:  # tenfold's Tokenizer.encode takes the text only
        return list(tokenizer.encode(text))


class _Cutoffs:
    """One `CutoffMachine` per sequence, keyed by an index, and what both front-ends report."""

    def __init__(self, tokenizer, cfg: ThinkingCutoff | None = None):
        self.tok, self.cfg = tokenizer, (cfg or ThinkingCutoff()).validate()
        self.close_ids = _encode(tokenizer, self.cfg.close_tag)
        if not self.close_ids:
            raise TenfoldError(f"the tokenizer encodes the close tag {self.cfg.close_tag!r} to no tokens")
        self.machines: dict[int, CutoffMachine] = {}

    def reset(self) -> None:
        """Forget every sequence (the front-ends also start a sequence afresh when they see a new one)."""
        self.machines.clear()

    def _new(self, prompt_ids: Sequence[int]) -> CutoffMachine:
        prompt = self.tok.decode([int(t) for t in prompt_ids], skip_special_tokens=False).encode()
        scanner = _TagScanner(self.cfg.open_tag, self.cfg.close_tag, prompt)
        return CutoffMachine(self.cfg, self.close_ids, scanner=scanner)

    def trace(self, index: int) -> ThinkingTrace:
        if index not in self.machines:
            raise TenfoldError(
                f"no sequence {index} seen by this thinking cutoff; seen: {sorted(self.machines)}"
            )
        return self.machines[index].trace

    def turn_score(self, index: int) -> float:
        """T2PO's turn score: mean M_t over the sequence's generated tokens (NaN when there are none)."""
        s = self.trace(index).signals
        return math.fsum(s) / len(s) if s else math.nan

    def report(self, index: int) -> dict:
        """The trace as JSON-ready fields (the server's `tenfold.thinking` extension of a choice)."""
        t, score = self.trace(index), self.turn_score(index)
        return {
            "cut": t.cut_reason,
            "cut_at": t.cut_at,
            "ended": t.ended,
            "thinking_tokens": t.think_tokens,
            "turn_score": None if math.isnan(score) else score,
        }


def _signals(state: StepState, alpha: float) -> list[float]:
    """M_t of every row, computed once per step and shared by every hook with the same alpha (the
    server runs one hook per request over one batch)."""
    cache = state.__dict__.setdefault("_thinking_signals", {})
    if alpha not in cache:
        cache[alpha] = uncertainty_signal(state.logits, alpha).tolist()
    return cache[alpha]


class ThinkingHook(_Cutoffs):
    """The intervention as a `generate(..., hook=)` hook: `hook(state)` handles every row, `hook.step(
    state, i)` one row (the engine's per-request hooks). State is keyed by `seqs[i].index`.

    No state leaks across generate calls: a sequence is started afresh when its index comes with another
    `SeqState` object than before or with fewer tokens than already seen (a new call), so reuse works
    even without `reset()`; `reset()` also drops the traces of the previous call."""

    def __init__(self, tokenizer, cfg: ThinkingCutoff | None = None):
        super().__init__(tokenizer, cfg)
        self._owners: dict[int, tuple[object, int]] = {}  # index -> (its SeqState, tokens fed so far)

    def reset(self) -> None:
        super().reset()
        self._owners.clear()

    def __call__(self, state: StepState) -> None:
        for i in range(len(state.seqs)):
            self.step(state, i)

    def step(self, state: StepState, i: int) -> None:
        s = state.seqs[i]
        owner, fed = self._owners.get(s.index, (None, 0))
        if owner is not s or fed > len(s.token_ids):
            self.machines[s.index], fed = self._new(s.prompt_ids), 0
        machine = self.machines[s.index]
        machine.saw(_token_bytes(self.tok, s.token_ids[fed:]))
        self._owners[s.index] = (s, len(s.token_ids))
        action = machine.step(_signals(state, self.cfg.alpha)[i])
        if action == STOP:
            state.stop(i)  # finish_reason "hook"
        elif action is not None:
            state.force(i, action)


class ThinkingLogitsProcessor(_Cutoffs, LogitsProcessor):
    """The intervention for any Hugging Face model: `model.generate(..., logits_processor=[proc])`.

    A forced token wins by setting every other score to -inf; ending a sequence forces `eos_token_id`
    (default: the tokenizer's). State is keyed by batch row. A call whose input is not the previous
    one plus a token starts a new generation (fresh state). M_t is computed from the scores this
    processor receives: transformers runs its own processors (temperature, top-k/top-p when sampling,
    repetition penalty) before custom ones, so M_t is that of the raw logits only with greedy decoding
    or neutral settings. One row per sequence: not for beam search."""

    def __init__(self, tokenizer, cfg: ThinkingCutoff | None = None, eos_token_id: int | None = None):
        super().__init__(tokenizer, cfg)
        self.eos_id = eos_token_id if eos_token_id is not None else getattr(tokenizer, "eos_token_id", None)
        if self.eos_id is None:
            self.eos_id = getattr(tokenizer, "eos_id", None)
        if self.eos_id is None:
            raise TenfoldError("ThinkingLogitsProcessor needs an eos_token_id (the tokenizer has none)")
        self._last: torch.Tensor | None = None  # the input ids of the last call

    def reset(self) -> None:
        super().reset()
        self._last = None

    def _continues(self, input_ids: torch.Tensor) -> bool:
        """Whether `input_ids` is the last call's input plus one token per row (else a new generation)."""
        last = self._last
        return (
            last is not None
            and input_ids.shape == (last.shape[0], last.shape[1] + 1)
            and torch.equal(input_ids[:, :-1], last)
        )

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = input_ids.shape[0]
        if not self._continues(input_ids):
            self.reset()
            self.machines = {b: self._new(input_ids[b].tolist()) for b in range(rows)}
        else:
            last = input_ids[:, -1].tolist()
            for b in range(rows):
                self.machines[b].saw(_token_bytes(self.tok, [last[b]]))
        self._last = input_ids
        signals = uncertainty_signal(scores, self.cfg.alpha).tolist()
        for b in range(rows):
            action = self.machines[b].step(signals[b], stop_emits_token=True)
            if action is not None:
                token = self.eos_id if action == STOP else action
                scores[b] = -math.inf
                scores[b, token] = 0.0
        return scores

"""Turn-level dynamic sampling (TDS) and the T2PO turn generator that runs it with the thinking cut-off.

T2PO (Wang et al., arXiv 2605.02178), as its code does it. A turn's score is the mean uncertainty
signal M_t over the turn's generated tokens (`tenfold.core.thinking`). From the second turn of an
episode on, a turn whose score moved only a little from the previous turn's,

    0 < |score_k - score_{k-1}| < eta        (eta = 0.3, hard-coded in the paper's code)

made negligible exploration progress and is generated again, at most `max_try` = 2 times; each new
attempt replaces the previous one, better or not (the code's behaviour). Training rollouts only.

If a generation lands in the band with probability q, independently, a turn costs 1 + q + q^2
generations on average (at most 1 + max_try); `TurnStats` counts what it cost.

`T2POTurns` is a `tenfold.rl.multiturn.TurnGenerator`; its flags give the benchmark's arms: no cut and
no resampling (GiGPO, turn scores still recorded), the cut only, resampling only, both (T2PO).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tenfold.core.errors import TenfoldError
from tenfold.core.sampler import generate
from tenfold.core.thinking import ThinkingCutoff, ThinkingHook
from tenfold.rl.multiturn import TurnOutput, turn_params

ETA = 0.3
MAX_TRY = 2


def in_band(score: float, previous: float | None, eta: float = ETA) -> bool:
    """TDS's resampling test: a second-or-later turn whose score changed by more than 0, less than eta."""
    if previous is None or math.isnan(score) or math.isnan(previous):
        return False
    return 0 < abs(score - previous) < eta


@dataclass
class TurnStats:
    """What resampling cost: turns generated, how many were eligible (not first turns), how many
    generations landed in the band, and regenerations spent."""

    turns: int = 0
    eligible: int = 0
    first_in_band: int = 0  # eligible turns whose first generation was in the band (estimates q)
    regenerations: int = 0

    @property
    def q(self) -> float:
        return self.first_in_band / self.eligible if self.eligible else 0.0

    @property
    def generations_per_turn(self) -> float:
        return 1 + self.regenerations / self.turns if self.turns else 1.0

    def as_dict(self) -> dict:
        q = self.q
        return {
            "turns": self.turns,
            "eligible": self.eligible,
            "q": q,
            "regenerations": self.regenerations,
            "generations_per_turn": self.generations_per_turn,
            # the brief's expectation per eligible turn, and the measured cost per eligible turn
            "expected_per_eligible": 1 + q + q * q,
            "measured_per_eligible": 1 + self.regenerations / self.eligible if self.eligible else 1.0,
        }


@dataclass
class T2POTurns:
    """Generate one turn per prompt: sampling with the thinking hook (`cutoff.cut` decides whether it
    intervenes or only records M_t), then TDS when `resample` is on."""

    cutoff: ThinkingCutoff = field(default_factory=lambda: ThinkingCutoff(cut=False, budget=None))
    resample: bool = False
    eta: float = ETA
    max_try: int = MAX_TRY
    temperature: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 256
    # the paper's code trains on the forced close-tag tokens like sampled ones; False masks them from
    # the loss (they were never sampled, so their log-probability under the policy can be near 0)
    train_forced: bool = True
    stats: TurnStats = field(default_factory=TurnStats)

    def __post_init__(self):
        self.cutoff.validate()
        if self.eta <= 0 or self.max_try < 0 or self.max_new_tokens < 1:
            raise TenfoldError(f"need eta > 0, max_try >= 0, max_new_tokens >= 1; got {self}")

    def _sample(self, model, tok, prompts: list[list[int]], seed: int) -> list[TurnOutput]:
        hook = ThinkingHook(tok, self.cutoff)  # a fresh hook per call: no state carried between turns
        params = turn_params(len(prompts), self.max_new_tokens, self.temperature, seed)
        gens = generate(model, tok, prompts, params, hook=hook, batch_size=self.batch_size)
        out = []
        for i, g in enumerate(gens):
            trace = hook.trace(i)
            mask = None
            if not self.train_forced and trace.forced:
                forced = set(trace.forced)
                mask = [0 if k in forced else 1 for k in range(len(g.token_ids))]
            out.append(
                TurnOutput(
                    g.token_ids, g.text, mask, hook.turn_score(i), trace.think_tokens, trace.cut_reason
                )
            )
        return out

    def __call__(self, model, tok, prompts, prev_scores, seed) -> list[TurnOutput]:
        outs = self._sample(model, tok, prompts, seed)
        self.stats.turns += len(outs)
        eligible = [i for i, p in enumerate(prev_scores) if p is not None]
        self.stats.eligible += len(eligible)
        self.stats.first_in_band += sum(in_band(outs[i].score, prev_scores[i], self.eta) for i in eligible)
        if not self.resample:
            return outs
        for attempt in range(1, self.max_try + 1):
            redo = [i for i in eligible if in_band(outs[i].score, prev_scores[i], self.eta)]
            if not redo:
                break
            fresh = self._sample(model, tok, [prompts[i] for i in redo], seed * 31 + attempt)
            for i, new in zip(redo, fresh, strict=True):
                new.generations = outs[i].generations + 1
                outs[i] = new  # replaces the previous attempt, better or not
            self.stats.regenerations += len(redo)
        return outs

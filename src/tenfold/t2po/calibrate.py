"""Calibrating the thinking cut-off's eps and patience for our vocabulary and thinking lengths.

The paper's eps = 1e-4 and patience = 20 fit Qwen3 (|V| ~ 152K, thinking of hundreds of tokens). Our
agent is byte-level (|V| = 264, so M_t lies in [-3.35, 0.4]) and thinks in tens of bytes. So we measure
instead of copying: the cold-start agent plays training games with the cut off (M_t recorded only), and
every thinking token is labelled by what the agent wrote there: *filler* (the repetitive preamble the
cold start taught it, "hmm, hmm, ...") or *reasoning* (from "came from" / "so:" to `</think>`). The
stagnation machine is then replayed on the recorded signals for each (eps, patience) on a grid:

- filler cut: a turn with filler is cut inside its filler (tokens saved: the rest of its thinking);
- false cut: a turn is cut inside its reasoning (the cut would lose it);
- false stop: the counter reaches patience outside thinking (while `<think>` is written, or in the
  action): the hook ends the reply there. Byte-level actions are near-certain, flat stretches of M_t,
  so a short patience ends them half-written; the paper's one-token tags and words rarely are.

Replaying on recorded signals is exact up to the first cut, which is all that is scored. A false cut
is not always a loss (the action may already be decided), so the grid only proposes candidates (its
most saving setting at several caps on false cuts); each is then played, and the choice is the one
with the fewest thinking tokens whose success stays within `tolerance` of the uncut agent's.

The same traces set TDS's eta: the paper's 0.3 is hard-coded for Qwen3's M_t range [-7.2, 0.4]; our
turn scores sit in a narrow band near the top of [-3.35, 0.4], so nearly every change is below 0.3
(q ~ 1, three generations per turn). eta is set to the quantile of the measured changes that puts a
share `q_target` (0.25) of the turns in the band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tenfold.core.sampler import generate
from tenfold.core.thinking import ThinkingCutoff, ThinkingHook
from tenfold.rl.multiturn import TurnOutput, episode_metrics, run_episodes, turn_params
from tenfold.t2po.agent import CLOSE, OPEN, ThinkFormat
from tenfold.t2po.arms import make_env
from tenfold.t2po.resample import ETA, T2POTurns, in_band

EPS_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
PATIENCE_GRID = (3, 4, 6, 8, 12, 16, 20)
REASONING_MARKS = ("came from", "so:")


@dataclass
class Trace:
    text: str
    signals: list[float]
    prev_score: float | None
    score: float


@dataclass
class RecordingTurns:
    """A turn generator that samples with M_t recorded (never cut) and keeps every turn's trace."""

    temperature: float = 1.0
    max_new_tokens: int = 256
    traces: list[Trace] = field(default_factory=list)

    def __call__(self, model, tok, prompts, prev_scores, seed) -> list[TurnOutput]:
        hook = ThinkingHook(tok, ThinkingCutoff(cut=False, budget=None))
        params = turn_params(len(prompts), self.max_new_tokens, self.temperature, seed)
        gens = generate(model, tok, prompts, params, hook=hook)
        out = []
        for i, g in enumerate(gens):
            score = hook.turn_score(i)
            self.traces.append(Trace(g.text, list(hook.trace(i).signals), prev_scores[i], score))
            out.append(TurnOutput(g.token_ids, g.text, score=score, think_tokens=hook.trace(i).think_tokens))
        return out


def regions(text: str) -> tuple[int, int, int] | None:
    """(thinking start, reasoning start, thinking end) as token positions of a byte-level reply, or
    None when the reply does not think in the expected form."""
    if not text.startswith(OPEN) or CLOSE not in text or not text.isascii():
        return None
    start, end = len(OPEN), text.index(CLOSE)
    marks = [text.find(m, start, end) for m in REASONING_MARKS]
    found = [m for m in marks if m >= 0]
    return start, (min(found) if found else end), end


def first_stagnation(
    signals: list[float],
    eps: float,
    patience: int,
    region: tuple[int, int] | None = None,
    end_outside: bool = True,
    reset_at_tags: bool = False,
) -> int | None:
    """The token position at which the stagnation counter first reaches `patience` (the hook acts
    there), or None. `region=(start, end)`: thinking is positions [start, end); as the core machine,
    `end_outside=False` runs the counter only there and `reset_at_tags` restarts it on entering or
    leaving it."""
    count, prev, was_inside = 0, None, False
    for t, m in enumerate(signals):
        if prev is not None:
            count = count + 1 if abs(m - prev) <= eps else 0
        prev = m
        if region is not None:
            inside = region[0] <= t < region[1]
            if (not inside and not end_outside) or (reset_at_tags and inside != was_inside):
                count = 0
            was_inside = inside
        if count >= patience:
            return t
    return None


def score_grid(
    traces: list[Trace],
    eps_grid=EPS_GRID,
    patience_grid=PATIENCE_GRID,
    end_outside: bool = True,
    reset_at_tags: bool = False,
) -> list[dict]:
    """Per (eps, patience), where the first stagnation event of each reply would land:

    - in the filler: a good cut (thinking tokens saved: the rest of the thinking);
    - in the reasoning: a false cut (the reasoning is lost);
    - outside thinking (while `<think>` itself is written, or in the action after `</think>`): the
      hook ends the sequence there, a false stop (no action, or a truncated one).
    Rates are per reply; the replay stops at the first event (after it the reply would differ)."""
    labelled = [(t, r) for t in traces if (r := regions(t.text)) is not None]
    rows = []
    for eps in eps_grid:
        for patience in patience_grid:
            filler_turns = filler_cut = false_cut = false_stop = saved = 0
            for t, (start, reason, end) in labelled:
                filler_turns += reason > start
                # the reply's own tokens: its text plus the end token (no stop if the reply is complete)
                cut = first_stagnation(
                    t.signals[: len(t.text)], eps, patience, (start, end), end_outside, reset_at_tags
                )
                if cut is None:
                    continue
                if cut < start or cut >= end:
                    false_stop += 1
                elif cut < reason:
                    filler_cut += 1
                    saved += end - cut
                else:
                    false_cut += 1
                    saved += end - cut
            n = max(1, len(labelled))
            rows.append(
                {
                    "eps": eps,
                    "patience": patience,
                    "filler_cut": filler_cut / max(1, filler_turns),
                    "false_cut": false_cut / n,
                    "false_stop": false_stop / n,
                    "saved_per_turn": saved / n,
                }
            )
    return rows


def choose(rows: list[dict], max_false_cut: float = 0.05) -> dict:
    """The row saving the most thinking tokens with false cuts + false stops <= max_false_cut (ties:
    fewer of them); if no row is that clean, the cleanest."""
    bad = {id(r): r["false_cut"] + r["false_stop"] for r in rows}
    ok = [r for r in rows if bad[id(r)] <= max_false_cut]
    if not ok:
        return min(rows, key=lambda r: (bad[id(r)], -r["saved_per_turn"]))
    return max(ok, key=lambda r: (r["saved_per_turn"], -bad[id(r)]))


def band_share(traces: list[Trace], eta: float) -> float:
    """TDS's q measured: the share of second-or-later turns whose score change is in (0, eta)."""
    eligible = [t for t in traces if t.prev_score is not None and not math.isnan(t.score)]
    return sum(in_band(t.score, t.prev_score, eta) for t in eligible) / max(1, len(eligible))


def eta_for(traces: list[Trace], q: float) -> float:
    """The eta that puts a share `q` of second-or-later turns' score changes inside (0, eta)."""
    changes = sorted(
        abs(t.score - t.prev_score)
        for t in traces
        if t.prev_score is not None and not math.isnan(t.score) and t.score != t.prev_score
    )
    if not changes:
        return ETA
    k = min(len(changes) - 1, max(0, math.ceil(q * len(changes)) - 1))
    return float(changes[k] + 1e-12)


def candidates(rows: list[dict], caps=(0.05, 0.15, 0.3, 0.5, 1.0)) -> list[dict]:
    """The grid's most saving setting at each cap on false cuts + false stops (duplicates dropped)."""
    out: list[dict] = []
    for cap in caps:
        r = choose(rows, cap)
        if r not in out:
            out.append(r)
    return out


@dataclass
class CalibrationConfig:
    """How `calibrate` measures: `tasks` training games x `copies` episodes for the signal and for each
    candidate's play; by default the cut only closes thinking (`end_outside=False`; the paper's rule,
    with or without `reset_at_tags`, is a setting away; see the module docstring);
    a candidate may lose at most `tolerance` success against the uncut agent; TDS's eta is set so a
    share `q_target` of turns falls in its band."""

    copies: int = 2
    budget: int = 128
    end_outside: bool = False
    reset_at_tags: bool = False
    tolerance: float = 0.05
    q_target: float = 0.25
    seed: int = 7


def calibrate(model, tok, tasks, history: int = 3, cfg: CalibrationConfig | None = None) -> dict:
    """Record M_t with the cut off, replay the grid, then play the candidates: the chosen cut-off is
    the one with the fewest thinking tokens per turn whose success stays within `tolerance` of the
    uncut agent's. Returns the choice (eps, patience, budget, end_outside, eta) and the evidence."""
    cfg = cfg or CalibrationConfig()
    fmt = ThinkFormat(history)

    rec = RecordingTurns()
    run_episodes(model, tok, tasks, make_env, fmt, rec, copies=cfg.copies, seed=cfg.seed)
    rows = score_grid(rec.traces, end_outside=cfg.end_outside, reset_at_tags=cfg.reset_at_tags)
    played = []
    for cand in [None, *candidates(rows)]:
        cut = (
            ThinkingCutoff(cut=False, budget=None)
            if cand is None
            else ThinkingCutoff(
                eps=cand["eps"],
                patience=cand["patience"],
                budget=cfg.budget,
                end_outside=cfg.end_outside,
                reset_at_tags=cfg.reset_at_tags,
            )
        )
        eps_ = run_episodes(
            model, tok, tasks, make_env, fmt, T2POTurns(cut), copies=cfg.copies, seed=cfg.seed + 1
        )
        m = episode_metrics(eps_)
        played.append({"eps": None if cand is None else cand["eps"], "patience": None if cand is None else cand["patience"],
                       "replay": cand, "success": m["success"], "think_tokens": m["think_tokens"], "valid_rate": m["valid_rate"]})  # fmt: skip
    uncut = played[0]
    ok = [p for p in played[1:] if p["success"] >= uncut["success"] - cfg.tolerance]
    # none within tolerance: the least harmful, flagged (the caller decides whether to use it)
    best = min(ok, key=lambda p: p["think_tokens"]) if ok else max(played[1:], key=lambda p: p["success"])
    labelled = [r for t in rec.traces if (r := regions(t.text)) is not None]
    return {
        "eps": best["eps"],
        "patience": best["patience"],
        "within_tolerance": bool(ok),
        "budget": cfg.budget,
        "end_outside": cfg.end_outside,
        "reset_at_tags": cfg.reset_at_tags,
        "eta": eta_for(rec.traces, cfg.q_target),
        "chosen": best,
        "uncut": uncut,
        "played": played,
        "grid": rows,
        "turns": len(rec.traces),
        "well_formed_share": len(labelled) / max(1, len(rec.traces)),
        "filler_share": sum(r[1] > r[0] for r in labelled) / max(1, len(labelled)),
        "think_tokens_mean": sum(r[2] - r[0] for r in labelled) / max(1, len(labelled)),
        "q_at_eta_0.3": band_share(rec.traces, 0.3),
    }

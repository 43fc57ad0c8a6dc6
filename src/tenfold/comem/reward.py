"""CoMem's memory-training reward: how well the frozen agent's action taken from a summary matches the
action the full-context agent logged at the same step (the paper's GRPO reward for the memory model).

The paper's form: 0.4 when the function (verb) is the same, plus 0.6 times the similarity of the
arguments, capped when the function differs, minus a length penalty on the summary. For the Vault
game an action is a verb and its arguments (`code 482` -> ("code", "482"); `left`, `go`, `exit` have
none). Argument similarity is 1 - normalised edit distance between the argument strings, so one wrong
digit of a code still earns most of the argument credit; a different verb earns nothing (the cap: the
arguments of different functions are not comparable).
"""

from __future__ import annotations

from dataclasses import dataclass

from tenfold.core.errors import TenfoldError
from tenfold.envs.vault import parse_action

VERB_WEIGHT = 0.4
ARGS_WEIGHT = 0.6


@dataclass(frozen=True)
class RewardConfig:
    verb_weight: float = VERB_WEIGHT
    args_weight: float = ARGS_WEIGHT
    # Every character costs: a summary that repeats a fact pays 0.03 for it, one that drops a fact loses
    # that fact's action match (1/3 or more of the reward). With 120 free characters (the first
    # recipe) nothing under the memory's 96-token limit paid, and GRPO learned to repeat facts until
    # the limit cut the later ones off (CoMem success 0.41 against the SFT model's 0.58)
    free_chars: int = 0  # summary length with no penalty
    penalty_per_char: float = 0.002  # beyond free_chars
    max_penalty: float = 0.5  # also the penalty of a summary cut off by the token limit

    def __post_init__(self):
        if (
            min(self.verb_weight, self.args_weight, self.penalty_per_char, self.max_penalty) < 0
            or self.free_chars < 0
        ):
            raise TenfoldError(f"reward weights and penalties must be non-negative, got {self}")


def structured(action: str) -> tuple[str, str]:
    """(verb, arguments) of a Vault action or reply ('think: ... act: code 482' -> ('code', '482'))."""
    words = parse_action(action).split()
    if not words:
        return "", ""
    return words[0], " ".join(words[1:])


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / length of the longer string (1.0 for two empty strings)."""
    if not a and not b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


def action_match(predicted: str, logged: str, cfg: RewardConfig = RewardConfig()) -> float:
    """verb_weight x [same verb] + args_weight x argument similarity; 0 when the verbs differ."""
    (pv, pa), (lv, la) = structured(predicted), structured(logged)
    if not lv:
        raise TenfoldError(f"the logged action has no verb: {logged!r}")
    if pv != lv:
        return 0.0
    return cfg.verb_weight + cfg.args_weight * edit_similarity(pa, la)


def length_penalty(summary: str, cfg: RewardConfig = RewardConfig()) -> float:
    return min(cfg.max_penalty, cfg.penalty_per_char * max(0, len(summary) - cfg.free_chars))


def summary_reward(summary: str, predicted: str, logged: str, cfg: RewardConfig = RewardConfig()) -> float:
    """The memory model's reward for one summary: the agent's action match minus the length penalty."""
    return action_match(predicted, logged, cfg) - length_penalty(summary, cfg)

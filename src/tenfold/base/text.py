"""Plain English prose from a small grammar: the filler that spaces out what the copy and recall
documents ask about, and the "text" component of the mixture (so a prompt like "hello" is continued
with words, not bytes).

Sentences combine a subject, a verb phrase and an optional place or time, from fixed word lists; the
vocabulary is small on purpose (a 1M-parameter model learns it quickly) and never contains the
random keys and values of the copy and recall documents, so filler cannot answer a question.
"""

from __future__ import annotations

import random

ADJECTIVES = (
    "old", "young", "quiet", "busy", "tall", "small", "bright", "dark", "warm", "cold", "green", "red",
    "happy", "tired", "careful", "brave", "gentle", "slow", "quick", "wise",
)  # fmt: skip
PEOPLE = (
    "farmer", "baker", "teacher", "sailor", "doctor", "painter", "miller", "child", "traveller",
    "gardener", "merchant", "singer", "fisher", "weaver", "guard", "cook",
)  # fmt: skip
THINGS = (
    "basket", "lamp", "letter", "boat", "bell", "book", "cart", "kettle", "map", "rope", "coat",
    "drum", "apple", "loaf", "cup", "box", "key", "stone", "flag", "ladder",
)  # fmt: skip
PLACES = (
    "the river", "the market", "the mill", "the hill", "the harbour", "the garden", "the forest",
    "the square", "the bridge", "the school", "the well", "the farm", "the tower", "the lake",
)  # fmt: skip
TIMES = ("in the morning", "at noon", "before dusk", "after the rain", "every day", "at night", "on Sunday")
VERBS_OBJ = ("carries", "finds", "paints", "mends", "sells", "buys", "opens", "hides", "cleans", "brings")
VERBS_PLACE = ("walks to", "waits at", "sings near", "rests by", "works at", "looks at", "runs to")
OPENERS = ("Once", "Later", "Then", "Meanwhile", "Soon", "After that", "That year")


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def sentence(rng: random.Random) -> str:
    """One sentence, capitalised and ending with a full stop."""
    subject = (
        f"the {rng.choice(ADJECTIVES)} {rng.choice(PEOPLE)}"
        if rng.random() < 0.6
        else f"the {rng.choice(PEOPLE)}"
    )
    shape = rng.random()
    if shape < 0.45:
        thing = rng.choice(THINGS)
        thing = f"{rng.choice(ADJECTIVES)} {thing}" if rng.random() < 0.4 else thing
        body = f"{subject} {rng.choice(VERBS_OBJ)} {_a(thing)}"
        if rng.random() < 0.5:
            body += f" at {rng.choice(PLACES)}"
    elif shape < 0.8:
        body = f"{subject} {rng.choice(VERBS_PLACE)} {rng.choice(PLACES)}"
    else:
        body = f"{subject} is {rng.choice(ADJECTIVES)}"
    if rng.random() < 0.3:
        body += f" {rng.choice(TIMES)}"
    if rng.random() < 0.15:
        body = f"{rng.choice(OPENERS)} {body}"
        return body[0].upper() + body[1:] + "."
    return body[0].upper() + body[1:] + "."


def prose(rng: random.Random, min_chars: int) -> str:
    """Sentences joined by spaces until at least `min_chars` characters (0: one sentence)."""
    out = [sentence(rng)]
    size = len(out[0])
    while size < min_chars:
        out.append(sentence(rng))
        size += len(out[-1]) + 1
    return " ".join(out)


def paragraph(rng: random.Random) -> str:
    return prose(rng, rng.randint(80, 600))

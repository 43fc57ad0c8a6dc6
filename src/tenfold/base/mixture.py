"""The pretraining mixture of tenfold-base: generated documents, one generator per component, each
teaching a skill the LLM systems lean on.

    text      English prose from a small grammar (`text.py`)
    copy      notes with distinct random keys and random values, then "Repeat KEY:" 10-1,000 tokens
              later; or a random string said twice (copying and induction; a value can only come
              from the context)
    recall    3-16 facts ("Fact: door blue 482.") spread through up to 900 tokens, then questions
    lists     plans with numbered steps, list questions (count, first, last, item N)
    arith     worked arithmetic, levels L1-L6 of `tenfold.envs.arith`
    programs  straight-line programs with their trace and output, and one-line fixes after feedback
    games     text-game transcripts: observation, goal, admissible actions, the action taken
    chat      conversations in the tokenizer's chat template (loss on the assistant turns)

Documents are framed `<|bos|> text <|eos|>` (chat: the chat template, which starts with `<|bos|>`), one
to a training sequence (or packed, an option). Everything is a pure function of the seed;
held-out probes draw from seeds training never uses (`HELD_OUT_SEED`). `MIXTURE_VERSION` names the
generators' output: change any generator and bump it (the shipped model's key includes it).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from tenfold.base.text import PEOPLE, THINGS, paragraph, prose
from tenfold.core.errors import TenfoldError
from tenfold.envs.arith import LEVELS, make_problem, worked_steps

MIXTURE_VERSION = "base-mix-3"
HELD_OUT_SEED = 10**9  # probes and held-out losses draw from seeds at and above this; training below

# share of documents drawn from each component (long copy and recall documents carry more tokens)
DEFAULT_WEIGHTS: dict[str, float] = {
    "text": 0.08,
    "copy": 0.30,
    "recall": 0.16,
    "lists": 0.07,
    "arith": 0.12,
    "programs": 0.09,
    "games": 0.09,
    "chat": 0.09,
}
COMPONENTS = tuple(DEFAULT_WEIGHTS)


@dataclass(frozen=True)
class Doc:
    """One generated document: plain text, or chat messages (rendered with the chat template)."""

    component: str
    text: str = ""
    messages: tuple[dict, ...] = ()
    # the loss starts at this character of `text` (0: all of it). Copy and recall documents take it on
    # their questions and answers only: with the loss on their prose too, the answers are a few percent
    # of a batch's targets, and in mixture version 2 the copying formed by the copy stage faded
    loss_from: int = 0


def filler(rng: random.Random, n: int) -> str:
    """About `n` characters of prose: exactly `n`, cut mid-sentence if need be, less any trailing
    space; '' for n <= 0."""
    return prose(rng, n)[:n].rstrip() if n > 0 else ""


# ---- copy -------------------------------------------------------------------------------------------

_KEY_CHARS = string.ascii_uppercase + string.digits


def random_key(rng: random.Random, taken: set[str]) -> str:
    """A fresh 4-character key such as 'K7QX' (distinct within a document)."""
    while True:
        key = rng.choice(string.ascii_uppercase) + "".join(rng.choice(_KEY_CHARS) for _ in range(3))
        if key not in taken:
            taken.add(key)
            return key


def random_value(rng: random.Random) -> str:
    """A value no model can guess: 2-4 random lowercase 'words' and sometimes a number."""
    words = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 5)))
        for _ in range(rng.randint(2, 4))
    ]
    if rng.random() < 0.5:
        words.insert(rng.randrange(len(words) + 1), str(rng.randint(10, 999)))
    return " ".join(words)


COPY_MAX_CHARS = 960  # a copy document's length before its query, at most


def copy_query(key: str) -> str:
    return f"Repeat {key}:"


def copy_doc(rng: random.Random, distance: int | None = None) -> tuple[str, str]:
    """(prompt, answer): 1-4 notes `Note KEY: value.`, filler, then `Repeat KEY:` for one of them whose
    value ended `distance` characters (= tokens) before the query (log-uniform in 10..950 when None).
    The answer is ' value.' (the value and its full stop)."""
    taken: set[str] = set()
    notes = [(random_key(rng, taken), random_value(rng)) for _ in range(rng.randint(1, 4))]
    target = rng.randrange(len(notes))
    if distance is None:
        distance = int(round(10 * (95 ** rng.random())))  # log-uniform in [10, 950]
    # the other notes go before or after the target's, inside the gap
    parts = [f"Note {k}: {v}." for k, v in notes]
    before = parts[:target]
    after = parts[target + 1 :]
    if len(" ".join(after)) + 2 > distance:  # the other notes do not fit in the gap: they go first
        before, after = before + after, []
    lead = filler(rng, rng.randint(0, 60))
    gap_notes = " ".join(after)
    head_len = len(lead) + sum(len(p) + 1 for p in before) + len(parts[target])
    # the whole document, answer included, fits in a 1,024-token training sequence
    gap = max(0, min(distance, COPY_MAX_CHARS - head_len) - len(gap_notes) - 2)
    cut = rng.randint(0, gap)
    middle = " ".join(x for x in (filler(rng, cut), gap_notes, filler(rng, gap - cut)) if x)
    head = " ".join(x for x in (lead, *before, parts[target]) if x)
    prompt = (
        f"{head} {middle} {copy_query(notes[target][0])}"
        if middle
        else f"{head} {copy_query(notes[target][0])}"
    )
    return prompt, f" {notes[target][1]}."


# share of copy documents that are `twice_doc`: with a fifth (version 1), 1,000 steps formed no copying
# at all (the repeated half was predicted worse than the first); they carry most of the copy signal
TWICE_SHARE = 0.5


def short_twice_doc(rng: random.Random) -> str:
    """`Say it twice: w | w` for one random 6-16 character word of letters and digits: within it a byte
    rarely repeats, so a copying head keyed on the byte before can find its place (in the longer
    strings of `twice_doc` the same letter recurs, and it needs the bytes before that)."""
    w = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(6, 16)))
    return f"Say it twice: {w} | {w}"


def twice_doc(rng: random.Random) -> str:
    """The plainest induction signal: a random string, then the same string again."""
    s = " ".join(random_value(rng) for _ in range(rng.randint(1, 6)))
    return f"Say it twice: {s} | {s}"


def copy_component(rng: random.Random) -> Doc:
    if rng.random() < TWICE_SHARE:
        text = twice_doc(rng) if rng.random() < 0.5 else short_twice_doc(rng)
        return Doc("copy", text, loss_from=text.index(" | ") + 2)
    prompt, answer = copy_doc(rng)
    return Doc("copy", prompt + answer, loss_from=prompt.rindex(" Repeat "))


# ---- recall -----------------------------------------------------------------------------------------

FACT_OBJECTS = (
    "door",
    "box",
    "gate",
    "safe",
    "locker",
    "chest",
    "vault",
    "room",
    "bag",
    "drawer",
    "car",
    "shed",
)
FACT_COLOURS = (
    "red",
    "blue",
    "green",
    "gold",
    "grey",
    "pink",
    "black",
    "white",
    "brown",
    "teal",
    "amber",
    "violet",
)


def make_facts(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """`n` facts (key, number) with distinct keys 'object colour' and 3-digit numbers."""
    pairs = rng.sample([(o, c) for o in FACT_OBJECTS for c in FACT_COLOURS], n)
    return [(f"{o} {c}", str(rng.randint(100, 999))) for o, c in pairs]


def recall_doc(
    rng: random.Random, n_facts: int, context: int, n_questions: int
) -> tuple[str, list[tuple[str, str]]]:
    """Facts `Fact: door blue 482.` spread at random through `context` characters of prose, then the
    question prefix. Returns (context text, [(question prompt, answer)]) where each question is
    `Q: door blue? A:` and its answer ' 482'."""
    facts = make_facts(rng, n_facts)
    fact_text = [f"Fact: {k} {v}." for k, v in facts]
    spare = max(0, context - sum(len(f) + 1 for f in fact_text))
    cuts = sorted(rng.randint(0, spare) for _ in range(n_facts))
    pieces, last = [], 0
    for cut, f in zip(cuts, fact_text, strict=True):
        if cut > last:
            pieces.append(filler(rng, cut - last))
        pieces.append(f)
        last = cut
    if spare > last:
        pieces.append(filler(rng, spare - last))
    asked = rng.sample(facts, min(n_questions, n_facts))
    return " ".join(pieces), [(f"Q: {k}? A:", f" {v}") for k, v in asked]


def recall_component(rng: random.Random) -> Doc:
    n = rng.randint(3, 16)
    context = rng.randint(n * 22, 900)
    body, qa = recall_doc(rng, n, context, rng.randint(1, min(n, 10)))
    return Doc("recall", body + "\n" + "\n".join(q + a for q, a in qa), loss_from=len(body))


# ---- lists and plans ----------------------------------------------------------------------------------

PLANS = {
    "make tea": [
        "fill the kettle",
        "boil the water",
        "put a tea bag in a cup",
        "pour the water",
        "wait three minutes",
        "take out the bag",
    ],
    "plant a tree": [
        "choose a sunny spot",
        "dig a hole",
        "put the tree in the hole",
        "fill the hole with soil",
        "water the tree",
    ],
    "send a letter": [
        "write the letter",
        "fold it",
        "put it in an envelope",
        "write the address",
        "add a stamp",
        "post it",
    ],
    "bake bread": [
        "mix flour and water",
        "add yeast and salt",
        "knead the dough",
        "let it rise",
        "shape the loaf",
        "bake it for forty minutes",
    ],
    "cross the river": ["find the bridge", "check the path", "walk across", "wave to the guard"],
    "open the vault": [
        "find the key",
        "walk to the vault",
        "enter the code",
        "turn the handle",
        "step inside",
    ],
    "clean the room": [
        "open the window",
        "pick up the toys",
        "dust the shelves",
        "sweep the floor",
        "close the window",
    ],
}


def lists_component(rng: random.Random) -> Doc:
    if rng.random() < 0.5:
        goal, steps = rng.choice(list(PLANS.items()))
        lines = [f"Plan: {goal}"] + [f"{i}. {s}" for i, s in enumerate(steps, 1)]
        if rng.random() < 0.4:
            i = rng.randrange(len(steps))
            lines.append(f"Step {i + 1} is: {steps[i]}.")
        return Doc("lists", "\n".join(lines))
    items = rng.sample(THINGS + PEOPLE, rng.randint(2, 9))
    q = rng.choice(["count", "first", "last", "item", "numbered"])
    head = f"List: {', '.join(items)}."
    if q == "count":
        tail = f" Count: {len(items)}."
    elif q == "first":
        tail = f" First: {items[0]}."
    elif q == "last":
        tail = f" Last: {items[-1]}."
    elif q == "item":
        i = rng.randrange(len(items))
        tail = f" Item {i + 1}: {items[i]}."
    else:
        tail = "\n" + "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1))
    return Doc("lists", head + tail)


# ---- arithmetic -------------------------------------------------------------------------------------


def arith_component(rng: random.Random) -> Doc:
    problems = [make_problem(rng.choice(LEVELS), rng) for _ in range(rng.randint(2, 8))]
    return Doc("arith", "\n".join(f"Q: {p.expr}\nA: {worked_steps(p.expr)}" for p in problems))


# ---- programs ---------------------------------------------------------------------------------------


def random_program(rng: random.Random) -> tuple[list[str], list[tuple[str, int]], str]:
    """(lines, trace, printed variable): 3-6 assignments over 2-4 variables with + - * and small
    numbers, then `print(v)`; the trace is each assignment's (variable, new value)."""
    names = rng.sample("abcdxyzmnpqt", rng.randint(2, 4))
    env: dict[str, int] = {}
    lines, trace = [], []
    for i in range(rng.randint(3, 6)):
        var = names[i] if i < len(names) else rng.choice(names)
        known = list(env)
        if not known or rng.random() < 0.25:
            expr, val = str(rng.randint(0, 20)), None
        else:
            x = rng.choice(known)
            op = rng.choice("+-*" if env[x] < 50 else "+-")
            y = rng.choice(known) if rng.random() < 0.4 else str(rng.randint(1, 9))
            yv = env[y] if y in env else int(y)
            if op == "*" and abs(yv) > 9:
                op = "+"
            expr = f"{x} {op} {y}"
            val = env[x] + yv if op == "+" else env[x] - yv if op == "-" else env[x] * yv
        env[var] = int(expr) if val is None else val
        lines.append(f"{var} = {expr}")
        trace.append((var, env[var]))
    out = rng.choice(list(env))
    return lines, trace, out


def program_text(lines: list[str], out: str) -> str:
    return "\n".join([*(f"{i}: {s}" for i, s in enumerate(lines, 1)), f"{len(lines) + 1}: print({out})"])


def programs_component(rng: random.Random) -> Doc:
    lines, trace, out = random_program(rng)
    value = next(v for var, v in reversed(trace) if var == out)
    body = "Program:\n" + program_text(lines, out)
    if rng.random() < 0.6:
        body += "\nTrace: " + ", ".join(f"{var}={v}" for var, v in trace) + f"\nOutput: {value}"
        return Doc("programs", body)
    # feedback and a fix: the output should be `want`; add a line that corrects the printed variable
    want = value + rng.choice([d for d in range(-9, 10) if d])
    delta = want - value
    fix = f"{out} = {out} {'+' if delta > 0 else '-'} {abs(delta)}"
    body += f"\nOutput: {value}\nWanted: {want}\nFix: insert line {len(lines) + 1}: {fix}"
    return Doc("programs", body)


# ---- text games -------------------------------------------------------------------------------------

ROOMS = ("kitchen", "hall", "garden", "cellar", "attic", "study", "porch", "barn", "library", "yard")
DIRECTIONS = ("north", "south", "east", "west")


def game_turn(
    rng: random.Random, goal: str, here: str, items: list[str], exits: dict[str, str], hint: str
) -> tuple[str, str]:
    """(observation text with the admissible actions, the right action)."""
    actions = [f"go {d}" for d in exits] + [f"take {x}" for x in items] + ["look", "inventory"]
    rng.shuffle(actions)
    obs = f"You are in the {here}. "
    obs += f"You see {', '.join(_a_list(items))}. " if items else "You see nothing special. "
    obs += f"Exits: {', '.join(exits)}."
    if hint:
        obs += f" {hint}"
    target = goal.removeprefix("take the ")
    action = f"take {target}" if target in items else f"go {_toward(exits, hint)}"
    return f"Observation: {obs}\nGoal: {goal}\nActions: {' | '.join(actions)}\nAction:", f" {action}"


def _a_list(items: list[str]) -> list[str]:
    return [("an " if x[0] in "aeiou" else "a ") + x for x in items]


def _toward(exits: dict[str, str], hint: str) -> str:
    for d in exits:
        if d in hint:
            return d
    return next(iter(exits))


def games_component(rng: random.Random) -> Doc:
    """A walk of 1-4 turns toward the room holding the goal item; each turn's hint names the exit that
    leads there, and the last room has the item."""
    target = rng.choice(THINGS)
    goal = f"take the {target}"
    turns = rng.randint(1, 4)
    lines = []
    for t in range(turns):
        here = rng.choice(ROOMS)
        exits = {d: rng.choice(ROOMS) for d in rng.sample(DIRECTIONS, rng.randint(1, 3))}
        others = rng.sample([x for x in THINGS if x != target], rng.randint(0, 2))
        if t == turns - 1:
            items = [*others, target]
            rng.shuffle(items)
            hint = ""
        else:
            items = others
            hint = f"A sign says the {target} is {rng.choice(list(exits))}."
        obs, action = game_turn(rng, goal, here, items, exits, hint)
        lines.append(obs + action)
    return Doc("games", "\n".join(lines) + f"\nObservation: You take the {target}. Done.")


# ---- chat -------------------------------------------------------------------------------------------

SYSTEMS = ("You are a helpful assistant.", "Answer briefly.", "You are tenfold-base, a small model.", "")
GREETINGS = {
    "hello": "Hello! How can I help you today?",
    "hi": "Hi! What would you like to do?",
    "good morning": "Good morning! How can I help?",
    "who are you?": "I am tenfold-base, a small language model trained on generated data.",
    "thanks": "You are welcome.",
}


def chat_exchange(rng: random.Random) -> tuple[str, str]:
    """One (user, assistant) pair from one of the skills."""
    kind = rng.random()
    if kind < 0.15:
        q = rng.choice(list(GREETINGS))
        return (q.capitalize() if rng.random() < 0.5 else q), GREETINGS[q]
    if kind < 0.35:
        p = make_problem(rng.choice(LEVELS), rng)
        return f"What is {p.expr}?", worked_steps(p.expr)
    if kind < 0.55:
        v = random_value(rng)
        return f"Repeat exactly: {v}", v
    if kind < 0.75:
        facts = make_facts(rng, rng.randint(2, 6))
        k, v = rng.choice(facts)
        return " ".join(f"The {a} code is {b}." for a, b in facts) + f" What is the {k} code?", v
    if kind < 0.9:
        goal, steps = rng.choice(list(PLANS.items()))
        return f"How do I {goal}?", "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    p = rng.choice(PEOPLE)
    return f"Tell me about the {p}.", prose(rng, rng.randint(40, 160))


def chat_component(rng: random.Random) -> Doc:
    messages: list[dict] = []
    system = rng.choice(SYSTEMS)
    if system:
        messages.append({"role": "system", "content": system})
    for _ in range(rng.randint(1, 3)):
        user, assistant = chat_exchange(rng)
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return Doc("chat", messages=tuple(messages))


def text_component(rng: random.Random) -> Doc:
    return Doc("text", paragraph(rng))


GENERATORS: dict[str, Callable[[random.Random], Doc]] = {
    "text": text_component,
    "copy": copy_component,
    "recall": recall_component,
    "lists": lists_component,
    "arith": arith_component,
    "programs": programs_component,
    "games": games_component,
    "chat": chat_component,
}


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise TenfoldError(f"unknown mixture component(s) {unknown}; components are {list(COMPONENTS)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise TenfoldError(f"mixture weights must be >= 0 with a positive sum, got {weights}")
    return weights


def documents(seed: int, n: int, weights: dict[str, float] | None = None) -> list[Doc]:
    """`n` documents drawn by `weights` (component -> share), a pure function of `seed`."""
    weights = check_weights(weights or DEFAULT_WEIGHTS)
    rng = random.Random(f"tenfold-base:{seed}")
    names = [c for c in COMPONENTS if weights.get(c, 0) > 0]
    shares = [weights[c] for c in names]
    return [GENERATORS[c](rng) for c in rng.choices(names, shares, k=n)]


def component_documents(component: str, seed: int, n: int) -> list[Doc]:
    """`n` documents of one component (held-out losses per component use seeds >= HELD_OUT_SEED)."""
    if component not in GENERATORS:
        raise TenfoldError(f"unknown mixture component {component!r}; components are {list(COMPONENTS)}")
    rng = random.Random(f"tenfold-base:{component}:{seed}")
    return [GENERATORS[component](rng) for _ in range(n)]


def encode_doc(tokenizer, doc: Doc) -> tuple[list[int], list[int]]:
    """(ids, labels) of one document: plain text `<|bos|> text <|eos|>` with the loss on the text from
    `loss_from` on (and the eos); chat in the chat template with the loss on the assistant turns."""
    from tenfold.core.train import IGNORE, chat_example

    if doc.messages:
        t = chat_example(tokenizer, doc.messages)
        return list(t.ids), list(t.labels)
    head = tokenizer.encode(doc.text[: doc.loss_from])
    ids = [tokenizer.bos_id, *head, *tokenizer.encode(doc.text[doc.loss_from :]), tokenizer.eos_id]
    return ids, [IGNORE] * (1 + len(head)) + ids[1 + len(head) :]


def pack(encoded: list[tuple[list[int], list[int]]], max_len: int) -> list[tuple[list[int], list[int]]]:
    """Greedy packing in order: a document joins the current sequence if it fits, else starts the next
    one; a document longer than `max_len` is cut to it."""
    out: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    labels: list[int] = []
    for x, y in encoded:
        x, y = x[:max_len], y[:max_len]
        if ids and len(ids) + len(x) > max_len:
            out.append((ids, labels))
            ids, labels = [], []
        ids, labels = ids + x, labels + y
    if ids:
        out.append((ids, labels))
    return out


def corpus(
    tokenizer,
    seed: int,
    n_docs: int,
    max_len: int,
    weights: dict[str, float] | None = None,
    packed: bool = False,
):
    """Training examples (`core.train.Tokens`) from `n_docs` documents: one per document (cut at
    `max_len`), or with `packed` documents packed into sequences of at most `max_len` tokens."""
    from tenfold.core.train import Tokens

    docs = documents(seed, n_docs, weights)
    encoded = [encode_doc(tokenizer, d) for d in docs]
    if packed:
        encoded = pack(encoded, max_len)
    return [Tokens(tuple(x[:max_len]), tuple(y[:max_len])) for x, y in encoded]

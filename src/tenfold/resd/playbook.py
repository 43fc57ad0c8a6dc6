"""RESD's global playbook: sectioned lessons with ids and helpful / harmful counters, grown by the
curator's `ADD` operations, tagged by reflections, and pruned (RESD, arXiv 2605.12741, after ACE's
agentic context engineering).

An entry renders as `[ctx-00263] helpful=2 harmful=0 :: text`, under one of seven sections. Reflections
tag the entries they read as helpful, harmful or neutral; an entry is *harmful* when d >= h and d > 0,
*unused* when h + d = 0. Every `prune_every` (F = 4) updates the playbook prunes; when it holds more than
`max_entries` it also enforces the cap, by one of two policies:

- staleness: drop harmful entries and those unused for more than one update, then the least recently
  tagged until under the cap (an entry never tagged counts from the update that added it; ties go to
  the less helpful, then the older);
- prioritized: drop unused and harmful entries, then random helpful ones until under the cap.

Nothing is lost silently: every add, skip and drop is counted in `stats`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from tenfold.core.errors import TenfoldError

SECTIONS = ("strategies", "formulas", "templates", "mistakes", "heuristics", "clues", "others")
TAGS = ("helpful", "harmful", "neutral")
POLICIES = ("staleness", "prioritized")
MAX_ENTRY_CHARS = 240


@dataclass
class Entry:
    id: int
    section: str
    text: str
    created: int  # the update that added it
    helpful: int = 0
    harmful: int = 0
    last_tagged: int = -1  # the last update whose reflection tagged it (-1: never)

    @property
    def key(self) -> str:
        return f"ctx-{self.id:05d}"

    @property
    def is_harmful(self) -> bool:
        return self.harmful >= self.helpful and self.harmful > 0

    @property
    def is_unused(self) -> bool:
        return self.helpful + self.harmful == 0

    def render(self) -> str:
        return f"[{self.key}] helpful={self.helpful} harmful={self.harmful} :: {self.text}"


@dataclass
class Playbook:
    max_entries: int = 120
    prune_every: int = 4
    policy: str = "staleness"
    seed: int = 0
    entries: dict[int, Entry] = field(default_factory=dict)
    updates: int = 0
    next_id: int = 1
    stats: dict[str, int] = field(
        default_factory=lambda: {
            "added": 0,
            "duplicates": 0,
            "bad_ops": 0,
            "tags": 0,
            "bad_tags": 0,
            "dropped": 0,
        }
    )

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise TenfoldError(f"pruning policy must be one of {POLICIES}, got {self.policy!r}")
        if self.max_entries < 1 or self.prune_every < 1:
            raise TenfoldError(
                f"need max_entries >= 1 and prune_every >= 1: {self.max_entries}, {self.prune_every}"
            )
        self._rng = random.Random(self.seed)

    def __len__(self) -> int:
        return len(self.entries)

    # ---- growing and tagging ----------------------------------------------------------------------------
    def add(self, section: str, text: str) -> Entry | None:
        """One curator `ADD`; returns the entry, or None for an op that is skipped (and counted): an
        unknown section, empty or over-long text, or a lesson already in the playbook."""
        text = " ".join(str(text).split()) if isinstance(text, str) else ""
        if section not in SECTIONS or not text or len(text) > MAX_ENTRY_CHARS:
            self.stats["bad_ops"] += 1
            return None
        if any(e.text == text for e in self.entries.values()):
            self.stats["duplicates"] += 1
            return None
        entry = Entry(self.next_id, section, text, created=self.updates)
        self.entries[entry.id] = entry
        self.next_id += 1
        self.stats["added"] += 1
        return entry

    def tag(self, key: str, tag: str) -> bool:
        """A reflection's tag on entry `key` ("ctx-00012" or 12); unknown ids or tags are counted, not raised."""
        ident = _parse_key(key)
        if ident not in self.entries or tag not in TAGS:
            self.stats["bad_tags"] += 1
            return False
        e = self.entries[ident]
        e.helpful += tag == "helpful"
        e.harmful += tag == "harmful"
        e.last_tagged = self.updates
        self.stats["tags"] += 1
        return True

    # ---- the update clock and pruning -------------------------------------------------------------------
    def end_update(self) -> list[Entry]:
        """Close one context update; every `prune_every` updates, prune. Returns the dropped entries."""
        self.updates += 1
        return self.prune() if self.updates % self.prune_every == 0 else []

    def prune(self) -> list[Entry]:
        if self.policy == "staleness":
            # stale: unused after more than one update of its own
            drop = [
                e
                for e in self.entries.values()
                if e.is_harmful or (e.is_unused and self.updates - e.created > 1)
            ]
            keep = [e for e in self.entries.values() if e not in drop]
            # least recently active first (tagged, or added if never tagged), then least helpful, then oldest
            keep.sort(key=lambda e: (max(e.last_tagged, e.created), e.helpful, e.id))
        else:
            drop = [e for e in self.entries.values() if e.is_harmful or e.is_unused]
            keep = [e for e in self.entries.values() if e not in drop]
            self._rng.shuffle(keep)
        over = len(keep) - self.max_entries
        if over > 0:
            drop += keep[:over]
        for e in drop:
            del self.entries[e.id]
        self.stats["dropped"] += len(drop)
        return drop

    # ---- reading ----------------------------------------------------------------------------------------
    def render(self) -> str:
        """The playbook as the teacher (and the reflector) reads it: sections in order, empty ones left out."""
        parts = []
        for section in SECTIONS:
            lines = [e.render() for e in self.entries.values() if e.section == section]
            if lines:
                parts.append(f"## {section}\n" + "\n".join(lines))
        return "\n".join(parts)

    def state_dict(self) -> dict:
        return {
            "entries": [asdict(e) for e in self.entries.values()],
            "updates": self.updates,
            "next_id": self.next_id,
            "stats": dict(self.stats),
            "rng": self._rng.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.entries = {d["id"]: Entry(**d) for d in state["entries"]}
        self.updates, self.next_id, self.stats = state["updates"], state["next_id"], dict(state["stats"])
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))


def _parse_key(key) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str):
        digits = key.strip().strip("[]").removeprefix("ctx-")
        if digits.isdigit():
            return int(digits)
    return None

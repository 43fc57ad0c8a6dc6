"""The playbook: adds and skips, tags and the harmful / unused definitions, both pruning policies traced
by hand, rendering, and a state round trip."""

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.resd.playbook import MAX_ENTRY_CHARS, Playbook


def test_adds_skip_bad_ops_and_duplicates_and_count_them():
    pb = Playbook()
    e = pb.add("mistakes", "  an empty tape   needs a . transition ")
    assert e.key == "ctx-00001" and e.text == "an empty tape needs a . transition"
    assert pb.add("mistakes", "an empty tape needs a . transition") is None  # duplicate
    assert pb.add("no-such-section", "x") is None
    assert pb.add("others", "") is None
    assert pb.add("others", "x" * (MAX_ENTRY_CHARS + 1)) is None
    assert pb.add("others", None) is None
    assert (
        len(pb) == 1 and pb.stats["added"] == 1 and pb.stats["duplicates"] == 1 and pb.stats["bad_ops"] == 4
    )


def test_tags_and_the_harmful_and_unused_definitions():
    pb = Playbook()
    a, b, c = (pb.add("strategies", t) for t in ("a", "b", "c"))
    assert pb.tag("ctx-00001", "helpful") and pb.tag("[ctx-00002]", "harmful") and pb.tag(2, "helpful")
    assert pb.tag("ctx-00003", "neutral")
    assert (
        not pb.tag("ctx-00099", "helpful")
        and not pb.tag("ctx-00001", "great")
        and not pb.tag(None, "helpful")
    )
    assert pb.stats["bad_tags"] == 3 and pb.stats["tags"] == 4
    assert not a.is_harmful and not a.is_unused
    assert b.is_harmful  # harmful 1 >= helpful 1, and harmful > 0
    assert c.is_unused and c.last_tagged == 0  # a neutral tag counts as read, not as used


def test_staleness_prunes_harmful_and_stale_then_least_recently_tagged():
    pb = Playbook(max_entries=2, prune_every=2, policy="staleness")
    e = {t: pb.add("strategies", t) for t in ("old-unused", "harmful", "h1", "h2", "h3")}
    pb.tag(e["harmful"].key, "harmful")
    pb.tag(e["h1"].key, "helpful")
    assert pb.end_update() == []  # update 1: no pruning yet
    pb.tag(e["h2"].key, "helpful")
    pb.tag(e["h3"].key, "helpful")
    fresh = pb.add("strategies", "new-unused")  # created at update 1: not stale yet at update 2
    dropped = pb.end_update()  # update 2 prunes
    # harmful; unused since update 0 (> 1 update). Then 4 are left for a cap of 2: by last activity,
    # h1 (tagged at 0) goes, then of those active at 1 the least helpful: the fresh entry (0 helpful)
    assert [d.text for d in dropped] == ["old-unused", "harmful", "h1", "new-unused"]
    assert sorted(x.text for x in pb.entries.values()) == ["h2", "h3"]
    assert fresh.id not in pb.entries and pb.stats["dropped"] == 4


def test_staleness_gives_a_fresh_entry_one_update_before_it_counts_as_unused():
    pb = Playbook(max_entries=10, prune_every=1, policy="staleness")
    pb.add("others", "early")
    pb.end_update()  # update 1: "early" is unused for 1 update: kept
    assert len(pb) == 1
    assert [d.text for d in pb.end_update()] == ["early"]  # update 2: unused for 2 updates


def test_prioritized_drops_unused_and_harmful_then_random_helpful():
    pb = Playbook(max_entries=2, prune_every=1, policy="prioritized", seed=3)
    e = {t: pb.add("clues", t) for t in ("u", "bad", "g1", "g2", "g3", "g4")}
    pb.tag(e["bad"].key, "harmful")
    for t in ("g1", "g2", "g3", "g4"):
        pb.tag(e[t].key, "helpful")
    dropped = {d.text for d in pb.end_update()}
    assert {"u", "bad"} <= dropped and len(pb) == 2
    assert {x.text for x in pb.entries.values()} <= {"g1", "g2", "g3", "g4"}
    assert pb.stats["dropped"] == 4


def test_render_groups_sections_in_order():
    pb = Playbook()
    pb.add("others", "last")
    pb.add("strategies", "first")
    pb.tag("ctx-00002", "helpful")
    assert pb.render() == (
        "## strategies\n[ctx-00002] helpful=1 harmful=0 :: first\n## others\n[ctx-00001] helpful=0 harmful=0 :: last"
    )


def test_state_round_trip_and_bad_settings():
    pb = Playbook(policy="prioritized", seed=1)
    for t in ("a", "b", "c"):
        pb.add("heuristics", t)
    pb.tag(1, "helpful")
    pb.end_update()
    copy = Playbook(policy="prioritized")
    copy.load_state_dict(pb.state_dict())
    assert copy.render() == pb.render() and copy.updates == 1 and copy.next_id == 4
    assert copy._rng.random() == pb._rng.random()
    with pytest.raises(TenfoldError, match="policy"):
        Playbook(policy="lru")
    with pytest.raises(TenfoldError):
        Playbook(max_entries=0)

import pytest

from tenfold.core.cache import artefact_key, cached_artefact


def test_builds_once_and_keys_by_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path))
    calls = []

    def build(d):
        calls.append(d)
        (d / "weights.txt").write_text("w")

    a = cached_artefact("toy", {"steps": 10}, "v1", build)
    b = cached_artefact("toy", {"steps": 10}, "v1", build)
    assert a == b and len(calls) == 1 and (a / "weights.txt").read_text() == "w"
    c = cached_artefact("toy", {"steps": 20}, "v1", build)
    d = cached_artefact("toy", {"steps": 10}, "v2", build)
    assert len({a, c, d}) == 3 and len(calls) == 3
    cached_artefact("toy", {"steps": 10}, "v1", build, retrain=True)
    assert len(calls) == 4
    assert artefact_key("toy", {"a": 1, "b": 2}, "v") == artefact_key("toy", {"b": 2, "a": 1}, "v")


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path))

    def build(d):
        (d / "partial").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cached_artefact("toy", {}, "v1", build)
    assert list(tmp_path.iterdir()) == []


def test_build_seconds_leave_out_first_stages(tmp_path, monkeypatch):
    """A build that builds its first stage on the way records only its own time (a fake clock: the
    final's own work takes 4 s, its first stage's 25 s, and that stage's warm-up 5 s)."""
    import json

    import tenfold.core.cache as cache

    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "_build_clock", {"seconds": 0.0})
    now = [0.0]
    monkeypatch.setattr(cache.time, "perf_counter", lambda: now[0])

    def work(seconds):
        now[0] += seconds

    def drill(d):
        work(5)

    def stage1(d):
        work(1)
        cached_artefact("drill", {}, "v", drill)
        work(24)

    def final(d):
        work(2)
        cached_artefact("stage1", {}, "v", stage1)
        work(2)

    path = cached_artefact("final", {}, "v", final)
    record = json.loads((path / "artefact.json").read_text())
    assert record["build_seconds"] == 4 and record["first_stages_seconds"] == 30
    stage = json.loads(next(tmp_path.glob("stage1-*/artefact.json")).read_text())
    assert stage["build_seconds"] == 25 and stage["first_stages_seconds"] == 5
    leaf = json.loads(next(tmp_path.glob("drill-*/artefact.json")).read_text())
    assert leaf["build_seconds"] == 5 and "first_stages_seconds" not in leaf

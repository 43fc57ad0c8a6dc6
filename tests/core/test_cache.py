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


def test_failed_build_leaves_no_entry_and_the_next_build_resumes_its_work(tmp_path, monkeypatch):
    """A build that dies leaves no entry, only its hidden work directory; the next build of the same
    key starts in that directory (where a trainer finds its step checkpoints), `retrain` does not."""
    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path))
    seen = []

    def crashing(d):
        (d / "step-1").write_text("x")
        raise RuntimeError("interrupted")

    def build(d):
        seen.append(sorted(p.name for p in d.iterdir()))
        (d / "last").write_text("w")

    with pytest.raises(RuntimeError):
        cached_artefact("toy", {}, "v1", crashing)
    assert [p.name.startswith(".") for p in tmp_path.iterdir()] == [True]  # no entry, one hidden dir
    path = cached_artefact("toy", {}, "v1", build)
    assert seen == [["step-1"]] and sorted(p.name for p in path.iterdir()) == [
        "artefact.json",
        "last",
        "step-1",
    ]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    with pytest.raises(RuntimeError):
        cached_artefact("toy", {}, "v2", crashing)
    cached_artefact("toy", {}, "v2", build, retrain=True)
    assert seen[-1] == [] and [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_live_builds_directory_is_not_taken(tmp_path, monkeypatch):
    """Another process still building the same key keeps its directory; a dead one's is adopted."""
    import subprocess
    import sys

    from tenfold.core.cache import artefact_key

    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path))
    key = artefact_key("toy", {}, "v1")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for proc, mark in ((live, "live"), (dead, "dead")):
            (tmp_path / f".{key}.{proc.pid}.tmp").mkdir()
            (tmp_path / f".{key}.{proc.pid}.tmp" / mark).write_text("x")
        seen = []
        cached_artefact("toy", {}, "v1", lambda d: seen.append(sorted(p.name for p in d.iterdir())))
        assert seen == [["dead"]] and (tmp_path / f".{key}.{live.pid}.tmp" / "live").is_file()
    finally:
        live.kill()


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

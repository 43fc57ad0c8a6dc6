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

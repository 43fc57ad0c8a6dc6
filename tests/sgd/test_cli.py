"""`tenfold sgd bench`: --quick/--full are the reproduction's settings; bad input is a clear error."""

import json

import pytest
from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core.errors import TenfoldError


@pytest.mark.parametrize("flag,questions", [("--quick", 24), ("--full", 48)])
def test_bench_takes_the_reproductions_settings(monkeypatch, tmp_path, flag, questions):
    import tenfold.sgd.api as api

    seen = {}
    monkeypatch.setattr(api, "bench", lambda cfg, *a, **k: seen.setdefault("cfg", cfg) and {"summary": {}})
    monkeypatch.setattr("tenfold.sgd.bench.markdown_table", lambda summary: "table")
    out = CliRunner().invoke(app, ["sgd", "bench", flag, "--json", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert seen["cfg"].questions == questions
    assert json.loads((tmp_path / "r.json").read_text()) == {"summary": {}}


def test_bench_refuses_a_small_model_without_a_large_one():
    out = CliRunner().invoke(app, ["sgd", "bench", "--small", "tiny"])
    assert isinstance(out.exception, TenfoldError) and "needs a large" in str(out.exception)

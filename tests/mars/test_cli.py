"""`tenfold mars grid / search` end to end, and bad input as a one-line user error."""

import json

from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core.errors import TenfoldError
from tests.mars.test_search import fake_probe

runner = CliRunner()


def test_grid_prints_the_table_and_writes_json(llava_dir, tmp_path):
    out = tmp_path / "g.json"
    r = runner.invoke(
        app,
        [
            "mars",
            "grid",
            "-D",
            "16",
            "--ranks",
            "1,4",
            "--model",
            str(llava_dir),
            "--json",
            str(out),
            "--workers",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert set(res["table"]) == {"1,1", "1,4", "4,1", "4,4"}
    best = min(res["table"], key=res["table"].get)
    assert f"best pair: ({best.replace(',', ', ')})" in r.output


def test_search_reports_the_pair_and_its_cost(monkeypatch, tmp_path, llava_dir):
    def fake_run(cfg, model_path):
        rec = fake_probe(cfg)
        rec["test"] = {"ppl": 2.0, "accuracy": 0.5}
        return rec

    monkeypatch.setattr("tenfold.mars.search.run", fake_run)
    out = tmp_path / "s.json"
    r = runner.invoke(
        app, ["mars", "search", "-D", "512", "--tol", "0.05", "--model", str(llava_dir), "--json", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "chosen pair (vision rank, LLM rank): (2, 32)" in r.output
    assert "12.5x cheaper than the 36-run grid" in r.output
    assert json.loads(out.read_text())["choice"]["pair"] == [2, 32]


def test_bad_ranks_are_a_user_error():
    r = runner.invoke(app, ["mars", "grid", "--ranks", "4,x"])
    assert isinstance(r.exception, TenfoldError) and "comma-separated integers" in str(r.exception)
    r = runner.invoke(app, ["mars", "search", "--grid", "0,4"])
    assert isinstance(r.exception, TenfoldError)

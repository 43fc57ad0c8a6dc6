"""`tenfold comem check`: the skill probes on any checkpoint, through the CLI."""

import json

import pytest
from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core.models import build_preset, save_model


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    model, tok = build_preset("micro", seed=0)
    return str(save_model(model, tok, tmp_path_factory.mktemp("micro") / "model"))


def test_check_probes_an_untrained_model_to_near_zero(untrained):
    res = CliRunner().invoke(
        app, ["comem", "check", "--agent", untrained, "--memory", untrained, "--games", "2"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["agent"]["probes"] == 6 and out["agent"]["critical_right"] <= 1 / 6
    assert out["agent"]["think_format"] == 0.0  # random weights never write the trained reply form
    assert out["memory"]["facts"] > 0 and out["memory"]["fact_recall"] == 0.0


def test_check_rejects_zero_games(untrained):
    res = CliRunner().invoke(
        app, ["comem", "check", "--agent", untrained, "--memory", untrained, "--games", "0"]
    )
    assert res.exit_code != 0 and "games must be >= 1" in str(res.exception or res.output)


@pytest.mark.parametrize(
    "flag,steps,ks", [("--quick", [40, 80], [1, 8]), ("--full", [20, 40, 60, 80], [1, 2, 4, 8])]
)
def test_bench_takes_the_reproductions_settings(monkeypatch, tmp_path, flag, steps, ks):
    """`tenfold comem bench --quick/--full` runs what `tenfold reproduce comem` runs in that mode."""
    import tenfold.comem.api as api

    seen = {}
    monkeypatch.setattr(
        api, "bench", lambda cfg, quiet=False: seen.setdefault("cfg", cfg) and {"rows": [], "summary": {}}
    )
    monkeypatch.setattr("tenfold.comem.bench.markdown_tables", lambda result, summary: "table")
    out = CliRunner().invoke(app, ["comem", "bench", flag, "--json", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert seen["cfg"].steps == steps and seen["cfg"].ks == ks and seen["cfg"].k == 4
    assert json.loads((tmp_path / "r.json").read_text()) == {"rows": [], "summary": {}}


def test_run_plays_an_episode_with_given_models(untrained):
    out = CliRunner().invoke(
        app, ["comem", "run", "--steps", "12", "--agent", untrained, "--memory", untrained, "--no-verbose"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output[out.output.index("{") :])["steps"] >= 1

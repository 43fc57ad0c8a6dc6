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

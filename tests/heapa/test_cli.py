"""`tenfold heapa train` end to end on an untrained tiny policy (the warm start is patched out), and
bad input as a user error."""

import json

from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core.errors import TenfoldError
from tenfold.core.models import build_preset, save_model

runner = CliRunner()


def _patch_warm(monkeypatch, tmp_path):
    model, tok = build_preset("tiny", seed=0)
    path = save_model(model, tok, tmp_path / "policy")
    monkeypatch.setattr("tenfold.heapa.train.warm_policy", lambda *a, **kw: path)


def test_train_writes_metrics_and_resumes(tmp_path, monkeypatch):
    _patch_warm(monkeypatch, tmp_path)
    out = tmp_path / "run"
    # one step: 16 prompts x 8 rollouts, plus the 16 variants the policy writes
    args = ["heapa", "train", "--arm", "heap+aug+path", "--budget", "144", "--out", str(out), "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["rollouts"] >= 144
    assert (out / "last" / "rl_state.json").is_file()
    r = runner.invoke(app, [*args[:5], "288", *args[6:], "--resume"])
    assert r.exit_code == 0, r.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_unknown_arm_is_a_user_error(tmp_path, monkeypatch):
    _patch_warm(monkeypatch, tmp_path)
    r = runner.invoke(app, ["heapa", "train", "--arm", "best", "--out", str(tmp_path / "x")])
    assert isinstance(r.exception, TenfoldError)


def test_unknown_answer_format_is_a_user_error(tmp_path, monkeypatch):
    _patch_warm(monkeypatch, tmp_path)
    r = runner.invoke(app, ["heapa", "train", "--answers", "essay", "--out", str(tmp_path / "x")])
    assert isinstance(r.exception, TenfoldError) and "answers" in str(r.exception)


def test_bench_refuses_a_bad_worker_count():
    r = runner.invoke(app, ["heapa", "bench", "--workers", "0"])
    assert isinstance(r.exception, TenfoldError) and "workers" in str(r.exception)

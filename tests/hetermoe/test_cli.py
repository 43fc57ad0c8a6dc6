"""`tenfold hetermoe` commands: outputs written, bad input as a one-line error."""

import json

import pytest
from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core.errors import TenfoldError
from tenfold.hetermoe.costmodel import CostModel, Workload, get_model, load_profiles, parse_cluster
from tenfold.hetermoe.schedules import Setting, hetero_pp

runner = CliRunner()


def test_plan_writes_json_and_gantt(tmp_path):
    out, png = tmp_path / "plan.json", tmp_path / "g.png"
    r = runner.invoke(app, ["hetermoe", "plan", "--seq", "8192", "--json", str(out), "--gantt", str(png)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["times_ms"]["heter_moe"] <= min(d["times_ms"]["zp"], d["times_ms"]["ep"])
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--cluster", "6xA40"],
        ["plan", "--model", "gpt-5"],
        ["simulate", "--schedule", "magic"],
        ["plan", "--profile", "/nonexistent.json", "--cluster", "1xA40,1xV100"],
    ],
)
def test_bad_input_is_a_user_error(args):
    # `tenfold.cli.main` prints a TenfoldError as one line and exits 2; here we see the exception itself
    r = runner.invoke(app, ["hetermoe", *args])
    assert isinstance(r.exception, TenfoldError), r.exception


def test_profile_measures_this_machine_and_plans_with_it(tmp_path):
    out = tmp_path / "prof.json"
    r = runner.invoke(app, ["hetermoe", "profile", "--out", str(out), "--name", "here", "--seq", "256"])
    assert r.exit_code == 0, r.output
    p = load_profiles(out)["here"]
    assert p.matmul_tflops > 0 and p.attn_core_tflops > 0 and p.link_gbps > 0
    r = runner.invoke(
        app,
        [
            "hetermoe",
            "plan",
            "--cluster",
            "2xA40,2xhere",
            "--profile",
            str(out),
            "--model",
            "moe-tiny",
            "--seq",
            "256",
        ],
    )
    assert r.exit_code == 0, r.output


def test_pipeline_with_one_micro_batch_is_the_serial_sum():
    s = Setting(CostModel(get_model("mixtral-1.3b"), Workload(4096, 2)), parse_cluster("4xA40,4xV100"))
    tl = hetero_pp(s, 1)
    assert tl.makespan == pytest.approx(sum(t.duration for t in tl.tasks.values()))
    assert hetero_pp(s, 2).makespan < 2 * tl.makespan  # two micro-batches overlap across the stages

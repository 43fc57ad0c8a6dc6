"""Benchmarks in the competitions' CSV format, and `tenfold autospec verify --onnx/--vnnlib/--instances`."""

import csv
import gzip
import json

import pytest
import torch
from typer.testing import CliRunner

from tenfold.autospec.instances import read_instances, run_instances, summary
from tenfold.autospec.nets import export_onnx
from tenfold.cli import app
from tenfold.core.errors import TenfoldError

runner = CliRunner()

HEADER = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "(declare-const Y_0 Real)\n"
BOX = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    """y = x0 + 2 x1 behind an Add normalisation and a ReLU layer (both units stay positive on the box);
    on [0, 1]^2 y ranges over [0, 3]. Two properties hold, one is violated."""
    d = tmp_path_factory.mktemp("bench")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("m", torch.tensor([[1.0, 1.0]]))
            self.fc = torch.nn.Linear(2, 2)
            self.out = torch.nn.Linear(2, 1)
            with torch.no_grad():
                self.fc.weight.copy_(torch.eye(2)), self.fc.bias.zero_()
                self.out.weight.copy_(torch.tensor([[1.0, 2.0]])), self.out.bias.fill_(-3.0)

        def forward(self, x):
            return self.out(torch.relu(self.fc(x + self.m)))

    export_onnx(Net(), 2, d / "net.onnx")
    (d / "above.vnnlib").write_text(HEADER + BOX + "(assert (>= Y_0 3.5))\n")  # holds
    (d / "below.vnnlib").write_text(HEADER + BOX + "(assert (or (and (<= Y_0 -0.5)) (and (>= Y_0 3.1))))\n")
    with gzip.open(d / "hit.vnnlib.gz", "wt") as f:  # violated: y >= 2.5 near (1, 1)
        f.write(HEADER + BOX + "(assert (>= Y_0 2.5))\n")
    (d / "instances.csv").write_text(
        "net.onnx,above.vnnlib,10\nnet.onnx,below.vnnlib,10\nnet.onnx,hit.vnnlib.gz,10\n"
    )
    return d


def test_a_benchmark_runs_with_a_results_csv(bench_dir, tmp_path):
    rows = read_instances(bench_dir / "instances.csv")
    out = tmp_path / "results.csv"
    results = run_instances(rows, "tenfold", out_csv=out, quiet=True)
    assert [r["result"] for r in results] == ["holds", "holds", "violated"]
    x = results[2]["counterexample"]
    assert x[0] + 2 * x[1] >= 2.5 - 1e-5 and results[2]["rechecked"]
    written = list(csv.DictReader(out.open()))
    assert [r["result"] for r in written] == ["holds", "holds", "violated"]
    assert summary(results)["holds"] == 2
    plain = run_instances(rows, "marabou", quiet=True)  # Marabou's own readers on the same files
    assert [r["result"] for r in plain] == ["holds", "holds", "violated"] and plain[2]["rechecked"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("net.onnx,above.vnnlib\n", "line 1: expected onnx,vnnlib,timeout"),
        ("net.onnx,above.vnnlib,soon\n", "line 1: timeout 'soon'"),
        ("net.onnx,above.vnnlib,10\nnet.onnx,missing.vnnlib,10\n", "line 2: .*missing.vnnlib does not exist"),
        ("\n", "lists no instances"),
    ],
)
def test_bad_instance_files_name_the_line(bench_dir, text, match):
    bad = bench_dir / "bad.csv"
    bad.write_text(text)
    with pytest.raises(TenfoldError, match=match):
        read_instances(bad)


def test_cli_one_property_and_a_benchmark(bench_dir, tmp_path):
    r = runner.invoke(
        app,
        [
            "autospec",
            "verify",
            "--onnx",
            str(bench_dir / "net.onnx"),
            "--vnnlib",
            str(bench_dir / "above.vnnlib"),
        ],
    )
    assert r.exit_code == 0 and r.output.startswith("holds"), r.output
    out, js = tmp_path / "r.csv", tmp_path / "r.json"
    r = runner.invoke(
        app,
        [
            "autospec",
            "verify",
            "--instances",
            str(bench_dir / "instances.csv"),
            "--out",
            str(out),
            "--json",
            str(js),
        ],
    )
    assert r.exit_code == 0 and "3 instances: 2 holds, 1 violated, 0 unknown" in r.output, r.output
    assert json.loads(js.read_text())["summary"]["violated"] == 1 and out.exists()
    r = runner.invoke(
        app,
        [
            "autospec",
            "verify",
            "--engine",
            "marabou",
            "--onnx",
            str(bench_dir / "net.onnx"),
            "--vnnlib",
            str(bench_dir / "hit.vnnlib.gz"),
        ],
    )
    assert r.exit_code == 0 and r.output.startswith("violated") and "re-checked" in r.output, r.output


@pytest.mark.parametrize(
    "args, match",
    [
        (["--vnnlib", "p.vnnlib"], "--onnx is required"),
        (["--onnx", "n.onnx"], "exactly one of"),
        (["--onnx", "n.onnx", "--instances", "x.csv"], "not used with --instances"),
        (["--instances", "x.csv", "--engine", "nnv"], "unknown engine"),
    ],
)
def test_cli_bad_arguments_are_user_errors(bench_dir, args, match):
    r = runner.invoke(
        app, ["autospec", "verify", *[str(bench_dir / a) if a.endswith((".csv",)) else a for a in args]]
    )
    assert (
        isinstance(r.exception, TenfoldError)
        and r.exception.args
        and __import__("re").search(match, str(r.exception))
    )


def test_property_and_network_sizes_must_match(bench_dir, tmp_path):
    p = tmp_path / "three.vnnlib"
    p.write_text(
        HEADER.replace("X_1 Real)\n", "X_1 Real)\n(declare-const X_2 Real)\n")
        + BOX
        + "(assert (>= X_2 0))\n(assert (<= X_2 1))\n(assert (>= Y_0 9))\n"
    )
    r = runner.invoke(app, ["autospec", "verify", "--onnx", str(bench_dir / "net.onnx"), "--vnnlib", str(p)])
    assert isinstance(r.exception, TenfoldError) and "3 inputs" in str(r.exception)


def test_compare_counts_agreement_and_time_by_hand():
    from tenfold.autospec.instances import compare

    ours = [
        {"result": "holds", "seconds": 1.0},
        {"result": "unknown", "seconds": 5.0},
        {"result": "violated", "seconds": 1.0},
    ]
    theirs = [
        {"result": "holds", "seconds": 4.0},
        {"result": "holds", "seconds": 1.0},
        {"result": "holds", "seconds": 2.0},
    ]
    c = compare(ours, theirs)
    assert (c["both_decided"], c["disagree"], c["only_ours"], c["only_theirs"]) == (2, 1, 0, 1)
    assert c["time_ratio"] == pytest.approx(7 / 7) and c["time_ratio_both_decided"] == pytest.approx(6 / 2)

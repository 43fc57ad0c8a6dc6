"""`tenfold autospec` commands end to end on a small system, and bad input as a user error."""

import json

import pytest
from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core.errors import TenfoldError

runner = CliRunner()


def test_generate_train_score_verify(tmp_path):
    specs, net, props = tmp_path / "s.json", tmp_path / "n.onnx", tmp_path / "props"
    small = ["--traces", "10", "--steps", "40"]
    assert (
        runner.invoke(
            app,
            [
                "autospec",
                "generate",
                "--system",
                "cc",
                "--out",
                str(specs),
                "--vnnlib-dir",
                str(props),
                *small,
            ],
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(app, ["autospec", "train", "--system", "cc", "--out", str(net), *small]).exit_code == 0
    )
    r = runner.invoke(app, ["autospec", "score", str(specs)])
    assert r.exit_code == 0 and 0 < json.loads(r.output)["f1"] <= 1
    out = tmp_path / "v.json"
    r = runner.invoke(
        app, ["autospec", "verify", "--onnx", str(net), "--specs", str(specs), "--json", str(out)]
    )
    assert r.exit_code == 0, r.output
    verdicts = json.loads(out.read_text())
    assert len(verdicts) == len(list(props.iterdir())) and all(
        v["status"] in ("verified", "refuted", "unknown") for v in verdicts
    )
    assert all(v["rechecked"] for v in verdicts if v["status"] == "refuted")


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--system", "dns"],
        ["generate", "--method", "oracle"],
        ["score", "/no/such.json"],
        ["verify", "--onnx", "/no/such.onnx", "--specs", "/no/such.json"],
    ],
)
def test_bad_input_is_a_user_error(args):
    r = runner.invoke(app, ["autospec", *args])
    assert isinstance(r.exception, TenfoldError), r.exception


def test_bench_refuses_a_bad_worker_count():
    r = runner.invoke(app, ["autospec", "bench", "--workers", "0"])
    assert isinstance(r.exception, TenfoldError) and "workers" in str(r.exception)


def test_a_missing_optional_package_names_the_extra(monkeypatch, tmp_path):
    """Without the `autospec` extra, reading an ONNX network is one TenfoldError saying what to install."""
    import sys

    from tenfold.autospec.verify import load_net

    monkeypatch.setitem(sys.modules, "onnx", None)  # what `import onnx` sees when it is not installed
    with pytest.raises(TenfoldError, match=r"tenfold\[autospec\]"):
        load_net(tmp_path / "net.onnx")

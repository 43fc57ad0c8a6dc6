import json
import math

import pytest
from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core import reproduce as rp
from tenfold.core.bench import bench_batched_decode, bench_kv_cache, bench_shared_prefix, plot_results
from tenfold.core.errors import TenfoldError


def test_pass_is_computed_from_value_and_target():
    assert rp.Row("c", "p", "m", 2.0, 1.5).passed
    assert not rp.Row("c", "p", "m", 1.0, 1.5).passed
    assert rp.Row("c", "p", "m", 0.1, 0.2, higher_is_better=False).passed
    assert not rp.Row("c", "p", "m", 0.3, 0.2, higher_is_better=False).passed
    assert not rp.Row("c", "p", "m", math.nan, 0.0).passed
    assert rp.Row("c", "p", "m", 2.0, 1.5).to_dict()["pass"] is True


@pytest.fixture
def fake_systems(monkeypatch):
    monkeypatch.setattr(rp, "REGISTRY", {})

    @rp.register("alpha", "a fake system")
    def _alpha(ctx):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.plot([0, 1], [0, 1])
        plt.savefig(ctx.plot_path("line"))
        plt.close()
        return [
            rp.Row("works", "paper says 2x", "speedup", 2.5, 2.0),
            rp.Row("misses", "1%", "err", 0.5, 0.1, False),
        ]

    @rp.register("beta")
    def _beta(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(rp, "discover", lambda: rp.REGISTRY)


def test_run_writes_json_and_report(tmp_path, fake_systems):
    crashed = rp.run_reproductions(["alpha", "beta"], "quick", tmp_path, echo=lambda *a: None)
    assert crashed == 1
    alpha = json.loads((tmp_path / "alpha.json").read_text())
    assert alpha["system"] == "alpha" and alpha["mode"] == "quick" and alpha["error"] is None
    assert [r["pass"] for r in alpha["rows"]] == [True, False]
    assert (tmp_path / "alpha_line.png").is_file() and alpha["plots"] == ["alpha_line.png"]
    beta = json.loads((tmp_path / "beta.json").read_text())
    assert "boom" in beta["error"] and beta["rows"] == []
    report = (tmp_path / "REPORT.md").read_text()
    assert "1 of 2 rows pass" in report
    assert "| alpha | quick | works | paper says 2x | `speedup` | 2.5 | >= 2 | yes |" in report
    assert "**NO**" in report and "crashed" in report and "![alpha_line.png](alpha_line.png)" in report


def test_unknown_system_and_mode(tmp_path, fake_systems):
    with pytest.raises(TenfoldError, match="no reproduction registered"):
        rp.run_reproductions(["gamma"], "quick", tmp_path)
    with pytest.raises(TenfoldError, match="mode"):
        rp.run_reproductions(["alpha"], "medium", tmp_path)


def test_core_is_discovered():
    assert "core" in rp.discover()


def test_benchmarks_run_and_plot(tmp_path):
    kv = bench_kv_cache("tiny", prompt_len=16, new_tokens=8)
    dec = bench_batched_decode("tiny", n=4, prompt_len=16, new_tokens=8)
    pre = bench_shared_prefix("tiny", n=3, prefix_len=64, new_tokens=8)
    for r in (kv, dec, pre):
        assert [a.tokens for a in r.arms] == [r.arms[0].tokens] * 2
        assert r.ratio == pytest.approx(r.arms[0].tokens_per_s / r.arms[1].tokens_per_s)
    assert plot_results([kv, dec, pre], tmp_path / "p.png").stat().st_size > 1000


def test_cli_errors_are_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "tenfold", "reproduce", "nosuch", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert (
        r.stderr.strip().startswith("error:")
        and "nosuch" in r.stderr
        and len(r.stderr.strip().splitlines()) == 1
    )


def test_cli_generate_and_models():
    runner = CliRunner()
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "moe-tiny" in r.output
    r = runner.invoke(app, ["generate", "hi", "--model", "tiny", "--max-tokens", "4"])
    assert r.exit_code == 0, r.output

import subprocess
import sys

from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core.errors import TenfoldError

runner = CliRunner()


def test_t2po_commands_are_listed():
    out = runner.invoke(app, ["t2po", "--help"])
    assert out.exit_code == 0
    for cmd in ("agent", "calibrate", "train", "evaluate", "bench"):
        assert cmd in out.output


def test_unknown_arm_is_a_user_error_before_any_work():
    r = runner.invoke(app, ["t2po", "evaluate", "--arm", "ppo", "--tasks", "1"])
    assert isinstance(r.exception, TenfoldError) and "unknown arm" in str(r.exception)
    # through the real entry point: one line on stderr, exit status 2
    p = subprocess.run(
        [sys.executable, "-c", "from tenfold.cli import main; main()", "t2po", "train", "--arm", "ppo"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stderr.strip().startswith("error: unknown arm 'ppo'")

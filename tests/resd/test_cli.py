from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.core.errors import TenfoldError

runner = CliRunner()


def test_resd_commands_are_listed():
    out = runner.invoke(app, ["resd", "--help"])
    assert out.exit_code == 0
    for cmd in ("warm", "train", "evaluate", "bench"):
        assert cmd in out.output


def test_grpo_or_unknown_arm_in_train_is_a_user_error_before_any_work():
    for arm in ("grpo8", "ppo"):
        r = runner.invoke(app, ["resd", "train", "--arm", arm])
        assert isinstance(r.exception, TenfoldError) and "train runs one of" in str(r.exception)

"""The one list of systems (`tenfold.systems`): the CLI, reproduce and artefacts all follow it, and
starting the CLI stays light."""

import subprocess
import sys

from typer.testing import CliRunner

from tenfold import systems
from tenfold.cli import app
from tenfold.core.reproduce import discover


def test_every_built_system_is_mounted_and_reproduced_in_the_lists_order():
    with_cli = [s.name for s, _ in systems.built("cli")]
    assert {"cake", "comem", "sgd", "heapa", "hetermoe", "autospec", "cav"} <= set(with_cli)
    help_text = CliRunner().invoke(app, ["--help"]).output
    for name in with_cli:
        assert name in help_text
    assert list(discover()) == [s.name for s in systems.SYSTEMS if s.name in discover()]
    assert list(discover())[0] == "core"


def test_a_listed_system_without_a_package_is_skipped():
    ghost = systems.System("nonexistent_system", "not built yet")
    assert ghost.find("cli") is None and ghost.find("reproduce") is None
    assert systems.order("nonexistent_system") == len(systems.SYSTEMS)


def test_cli_start_up_imports_neither_torch_nor_transformers():
    code = (
        "import sys, tenfold.cli; "
        "heavy = [m for m in ('torch', 'transformers', 'numpy', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_package_export_resolves():
    """The lazy re-exports name real objects (a typo would only show when a user asks for the name)."""
    import importlib

    for package in ["tenfold.core", "tenfold.rl"] + [s.module for s, _ in systems.built("cli")]:
        module = importlib.import_module(package)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"

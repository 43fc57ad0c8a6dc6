"""Shipped artefacts: look-up order, verification, stale and damaged entries, shipping, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tenfold.core import artefacts as arts
from tenfold.core.cache import Artefact, ArtefactError, cached_artefact, forget_shipped, read_manifest


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """An empty shipped folder and user cache, and a clean registry entry 'toy' afterwards."""
    shipped, cache = tmp_path / "shipped", tmp_path / "cache"
    monkeypatch.setenv("TENFOLD_ARTEFACTS", str(shipped))
    monkeypatch.setenv("TENFOLD_CACHE", str(cache))
    forget_shipped()
    yield shipped, cache
    for name in ("toy", "toy-model", "toy-first"):
        arts.RECIPES.pop(name, None)
    forget_shipped()


class Toy:
    """A registered toy artefact whose recipe (`steps`) the test can change, counting builds."""

    def __init__(self, steps: int = 3):
        self.steps, self.builds = steps, 0

    def build(self, d: Path) -> None:
        self.builds += 1
        (d / "out").mkdir()
        (d / "out" / "weights.bin").write_bytes(bytes(range(256)) * 4 * self.steps)
        (d / "out" / "scratch.txt").write_text("not shipped")

    def artefact(self) -> Artefact:
        return Artefact("toy", {"steps": self.steps, "lr": 0.1}, "v1", self.build)

    def register(self, **kw) -> arts.ShippedRecipe:
        arts.register_artefact("toy", "toysys", self.artefact, ship=("out/weights.bin",), minutes=7, **kw)
        return arts.RECIPES["toy"]


def test_lookup_order_shipped_then_cache_then_build(dirs, capsys):
    shipped, cache = dirs
    toy = Toy()
    entry = arts.ship(toy.register(), echo=lambda *_: None)
    assert toy.builds == 1 and entry["build_seconds"] is not None
    # the manifest records each shipped file with its size and sha256, the rebuild command, the machine
    manifest = read_manifest(shipped)
    key = toy.artefact().key
    assert set(manifest[key]["files"]) == {"out/weights.bin", "artefact.json"}
    assert manifest[key]["rebuild"] == "tenfold artefacts build toy --ship --retrain"
    assert not (shipped / key / "out" / "scratch.txt").exists()
    # an empty user cache: the shipped entry is served, nothing is trained

    shutil.rmtree(cache)
    assert toy.artefact().path() == shipped / key and toy.builds == 1
    # --retrain and shipped=False go to the user cache
    assert toy.artefact().path(retrain=True) == cache / key and toy.builds == 2
    assert toy.artefact().path(shipped=False) == cache / key and toy.builds == 2
    assert arts.verify() == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_shipped_file_is_never_served(dirs, capsys, damage):
    shipped, cache = dirs
    toy = Toy()
    arts.ship(toy.register(), echo=lambda *_: None)
    key = toy.artefact().key
    f = shipped / key / "out" / "weights.bin"
    data = bytearray(f.read_bytes())
    if damage == "flip":
        data[100] ^= 0x01
        f.write_bytes(bytes(data))
    elif damage == "truncate":
        f.write_bytes(bytes(data[:-10]))
    else:
        f.unlink()
    forget_shipped()

    shutil.rmtree(cache, ignore_errors=True)
    before = sorted(p.name for p in (shipped / key).rglob("*"))
    path = toy.artefact().path()
    assert path == cache / key and toy.builds == 2  # rebuilt into the user cache
    err = capsys.readouterr().err
    assert "shipped artefact toy" in err and "damaged" in err and "weights.bin" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in (shipped / key).rglob("*")) == before  # the shipped folder is not touched
    problems = arts.verify()
    assert len(problems) == 1 and "weights.bin" in problems[0]
    st = arts.status(arts.RECIPES["toy"])
    assert st.state == "cache" and "damaged" in st.detail


def test_stale_shipped_entry_is_reported_and_rebuilt(dirs, capsys):
    shipped, cache = dirs
    toy = Toy(steps=3)
    arts.ship(toy.register(), echo=lambda *_: None)
    old_key = toy.artefact().key
    toy.steps = 4  # a recipe change without a re-ship
    capsys.readouterr()
    path = toy.artefact().path()
    assert path == cache / toy.artefact().key and path.name != old_key and toy.builds == 2
    err = capsys.readouterr().err
    stale = [line for line in err.splitlines() if "is stale" in line]
    assert len(stale) == 1 and "steps: 3 -> 4" in stale[0] and "rebuild" in stale[0]
    problems = arts.verify()
    assert any("today's recipe gives" in p for p in problems)
    assert arts.status(arts.RECIPES["toy"]).state == "cache"
    # a look-up of another recipe of the same kind (a first stage, say) says nothing about staleness
    capsys.readouterr()
    cached_artefact("toy", {"steps": 99}, "v1", toy.build)
    assert "is stale" not in capsys.readouterr().err


@pytest.mark.parametrize("text", ["{not json", '{"artefacts": []}', "\xff\xfe"])
def test_unreadable_manifest_falls_back_to_the_user_cache(dirs, capsys, text):
    shipped, cache = dirs
    toy = Toy()
    arts.ship(toy.register(), echo=lambda *_: None)
    (shipped / "manifest.json").write_bytes(text.encode("latin-1"))
    forget_shipped()

    shutil.rmtree(cache)
    assert toy.artefact().path() == cache / toy.artefact().key and toy.builds == 2
    toy.artefact().path()
    err = capsys.readouterr().err
    assert err.count("shipped artefacts are ignored") == 1 and "manifest.json" in err
    with pytest.raises(ArtefactError, match="manifest"):
        arts.verify()


def test_unwritable_cache_is_one_clear_error(dirs, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("TENFOLD_CACHE", str(blocker / "cache"))  # a path under a file cannot be created
    toy = Toy()
    with pytest.raises(ArtefactError, match="cannot write the artefact cache .*TENFOLD_CACHE"):
        toy.artefact().path()
    assert toy.builds == 0


def test_training_plan_names_what_will_train(dirs):
    toy = Toy()
    toy.register()
    lines: list[str] = []
    assert arts.training_plan(["toy"], lines.append) == pytest.approx(7)
    assert "will train 1 artefact" in lines[0] and "toy" in lines[1] and "7 min" in lines[1]
    arts.ship(arts.RECIPES["toy"], echo=lambda *_: None)
    lines.clear()
    assert arts.training_plan(["toy"], lines.append) == 0 and "nothing to train" in lines[0]


def _tiny_model_recipe(dtype: str) -> Artefact:
    from tenfold.core.models import build_preset, save_model

    def build(d: Path) -> None:
        model, tok = build_preset("tiny", seed=1)
        save_model(model, tok, d / "train" / "last")
        (d / "train" / "last" / "optimizer.safetensors").write_bytes(b"\0" * 64)  # not recorded: not shipped

    art = Artefact("toy-model", {"preset": "tiny"}, "v1", build)
    arts.register_artefact("toy-model", "toysys", lambda: art, ship=("train/last",), minutes=1, dtype=dtype)
    return art


def test_float16_shipping_halves_weights_and_loads_back_as_float32(dirs):
    from tenfold.core.models import load_model

    art = _tiny_model_recipe("float16")
    entry = arts.ship(arts.RECIPES["toy-model"], echo=lambda *_: None)
    assert "train/last/optimizer.safetensors" not in entry["files"]
    assert {"train/last/model.safetensors", "train/last/config.json", "train/last/tenfold.json"} <= set(
        entry["files"]
    )
    cached = art.path(shipped=False) / "train" / "last" / "model.safetensors"
    shipped = art.path() / "train" / "last"
    assert shipped.parent.parent.parent.name == dirs[0].name  # served from the shipped folder
    assert (shipped / "model.safetensors").stat().st_size < 0.55 * cached.stat().st_size
    model, _ = load_model(shipped)  # the shipped checkpoint's own sha256 record was rewritten
    ref = load_file(str(cached))
    for name, p in model.state_dict().items():
        if name in ref:
            assert p.dtype == torch.float32
            assert torch.equal(p, ref[name].half().float())


def test_cli_list_verify_build(dirs):
    from typer.testing import CliRunner

    from tenfold.cli import app

    shipped, _ = dirs
    toy = Toy()
    toy.register()
    runner = CliRunner()
    res = runner.invoke(app, ["artefacts", "build", "toy", "--ship"])
    assert res.exit_code == 0, res.output
    assert "shipped toy" in res.output and toy.builds == 1
    res = runner.invoke(app, ["artefacts", "list", "toy"])
    assert res.exit_code == 0 and "shipped" in res.output and toy.artefact().key in res.output
    res = runner.invoke(app, ["artefacts", "verify", "toy"])
    assert res.exit_code == 0 and "0 problem(s)" in res.output
    (shipped / toy.artefact().key / "out" / "weights.bin").write_bytes(b"garbage")
    forget_shipped()
    res = runner.invoke(app, ["artefacts", "verify", "toy"])
    assert res.exit_code == 1 and "weights.bin" in res.output
    res = runner.invoke(app, ["artefacts", "build", "nonesuch"])
    assert res.exit_code != 0 and isinstance(res.exception, ArtefactError)
    # --retrain rebuilds even when the user cache has the recipe
    res = runner.invoke(app, ["artefacts", "build", "toy", "--ship", "--retrain"])
    assert res.exit_code == 0 and toy.builds == 2 and arts.verify(["toy"]) == []


def test_shipped_artefacts_match_todays_recipes():
    """The repo's shipped folder: every file present with its sha256, every key recomputed from today's
    recipe, and every artefact the reproductions need shipped. A recipe change without
    `tenfold artefacts build NAME --ship` fails here, not on a user's machine an hour into training."""
    forget_shipped()
    problems = arts.verify()
    assert problems == [], "\n".join(problems)
    manifest = read_manifest()
    from tenfold.core.reproduce import discover

    needed = {a for r in discover().values() for a in r.artefacts}
    shipped = {e["name"] for e in manifest.values()}
    assert needed <= set(arts.discover()), f"unregistered: {needed - set(arts.discover())}"
    assert needed <= shipped, f"needed by a reproduction, not shipped: {sorted(needed - shipped)}"
    files = [f"{key}/{rel}" for key, e in manifest.items() for rel in e["files"]]
    repo = arts.shipped_root().parent
    if (repo / ".git").exists() and shutil.which("git"):  # a git-ignored shipped file never reaches a clone
        ignored = subprocess.run(
            ["git", "check-ignore", "--no-index", *[f"artefacts/{f}" for f in files]],
            cwd=repo,
            capture_output=True,
            text=True,
        ).stdout.split()
        assert ignored == [], f"git ignores shipped files: {ignored}"
    total = sum(e["size"] for e in manifest.values())
    assert total <= 60e6, f"the shipped folder holds {total / 1e6:.1f} MB (limit 60 MB)"
    assert all(json.loads(json.dumps(e["quality"])) for e in manifest.values())


def test_reproduce_says_what_it_will_train_and_fails_in_one_line(dirs, tmp_path, monkeypatch):
    from tenfold.core import reproduce as rep

    toy = Toy()
    toy.register()

    def fn(ctx):
        toy.artefact().path()
        return [rep.Row("toy claim", "-", "toy_metric", 1.0, 0.5)]

    monkeypatch.setitem(rep.REGISTRY, "toysys", rep.Reproduction("toysys", "toy", fn, ("toy",)))
    monkeypatch.setattr(rep, "discover", lambda: rep.REGISTRY)
    lines: list[str] = []
    assert rep.run_reproductions(["toysys"], "quick", tmp_path / "out", True, lines.append) == 0
    text = "\n".join(lines)
    assert "will train 1 artefact" in text and "toy: missing" in text
    assert "[reproduce 1/1] toysys (quick)" in text and "toysys done in" in text
    # the second run finds it in the user cache; an unwritable cache is one line, not a traceback
    lines.clear()
    rep.run_reproductions(["toysys"], "quick", tmp_path / "out", True, lines.append)
    assert "nothing to train" in lines[0]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("TENFOLD_CACHE", str(blocker / "cache"))
    lines.clear()
    assert rep.run_reproductions(["toysys"], "quick", tmp_path / "out", True, lines.append) == 1
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 1 and "set TENFOLD_CACHE" in failed[0] and "Traceback" not in "\n".join(lines)
    assert json.loads((tmp_path / "out" / "toysys.json").read_text())["error"].startswith("cannot write")


def test_training_plan_adds_missing_first_stages(dirs):
    """A missing artefact's build also trains its missing first stages: the plan lists them, first."""
    first, toy = Toy(steps=1), Toy(steps=2)
    arts.register_artefact(
        "toy-first", "toysys", lambda: Artefact("toy-first", {"s": 1}, "v1", first.build), ("out",), minutes=5
    )
    toy.register(needs=("toy-first",))
    lines = []
    assert arts.training_plan(["toy"], lines.append) == pytest.approx(12)
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == ["[artefacts]   toy-first", "[artefacts]   toy"]
    arts.ship(arts.RECIPES["toy-first"], echo=lambda *_: None)
    lines.clear()
    assert arts.training_plan(["toy"], lines.append) == pytest.approx(7) and len(lines) == 2
    arts.ship(arts.RECIPES["toy"], echo=lambda *_: None)
    lines.clear()
    forget_shipped()
    arts.RECIPES["toy-first"] = arts.ShippedRecipe(  # a shipped final needs none of its first stages
        "toy-first", "toysys", lambda: Artefact("toy-first", {"s": 99}, "v1", first.build), ("out",), 5
    )
    assert arts.training_plan(["toy"], lines.append) == 0


def test_default_quality_is_the_final_checkpoint_loss(tmp_path):
    for folder, losses in (("train/last", [3.0] * 50 + [1.0] * 50), ("train/step-000050", [3.0] * 50)):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "trainer.json").write_text(json.dumps({"losses": losses}))
    assert arts.default_quality(tmp_path) == {"train/last: final train loss": 1.0}

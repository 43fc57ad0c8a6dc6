"""The shipped artefacts: which trained models the reproductions and CLI defaults need, how each is
rebuilt, and `tenfold artefacts list | verify | build [--ship]`.

A system registers each artefact it needs with `register_artefact(name, artefact_fn, ...)` in its
`train.py`, where `artefact_fn()` returns today's `Artefact` (kind, recipe config, data version, build).
`build --ship` trains it into the user cache (or takes the cached entry of the same recipe), copies the
files the loaders read into `artefacts/<key>/` (weights optionally stored as float16 and widened back
to float32 on load), and rewrites `artefacts/manifest.json` with each file's size and sha256, the
rebuild command, the quality measured at build time and how long the build took on which machine.
"""

from __future__ import annotations

import importlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tenfold import systems
from tenfold.core.cache import (
    DONE_FILE,
    MANIFEST_FILE,
    Artefact,
    ArtefactError,
    cache_root,
    check_files,
    forget_shipped,
    machine,
    read_manifest,
    shipped_root,
)
from tenfold.core.io import atomic_write_text, file_sha256

SHIP_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class ShippedRecipe:
    """A registered artefact: `artefact()` is today's recipe; `ship` the entry-relative files and folders
    that the loaders read (a folder holding a `tenfold.json` ships the files recorded there);
    `minutes` a rough build time on 2 CPU cores for estimates before the first ship, its own (first stages
    not included); `needs` the registered first stages its build trains on its way when they are missing;
    `quality(entry_dir)` what to record about the trained artefact."""

    name: str
    system: str
    artefact: Callable[[], Artefact]
    ship: tuple[str, ...]
    minutes: float
    dtype: str = "float32"
    quality: Callable[[Path], dict] | None = None
    doc: str = ""
    needs: tuple[str, ...] = ()

    def __post_init__(self):
        if self.dtype not in SHIP_DTYPES:
            raise ValueError(f"dtype must be one of {SHIP_DTYPES}, got {self.dtype!r}")


RECIPES: dict[str, ShippedRecipe] = {}


def register_artefact(
    name: str,
    system: str,
    artefact: Callable[[], Artefact],
    ship: tuple[str, ...],
    minutes: float,
    dtype: str = "float32",
    quality: Callable[[Path], dict] | None = None,
    doc: str = "",
    needs: tuple[str, ...] = (),
) -> None:
    RECIPES[name] = ShippedRecipe(name, system, artefact, ship, minutes, dtype, quality, doc, tuple(needs))


def discover() -> dict[str, ShippedRecipe]:
    """Import every built system's `train` module, where its artefacts are registered."""
    for system, module in systems.built("train"):
        if system.name != "core":  # core trains nothing of its own to ship
            importlib.import_module(module)
    return RECIPES


def resolve(names: list[str] | None) -> list[ShippedRecipe]:
    recipes = dict(sorted(discover().items(), key=lambda kv: systems.order(kv[1].system)))
    if not names:
        return list(recipes.values())
    unknown = [n for n in names if n not in recipes and n not in {r.system for r in recipes.values()}]
    if unknown:
        raise ArtefactError(f"unknown artefact(s) {unknown}; known: {', '.join(recipes)} (or a system name)")
    return [r for r in recipes.values() if r.name in names or r.system in names]


def rebuild_command(name: str) -> str:
    return f"tenfold artefacts build {name} --ship --retrain"


# ---- status and estimates -------------------------------------------------------------------------


@dataclass
class Status:
    name: str
    key: str
    state: str  # "shipped", "cache", "stale", "damaged", "missing"
    detail: str = ""
    minutes: float = 0.0  # expected training time when the look-up would train
    shipped: dict = field(default_factory=dict)  # the manifest entry of this name, if any


def status(recipe: ShippedRecipe, manifest: dict[str, dict] | None = None, hashes: bool = True) -> Status:
    art = recipe.artefact()
    manifest = read_manifest() if manifest is None else manifest
    mine = {k: e for k, e in manifest.items() if e.get("name") == recipe.name}
    entry = mine.get(art.key)
    old = entry or next(iter(mine.values()), {})
    minutes = (old.get("build_seconds") or recipe.minutes * 60) / 60
    if entry is not None:
        problem = check_files(shipped_root() / art.key, entry["files"], hashes)
        if problem is None:
            return Status(recipe.name, art.key, "shipped", "", 0.0, entry)
    in_cache = (cache_root() / art.key / DONE_FILE).is_file()
    if in_cache:
        state, detail, minutes = "cache", f"in {cache_root()}", 0.0
    elif entry is not None:
        state, detail = "damaged", problem
    elif mine:
        state, detail = "stale", f"shipped key {next(iter(mine))} is not today's recipe"
    else:
        state, detail = "missing", "not shipped"
    if in_cache and (entry is not None or mine):
        detail += " (shipped copy " + ("damaged)" if entry is not None else "stale)")
    return Status(recipe.name, art.key, state, detail, minutes, old)


def training_plan(names: list[str], echo=print) -> float:
    """Say which of the artefacts `names` a run would train, with estimates; returns the minutes."""
    recipes = discover()
    try:
        manifest = read_manifest()
    except ArtefactError as exc:
        echo(f"[artefacts] {exc}; shipped artefacts are ignored")
        manifest = {}
    todo: list[Status] = []

    def add(name: str) -> None:  # a missing artefact, after the missing first stages its build trains
        if name not in recipes or any(s.name == name for s in todo):
            return
        st = status(recipes[name], manifest)
        if st.state not in ("shipped", "cache"):
            for first in recipes[name].needs:
                add(first)
            todo.append(st)

    for n in names:
        add(n)
    if not todo:
        echo(f"[artefacts] nothing to train: {len(names)} trained artefact(s) shipped or cached")
        return 0.0
    total = sum(s.minutes for s in todo)
    echo(
        f"[artefacts] will train {len(todo)} artefact(s), about {total:.0f} min of one-core training in all:"
    )
    for s in todo:
        echo(f"[artefacts]   {s.name}: {s.state} ({s.detail}), about {s.minutes:.0f} min")
    return total


# ---- shipping -------------------------------------------------------------------------------------


def _ship_files(entry: Path, rel: str) -> list[str]:
    """Entry-relative files under `rel`: a checkpoint folder ships its recorded files and tenfold.json."""
    from tenfold.core.models import META_FILE, RECORD_KEY

    src = entry / rel
    if src.is_file():
        return [rel]
    if not src.is_dir():
        raise ArtefactError(f"artefact entry {entry} has no {rel}")
    meta = src / META_FILE
    if meta.is_file():
        recorded = json.loads(meta.read_text()).get(RECORD_KEY, {})
        return [f"{rel}/{f}" for f in sorted(recorded)] + [f"{rel}/{META_FILE}"]
    return [str(p.relative_to(entry)) for p in sorted(src.rglob("*")) if p.is_file()]


def _to_float16(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    save_file(
        {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()},
        str(path),
        metadata={"format": "pt"},
    )


def _rerecord(folder: Path) -> None:
    """Rewrite a checkpoint folder's tenfold.json record after its weights were re-encoded."""
    from tenfold.core.models import META_FILE, RECORD_KEY

    meta_path = folder / META_FILE
    meta = json.loads(meta_path.read_text())
    meta[RECORD_KEY] = {
        f: {"size": (folder / f).stat().st_size, "sha256": file_sha256(folder / f)} for f in meta[RECORD_KEY]
    }
    meta["stored_dtype"] = "float16"
    atomic_write_text(meta_path, json.dumps(meta, indent=2, default=str))


def default_quality(entry: Path) -> dict:
    """The final training loss (mean of the last 50 steps) of each trainer log in the entry (not of the
    intermediate `step-N` checkpoints)."""
    out = {}
    for p in sorted(entry.rglob("trainer.json")):
        if p.parent.name.startswith("step-"):
            continue
        losses = json.loads(p.read_text()).get("losses") or []
        if losses:
            out[f"{p.parent.relative_to(entry)}: final train loss"] = round(
                sum(losses[-50:]) / len(losses[-50:]), 4
            )
    return out


def ship(recipe: ShippedRecipe, retrain: bool = False, echo=print) -> dict:
    """Build (or take from the user cache) the artefact of today's recipe and write it, with its manifest
    entry, into the shipped folder; older shipped entries of the same name are removed."""
    art = recipe.artefact()
    t0 = time.perf_counter()
    entry = art.path(retrain=retrain, shipped=False)
    record = json.loads((entry / DONE_FILE).read_text())
    seconds = record.get("build_seconds")
    if seconds is None and retrain:
        seconds = round(time.perf_counter() - t0, 1)
    root = shipped_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{art.key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        rels = [f for rel in recipe.ship for f in _ship_files(entry, rel)]
        for rel in rels:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry / rel, tmp / rel)
        if recipe.dtype == "float16":
            folders = {(tmp / rel).parent for rel in rels if rel.endswith(".safetensors")}
            for rel in rels:
                if rel.endswith(".safetensors"):
                    _to_float16(tmp / rel)
            for folder in folders:
                _rerecord(folder)
        done = {"kind": art.kind, "config": art.config, "version": art.version, "name": recipe.name}
        atomic_write_text(tmp / DONE_FILE, json.dumps(done, default=str))
        rels.append(DONE_FILE)
        files = {rel: {"size": (tmp / rel).stat().st_size, "sha256": file_sha256(tmp / rel)} for rel in rels}
        quality = (recipe.quality or default_quality)(entry)
        manifest_entry = {
            "name": recipe.name,
            "system": recipe.system,
            "kind": art.kind,
            "version": art.version,
            "config": json.loads(json.dumps(art.config, default=str)),
            "dtype": recipe.dtype,
            "files": files,
            "size": sum(f["size"] for f in files.values()),
            "rebuild": rebuild_command(recipe.name),
            "quality": quality,
            "build_seconds": seconds,
            "built_on": record.get("built_on") or machine(),
            "shipped_at": time.strftime("%Y-%m-%d"),
        }
        manifest = read_manifest(root)
        for old in [k for k, e in manifest.items() if e.get("name") == recipe.name or k == art.key]:
            del manifest[old]
            shutil.rmtree(root / old, ignore_errors=True)
        tmp.rename(root / art.key)
        manifest[art.key] = manifest_entry
        write_manifest(root, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    echo(f"shipped {recipe.name} -> {root / art.key} ({manifest_entry['size'] / 1e6:.1f} MB, {recipe.dtype})")
    return manifest_entry


def write_manifest(root: Path, entries: dict[str, dict]) -> None:
    body = {
        "about": "Trained artefacts shipped with tenfold; rebuild one with its 'rebuild' command.",
        "format": 1,
        "artefacts": dict(sorted(entries.items())),
    }
    atomic_write_text(root / MANIFEST_FILE, json.dumps(body, indent=2, sort_keys=False) + "\n")
    forget_shipped()


def verify(names: list[str] | None = None) -> list[str]:
    """Problems with the shipped folder: every manifest entry's files present with size and sha256, no
    unlisted entry folders, and (for registered names) the key recomputed from today's recipe equal to
    the shipped key. Empty when all is well."""
    root = shipped_root()
    manifest = read_manifest(root)
    recipes = discover()
    problems = []
    for key, entry in manifest.items():
        name = entry.get("name", key)
        if names and name not in names and entry.get("system") not in names:
            continue
        problem = check_files(root / key, entry["files"])
        if problem:
            problems.append(f"{name} ({key}): {problem}")
        recipe = recipes.get(name)
        if recipe is None:
            problems.append(f"{name} ({key}): no registered recipe has this name")
        elif (today := recipe.artefact().key) != key:
            problems.append(
                f"{name}: shipped key {key} but today's recipe gives {today}; run {rebuild_command(name)}"
            )
    if root.is_dir():
        listed = set(manifest) | {MANIFEST_FILE, "README.md"}
        extra = [p.name for p in root.iterdir() if p.name not in listed and not p.name.startswith(".")]
        problems += [f"{x}: in {root} but not in the manifest" for x in sorted(extra)]
    return problems

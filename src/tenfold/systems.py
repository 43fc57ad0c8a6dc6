"""The one list of tenfold's systems: the CLI mounts their commands from it, `tenfold reproduce` and
`tenfold artefacts` find their rows and trained artefacts through it.

Adding a system is adding its package (the template in the README: `__init__`, `api`, `cli`, `bench`,
`reproduce`, ...) and one line here. A package that is not there yet is skipped, so a line may come
before its code. This module imports nothing: `tenfold --help` stays fast.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class System:
    name: str  # package `tenfold.<name>`, command `tenfold <name>`, reproduce and artefact system name
    title: str  # one line for `tenfold --help`
    package: str = ""  # defaults to `tenfold.<name>`; core's rows live in core

    @property
    def module(self) -> str:
        return self.package or f"tenfold.{self.name}"

    def find(self, part: str) -> str | None:
        """The module `<package>.<part>` when it exists (without importing it), else None."""
        name = f"{self.module}.{part}"
        try:
            return name if importlib.util.find_spec(name) is not None else None
        except ModuleNotFoundError:  # the package itself is not there yet
            return None


SYSTEMS: tuple[System, ...] = (
    System("core", "the shared LM core's own benchmarks", package="tenfold.core"),
    System("base", "tenfold-base: the pretrained small LM the LLM systems fine-tune from"),
    System("cake", "Cake: KV cache loaded from disk backwards while computed forwards"),
    System("comem", "CoMem: agent memory summarised asynchronously, k steps behind"),
    System("sgd", "Skeleton Graph Decoding: dependency-aware parallel decoding"),
    System("heapa", "HeaPA: heap-based frontier prompt pool for RLVR"),
    System("t2po", "T2PO: multi-turn RL, thinking cut-off and turn resampling"),
    System("resd", "RESD: self-distillation with reflections and a playbook"),
    System("mars", "MARS: per-modality LoRA ranks from two scaling laws"),
    System("hetermoe", "HeterMoE: MoE training on mixed GPU generations"),
    System("autospec", "AutoSpec: generate and verify specs for neural nets"),
    System("cav", "collaborative perception attacks and their detection"),
)

# trained models loadable by name (`--model tenfold-base`): name -> the module that provides
# `model_dir(train=...)` (its checkpoint directory: shipped or cached; `train=False` refuses to train it)
# and `describe()` (a row for `tenfold models`)
TRAINED_MODELS = {"tenfold-base": "tenfold.base.train"}

# core's reproduce rows are in `tenfold.core.reproduce_rows`; every other system's in `<package>.reproduce`
REPRODUCE_MODULE = {"core": "reproduce_rows"}


def names() -> list[str]:
    return [s.name for s in SYSTEMS]


def order(name: str) -> int:
    """Position of a system in the list (for sorting reports); unknown names go last."""
    return next((i for i, s in enumerate(SYSTEMS) if s.name == name), len(SYSTEMS))


def built(part: str) -> list[tuple[System, str]]:
    """(system, module name) of every system that has the module `part` (`cli`, `reproduce`, `train`)."""
    found = []
    for s in SYSTEMS:
        module = s.find(REPRODUCE_MODULE.get(s.name, part) if part == "reproduce" else part)
        if module:
            found.append((s, module))
    return found

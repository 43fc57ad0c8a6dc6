"""Package re-exports that import on first use (PEP 562), so `import tenfold.cake` or `tenfold --help`
does not pay for torch and transformers before a command needs them.

    __getattr__, __dir__ = lazy_exports(__name__, {"tenfold.cake.loader": ["CakeLoader", "MODES"]})
    __all__ = [...]  # the same names, written out for readers and linters
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, list[str]]):
    """`__getattr__` and `__dir__` for `package` that import `module` when one of its names is asked for."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(where))

    return __getattr__, __dir__

"""Specifications: an input box and the outputs allowed there (∀x ∈ Π ⇒ ν(x) ∈ Σ, in VNN-LIB terms).

Π is an input box, optionally cut to a polytope by linear constraints A x <= b (the box stays the
polytope's bounding box, so interval bounds over the box remain sound). Σ is a set of classes (the
network's argmax must be one of them) or an interval (the regression output must lie in [lo, hi];
either side may be open). `to_vnnlib` writes the VNN-COMP form: the input box
plus the *negated* output property, so a verifier's `unsat` means the specification holds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tenfold.core.errors import TenfoldError


@dataclass(frozen=True)
class Spec:
    lo: tuple[float, ...]  # input box, one bound per feature
    hi: tuple[float, ...]
    classes: frozenset[int] | None = None  # classification: allowed argmax
    interval: tuple[float, float] | None = None  # regression: allowed output (±inf for an open side)
    support: int = 0  # generation points it was built from
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    A: tuple[tuple[float, ...], ...] = ()  # optional polytope: rows of A x <= b inside the box
    b: tuple[float, ...] = ()

    def __post_init__(self):
        if (self.classes is None) == (self.interval is None):
            raise TenfoldError("a spec needs exactly one of `classes` or `interval`")
        if len(self.lo) != len(self.hi) or any(a > b for a, b in zip(self.lo, self.hi, strict=True)):
            raise TenfoldError(f"bad input box lo={self.lo} hi={self.hi}")
        if self.interval is not None and self.interval[0] > self.interval[1]:
            raise TenfoldError(f"empty output interval {self.interval}")
        if self.classes is not None and not self.classes:
            raise TenfoldError("empty class set")
        if len(self.A) != len(self.b) or any(len(row) != len(self.lo) for row in self.A):
            raise TenfoldError(
                f"polytope needs one bound per row and {len(self.lo)} coefficients per row; got "
                f"{len(self.A)} rows, {len(self.b)} bounds"
            )

    def covers(self, X: np.ndarray) -> np.ndarray:
        inside = np.all((X >= np.array(self.lo)) & (X <= np.array(self.hi)), axis=1)
        if self.A:
            inside &= np.all(X @ np.array(self.A).T <= np.array(self.b) + 1e-9, axis=1)
        return inside

    def allows(self, y: np.ndarray) -> np.ndarray:
        if self.classes is not None:
            return np.isin(y, list(self.classes))
        return (y >= self.interval[0]) & (y <= self.interval[1])

    def is_unbounded(self, n_classes: int = 0) -> bool:
        """True when the spec allows every output (all classes, or an interval open on both sides)."""
        if self.classes is not None:
            return len(self.classes) >= n_classes > 0
        return math.isinf(self.interval[0]) and math.isinf(self.interval[1])

    def to_dict(self) -> dict:
        d = {"lo": list(self.lo), "hi": list(self.hi), "support": self.support}
        if self.A:
            d["A"], d["b"] = [list(r) for r in self.A], list(self.b)
        if self.classes is not None:
            d["classes"] = sorted(self.classes)
        else:
            d["interval"] = [_num(v) for v in self.interval]
        return d

    @staticmethod
    def from_dict(d: dict) -> Spec:
        try:
            poly = {
                "A": tuple(tuple(float(v) for v in r) for r in d.get("A", ())),
                "b": tuple(float(v) for v in d.get("b", ())),
            }
            if "classes" in d:
                return Spec(
                    tuple(d["lo"]),
                    tuple(d["hi"]),
                    classes=frozenset(int(c) for c in d["classes"]),
                    support=d.get("support", 0),
                    **poly,
                )
            lo, hi = (float(v) for v in d["interval"])
            return Spec(
                tuple(d["lo"]), tuple(d["hi"]), interval=(lo, hi), support=d.get("support", 0), **poly
            )
        except (KeyError, TypeError, ValueError) as e:
            raise TenfoldError(f"not a spec: {d!r:.120} ({e})") from None


def _num(v: float):
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def save_specs(specs: list[Spec], path: str | Path, meta: dict | None = None) -> None:
    from tenfold.core.io import atomic_write_text

    atomic_write_text(
        Path(path), json.dumps({"meta": meta or {}, "specs": [s.to_dict() for s in specs]}, indent=1)
    )


def load_specs(path: str | Path) -> tuple[list[Spec], dict]:
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TenfoldError(f"spec file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise TenfoldError(f"spec file {path} is not JSON: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("specs"), list):
        raise TenfoldError(f"spec file {path} has no 'specs' list")
    return [Spec.from_dict(s) for s in d["specs"]], d.get("meta", {})


# --- VNN-LIB ---------------------------------------------------------------------------------------------


def to_vnnlib(spec: Spec, n_out: int, margin: float = 0.0) -> str:
    """The VNN-COMP property: input box and the negation of the output property (sat = violated).
    `margin` > 0 asks for a violation by at least that much (another class ahead by `margin`, or the
    output `margin` outside the interval), which rules out points that only touch the boundary."""
    d = len(spec.lo)
    lines = [f"(declare-const X_{i} Real)" for i in range(d)] + [
        f"(declare-const Y_{j} Real)" for j in range(n_out)
    ]
    for i in range(d):
        lines += [f"(assert (>= X_{i} {_lit(spec.lo[i])}))", f"(assert (<= X_{i} {_lit(spec.hi[i])}))"]
    for row, bound in zip(spec.A, spec.b, strict=True):
        terms = [f"(* {_lit(a)} X_{i})" for i, a in enumerate(row) if a != 0]
        if terms:
            lhs = terms[0] if len(terms) == 1 else f"(+ {' '.join(terms)})"
            lines.append(f"(assert (<= {lhs} {_lit(bound)}))")
    if spec.classes is not None:
        # argmax outside the allowed set: some other class j scores at least every allowed class
        others = [j for j in range(n_out) if j not in spec.classes]
        if not others:
            raise TenfoldError("a spec allowing every class has nothing to verify")
        beat = (
            (lambda j, i: f"(>= (- Y_{j} Y_{i}) {_lit(margin)})")
            if margin > 0
            else (lambda j, i: f"(>= Y_{j} Y_{i})")
        )
        terms = ["(and " + " ".join(beat(j, i) for i in sorted(spec.classes)) + ")" for j in others]
        lines.append(f"(assert (or {' '.join(terms)}))")
    else:
        lo, hi = spec.interval
        bad = ([f"(<= Y_0 {_lit(lo - margin)})"] if math.isfinite(lo) else []) + (
            [f"(>= Y_0 {_lit(hi + margin)})"] if math.isfinite(hi) else []
        )
        if not bad:
            raise TenfoldError("an unbounded interval has nothing to verify")
        lines.append(f"(assert (or {' '.join(f'(and {b})' for b in bad)}))")
    return "\n".join(lines) + "\n"


def _lit(v: float) -> str:
    """A plain decimal literal (what VNN-LIB readers parse; no exponent, no numpy repr)."""
    return f"{float(v):.9f}"

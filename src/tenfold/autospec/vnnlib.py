"""Reader for VNN-LIB property files in the form the verification competitions (VNN-COMP) write them.

A file declares the network's inputs ``(declare-const X_0 Real)`` ... and outputs
``(declare-const Y_0 Real)`` ..., then states ``(assert F)`` lines. By VNN-COMP convention the
conjunction of all assertions describes the *counterexample* region: a point x with y = f(x) that
satisfies every assertion violates the property, so a verifier's ``unsat`` means the property holds.

The reader accepts the linear fragment of SMT-LIB arithmetic these files use:

* formulas: comparison atoms, ``true``/``false`` and ``(and F ...)`` / ``(or F ...)`` nested arbitrarily;
* atoms: ``<=``, ``>=``, ``<``, ``>``, ``=`` between linear expressions (chains such as ``(<= a b c)``
  compare neighbours). Strict comparisons are read as non-strict: over the reals they differ only on
  a boundary of measure zero, and verifiers work with closed sets anyway. ``=`` gives two rows;
* expressions: numbers (any float form), variables, ``+``, ``-`` (negation or subtraction), ``*`` with
  at most one non-constant factor and ``/`` by nonzero constants.

Each atom becomes rows ``a . v <= c`` over inputs only or outputs only (an atom mixing X and Y would
put the network inside the constraint and is rejected). The conjunction of the assertions is expanded
into disjunctive normal form (at most `MAX_TERMS` terms). In each term, input rows on one variable are
box bounds, other input rows stay as ``A_in x <= b_in`` and the output rows form one conjunction
``A y <= b``. Terms with the same input part are merged into one `Region` whose ``outputs`` is the
disjunction of their output conjunctions.

Every input needs a finite lower and upper bound in every term: verifiers split boxes, so an
unbounded input is an error rather than an assumption. A term whose box is empty, or that holds an
always-false constant atom, cannot contain a counterexample and is dropped; a property with no region
left (``regions == ()``) holds trivially. Emptiness of the ``A_in`` polytope is not checked (that
needs an LP); such a region is kept and simply never matches.
"""

from __future__ import annotations

import gzip
import math
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from tenfold.core.errors import TenfoldError

MAX_TERMS = 100_000  # distributing `and` over `or` can grow exponentially; refuse beyond this
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_VAR = re.compile(r"([XY])_(\d+)")
_TOKEN = re.compile(r"[()]|[^\s()]+")
_IGNORED = {"check-sat", "get-model", "exit", "set-logic", "set-info", "set-option"}
_ARITH = {"+", "-", "*", "/"}
_COMPARE = {"<=", ">=", "<", ">", "="}


@dataclass(frozen=True)
class Region:
    """One input region of a property and the output conditions that make a point in it a counterexample."""

    lo: np.ndarray  # (n_in,) input box lower bounds, float64, all finite
    hi: np.ndarray  # (n_in,) upper bounds
    A_in: np.ndarray  # (r, n_in) extra linear input rows A_in @ x <= b_in (shape (0, n_in) when none)
    b_in: np.ndarray  # (r,)
    outputs: tuple[tuple[np.ndarray, np.ndarray], ...]  # disjunction of conjunctions A @ y <= b


@dataclass(frozen=True)
class Property:
    n_inputs: int
    n_outputs: int
    regions: tuple[Region, ...]  # counterexamples: union over regions (empty: the property holds)
    source: str = "<string>"


class _Bad(Exception):
    """A parse problem and its line (None when it belongs to no single line); `parse_vnnlib` adds the source."""

    def __init__(self, line: int | None, msg: str):
        super().__init__(msg)
        self.line = line


@dataclass(frozen=True)
class _Atom:
    text: str
    line: int


@dataclass(frozen=True)
class _List:
    items: tuple
    line: int  # line of the opening parenthesis


def read_vnnlib(path) -> Property:
    """Parse a VNN-LIB file (``.vnnlib`` or gzipped ``.vnnlib.gz``, as VNN-COMP benchmarks ship them)."""
    path = Path(path)
    if not path.is_file():
        raise TenfoldError(f"VNN-LIB file {path} does not exist")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TenfoldError(f"cannot read VNN-LIB file {path}: {e}") from None
    return parse_vnnlib(text, str(path))


def parse_vnnlib(text: str, source: str = "<string>") -> Property:
    try:
        return _parse(text, source)
    except _Bad as e:
        where = source if e.line is None else f"{source} line {e.line}"
        raise TenfoldError(f"{where}: {e}") from None


def property_violated_by(prop: Property, x: np.ndarray, y: np.ndarray, tol: float = 1e-6) -> bool:
    """True when (x, y = f(x)) is a counterexample: x in some region and y meets one of its output
    conjunctions. Every comparison allows `tol` relative to its size (at least 1): a bound's magnitude
    for the box and the output rows, |A_in| |x| for the input rows (what float32 rounding of x moves)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != (prop.n_inputs,) or y.shape != (prop.n_outputs,):
        raise TenfoldError(
            f"expected x of shape ({prop.n_inputs},) and y of shape ({prop.n_outputs},); "
            f"got {x.shape} and {y.shape}"
        )
    for r in prop.regions:
        slack = tol * np.maximum(1.0, np.maximum(np.abs(r.lo), np.abs(r.hi)))
        row_slack = tol * np.maximum(1.0, np.abs(r.A_in) @ np.abs(x))
        if np.any(x < r.lo - slack) or np.any(x > r.hi + slack) or np.any(r.A_in @ x > r.b_in + row_slack):
            continue
        if any(np.all(A @ y <= b + tol * np.maximum(1.0, np.abs(b))) for A, b in r.outputs):
            return True
    return False


# --- reading s-expressions ---------------------------------------------------------------------------


def _read_sexprs(text: str) -> list:
    stack, opened = [[]], []  # open lists and the lines their '(' was on
    for line, raw in enumerate(text.splitlines(), start=1):
        for tok in _TOKEN.findall(raw.split(";", 1)[0]):  # ';' comments run to the end of the line
            if tok == "(":
                stack.append([])
                opened.append(line)
            elif tok == ")":
                if not opened:
                    raise _Bad(line, "unbalanced parentheses: unexpected ')'")
                items = stack.pop()
                stack[-1].append(_List(tuple(items), opened.pop()))
            else:
                stack[-1].append(_Atom(tok, line))
    if opened:  # the outermost unclosed '(' is where the missing ')' belongs; inner ones only follow it
        raise _Bad(opened[0], "unbalanced parentheses: '(' is never closed")
    return stack[0]


def _head(node: _List) -> tuple[str, tuple]:
    if not node.items or not isinstance(node.items[0], _Atom):
        raise _Bad(node.line, "expected an operator after '('")
    return node.items[0].text, node.items[1:]


# --- commands and declarations -----------------------------------------------------------------------


def _parse(text: str, source: str) -> Property:
    declared: dict[str, tuple[str, int]] = {}  # name -> (kind, index)
    lines: dict[tuple[str, int], int] = {}  # (kind, index) -> line of its declaration
    asserted = []  # (DNF, line) per assert
    for cmd in _read_sexprs(text):
        if isinstance(cmd, _Atom):
            raise _Bad(cmd.line, f"expected a command in parentheses, got '{cmd.text}'")
        op, args = _head(cmd)
        if op == "declare-const":
            _declare(cmd, args, declared, lines)
        elif op == "assert":
            if len(args) != 1:
                raise _Bad(cmd.line, "'assert' takes exactly one formula")
            asserted.append((_formula(args[0], declared), cmd.line))
        elif op not in _IGNORED:
            raise _Bad(cmd.line, f"unknown command '{op}'")
    n_in, n_out = _count(lines, "X"), _count(lines, "Y")
    terms = _conjoin(asserted)
    return Property(n_in, n_out, _regions(terms, n_in, n_out), source)


def _declare(cmd: _List, args: tuple, declared: dict, lines: dict) -> None:
    if len(args) != 2 or not all(isinstance(a, _Atom) for a in args):
        raise _Bad(cmd.line, "expected (declare-const NAME Real)")
    name, sort = args[0].text, args[1].text
    m = _VAR.fullmatch(name)
    if not m:
        raise _Bad(cmd.line, f"unsupported variable name '{name}' (expected X_i or Y_j)")
    if sort != "Real":
        raise _Bad(cmd.line, f"{name} has sort '{sort}'; only Real is supported")
    key = (m[1], int(m[2]))
    if key in lines:  # also catches X_01 after X_1
        raise _Bad(cmd.line, f"{name} is declared twice")
    declared[name], lines[key] = key, cmd.line


def _count(lines: dict, kind: str) -> int:
    """The number of `kind` variables, checking their indices run 0..n-1."""
    indices = sorted(i for k, i in lines if k == kind)
    if not indices:
        raise _Bad(None, f"no {kind}_ variables are declared")
    for want, got in enumerate(indices):
        if got != want:
            raise _Bad(lines[kind, got], f"{kind}_{got} is declared but {kind}_{want} is not")
    return len(indices)


# --- linear expressions and formulas -----------------------------------------------------------------
# A linear expression is (coefficients {(kind, index): a}, constant); a row is (kind, {index: a}, c)
# meaning sum a * v_index <= c; a DNF is a list of terms, each a tuple of rows (the empty tuple: true).


def _linear(node, declared: dict) -> tuple[dict, float]:
    if isinstance(node, _Atom):
        if _NUMBER.fullmatch(node.text):
            value = float(node.text)
            if not math.isfinite(value):
                raise _Bad(node.line, f"number {node.text} is out of range")
            return {}, value
        if node.text in declared:
            return {declared[node.text]: 1.0}, 0.0
        kind = "variable" if _VAR.fullmatch(node.text) else "symbol"
        raise _Bad(node.line, f"undeclared {kind} '{node.text}'")
    op, args = _head(node)
    if op not in _ARITH:
        raise _Bad(node.line, f"unknown operator '{op}'")
    if not args or (op == "/" and len(args) < 2):
        raise _Bad(node.line, f"'{op}' needs {'two' if op == '/' else 'at least one'} argument(s)")
    parts = [_linear(a, declared) for a in args]
    if op == "+":
        return _sum(parts)
    if op == "-":  # SMT-LIB: one argument negates, more subtract the rest from the first
        return (
            _scale(parts[0], -1.0)
            if len(parts) == 1
            else _sum([parts[0], *(_scale(p, -1.0) for p in parts[1:])])
        )
    if op == "*":
        variable = [p for p in parts if p[0]]
        if len(variable) > 1:
            raise _Bad(node.line, "product of variables is not linear")
        factor = math.prod(c for coefs, c in parts if not coefs)
        return _scale(variable[0], factor) if variable else ({}, factor)
    if any(coefs for coefs, _ in parts[1:]):
        raise _Bad(node.line, "division by a variable is not linear")
    divisor = math.prod(c for _, c in parts[1:])
    if divisor == 0:
        raise _Bad(node.line, "division by zero")
    return _scale(parts[0], 1.0 / divisor)


def _sum(parts: list) -> tuple[dict, float]:
    coefs: dict = {}
    for part, _ in parts:
        for key, a in part.items():
            coefs[key] = coefs.get(key, 0.0) + a
    return coefs, sum(c for _, c in parts)


def _scale(part: tuple[dict, float], k: float) -> tuple[dict, float]:
    return {key: k * a for key, a in part[0].items()}, k * part[1]


def _formula(node, declared: dict) -> list:
    if isinstance(node, _Atom):
        if node.text in ("true", "false"):
            return [()] if node.text == "true" else []
        raise _Bad(node.line, f"expected a formula, got '{node.text}'")
    op, args = _head(node)
    if op in ("and", "or") and args:
        parts = [(_formula(a, declared), a.line) for a in args]
        return _conjoin(parts) if op == "and" else _disjoin(parts, node.line)
    if op in _COMPARE and len(args) >= 2:
        sides = [_linear(a, declared) for a in args]
        pairs = []
        for left, right in pairwise(sides):  # chains compare neighbours
            if op in ("<=", "<", "="):  # strict read as non-strict (see module docstring)
                pairs.append(_sum([left, _scale(right, -1.0)]))
            if op in (">=", ">", "="):
                pairs.append(_sum([right, _scale(left, -1.0)]))
        return _atom_dnf(pairs, node.line)
    if op in ("and", "or") or op in _COMPARE:
        raise _Bad(node.line, f"'{op}' needs at least {1 if op in ('and', 'or') else 2} argument(s)")
    raise _Bad(node.line, f"unknown operator '{op}'")


def _atom_dnf(pairs: list, line: int) -> list:
    """Rows for expressions e meaning e <= 0, as a one-term DNF (or none when a constant row fails)."""
    rows = []
    for coefs, const in pairs:
        coefs = {key: a for key, a in coefs.items() if a != 0}  # X_0 - X_0 is a constant, not a mix
        kinds = {kind for kind, _ in coefs}
        if len(kinds) > 1:
            raise _Bad(line, "atom mixes inputs (X) and outputs (Y), which is not supported")
        if not kinds:
            if const <= 0:
                continue  # always true: no constraint
            return []  # always false: this conjunction holds nowhere
        rows.append((kinds.pop(), {i: a for (_, i), a in coefs.items()}, -const))
    return [tuple(rows)]


def _conjoin(parts: list) -> list:
    """AND of DNFs. Single-term DNFs (plain conjunctions, by far the common case) are gathered into one
    shared prefix, so a file of thousands of bound asserts costs linear, not quadratic, time."""
    common, terms = [], [()]
    for dnf, line in parts:
        if len(dnf) == 1:
            common.extend(dnf[0])
            continue
        if len(terms) * len(dnf) > MAX_TERMS:
            raise _Bad(line, f"the formula expands to more than {MAX_TERMS} cases in disjunctive normal form")
        terms = [t + u for t in terms for u in dnf]
    shared = tuple(common)
    return [shared + t for t in terms]


def _disjoin(parts: list, line: int) -> list:
    terms = [t for dnf, _ in parts for t in dnf]
    if len(terms) > MAX_TERMS:
        raise _Bad(line, f"the formula expands to more than {MAX_TERMS} cases in disjunctive normal form")
    return terms


# --- regions -----------------------------------------------------------------------------------------


def _regions(terms: list, n_in: int, n_out: int) -> tuple[Region, ...]:
    groups: dict = {}  # input part -> (arrays, {output key: (A, b)}); dicts keep first-seen order
    for term in terms:
        part = _input_part(term, n_in)
        if part is None:
            continue
        key = tuple((a + 0.0).tobytes() for a in part) + (part[2].shape,)  # + 0.0 turns -0.0 into 0.0
        outputs = groups.setdefault(key, (part, {}))[1]
        A, b = _matrix([r for r in term if r[0] == "Y"], n_out)
        outputs.setdefault((A.shape, A.tobytes(), b.tobytes()), (A, b))
    return tuple(Region(*part, tuple(outputs.values())) for part, outputs in groups.values())


def _input_part(term: tuple, n_in: int) -> tuple | None:
    """(lo, hi, A_in, b_in) of a DNF term, or None when its box is empty."""
    lo, hi = np.full(n_in, -np.inf), np.full(n_in, np.inf)
    rows = []
    for kind, coefs, bound in term:
        if kind != "X":
            continue
        if len(coefs) > 1:
            rows.append((kind, coefs, bound))
            continue
        ((i, a),) = coefs.items()
        if a > 0:
            hi[i] = min(hi[i], bound / a)
        else:  # dividing by a < 0 flips the inequality into a lower bound
            lo[i] = max(lo[i], bound / a)
    for i in range(n_in):
        for side, value in (("lower", lo[i]), ("upper", hi[i])):
            if not np.isfinite(value):
                raise _Bad(None, f"X_{i} has no {side} bound")
    if np.any(lo > hi):
        return None
    lo.setflags(write=False)
    hi.setflags(write=False)
    return (lo, hi, *_matrix(rows, n_in))


def _matrix(rows: list, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of rows, duplicates removed (order kept), as read-only float64 arrays."""
    unique = dict.fromkeys((tuple(sorted(coefs.items())), bound) for _, coefs, bound in rows)
    A, b = np.zeros((len(unique), n)), np.zeros(len(unique))
    for r, (coefs, bound) in enumerate(unique):
        for i, a in coefs:
            A[r, i] = a
        b[r] = bound
    A.setflags(write=False)
    b.setflags(write=False)
    return A, b

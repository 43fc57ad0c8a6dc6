"""The VNN-LIB reader against hand-derived rows, a brute-force evaluator of the formula and `to_vnnlib`."""

import gzip
import math
import operator

import numpy as np
import pytest

from tenfold.autospec.spec import Spec, to_vnnlib
from tenfold.autospec.vnnlib import parse_vnnlib, property_violated_by, read_vnnlib
from tenfold.core.errors import TenfoldError


def declare(n_in: int, n_out: int) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + "".join(
        f"(declare-const Y_{j} Real)\n" for j in range(n_out)
    )


ACAS_BOUNDS = [(0.6, 0.679857769), (-0.5, 0.5), (-0.5, 0.5), (0.45, 0.5), (-0.5, -0.45)]
ACAS_BOX = "".join(
    f"; Unscaled input {i}\n(assert (<= X_{i} {hi}))\n(assert (>= X_{i} {lo}))\n"
    for i, (lo, hi) in enumerate(ACAS_BOUNDS)
)


def test_acas_property_2_one_region_four_output_cases():
    text = (
        "; ACAS Xu property 2\n"
        + declare(5, 5)
        + ACAS_BOX
        + "; unsafe if COC is maximal\n(assert (or\n"
        + "".join(f"    (and (>= Y_0 Y_{j}))\n" for j in range(1, 5))
        + "))\n"
    )
    prop = parse_vnnlib(text, "prop_2.vnnlib")
    assert (prop.n_inputs, prop.n_outputs, prop.source) == (5, 5, "prop_2.vnnlib")
    (region,) = prop.regions
    np.testing.assert_array_equal(region.lo, [lo for lo, _ in ACAS_BOUNDS])
    np.testing.assert_array_equal(region.hi, [hi for _, hi in ACAS_BOUNDS])
    assert region.A_in.shape == (0, 5) and region.b_in.shape == (0,)
    assert len(region.outputs) == 4
    for j, (A, b) in enumerate(region.outputs, start=1):
        expected = np.zeros((1, 5))
        expected[0, 0], expected[0, j] = -1, 1  # Y_0 >= Y_j  <=>  Y_j - Y_0 <= 0
        np.testing.assert_array_equal(A, expected)
        np.testing.assert_array_equal(b, [0.0])


def test_acas_property_1_single_output_row():
    prop = parse_vnnlib(declare(5, 5) + ACAS_BOX + "(assert (>= Y_0 3.991125645861615))")
    ((A, b),) = prop.regions[0].outputs
    np.testing.assert_array_equal(A, [[-1, 0, 0, 0, 0]])
    np.testing.assert_allclose(b, [-3.991125645861615])


def test_disjunction_over_inputs_gives_two_regions():
    prop = parse_vnnlib(
        declare(2, 1)
        + "(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_0 0))"
        + " (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (>= Y_0 5))))"
    )
    first, second = prop.regions
    np.testing.assert_array_equal([first.lo, first.hi], [[0, 0], [1, 1]])
    np.testing.assert_array_equal([second.lo, second.hi], [[2, 0], [3, 1]])
    np.testing.assert_array_equal(first.outputs[0][0], [[1]])
    np.testing.assert_array_equal(first.outputs[0][1], [0])
    np.testing.assert_array_equal(second.outputs[0][0], [[-1]])
    np.testing.assert_array_equal(second.outputs[0][1], [-5])


def test_linear_rows_arithmetic_forms_comments_and_notation():
    prop = parse_vnnlib(
        declare(2, 2)
        + "(assert (<= -1 X_0)) ; bound with the variable on the right\n"
        + "(assert (<= (* 2 X_0) 1))   ; X_0 <= 0.5\n"
        + "(assert (>= (- X_1) -2.5e0)) ; X_1 <= 2.5\n"
        + "(assert (>= (/ X_1 4) -.25))  ; X_1 >= -1\n"
        + "(assert (<= X_0 +2.))         ; looser than 0.5: ignored\n"
        + "(assert (<= (+ (* 0.5 X_0) (* -1 X_1)) 2))\n"
        + "(assert (> (- X_0 X_1 1e-3) (* X_1 3 -1)))  ; X_0 + 2 X_1 >= 0.001\n"
        + "(assert (= (- Y_0 Y_1) 1E-2))\n"
    )
    (r,) = prop.regions
    np.testing.assert_array_equal([r.lo, r.hi], [[-1, -1], [0.5, 2.5]])
    np.testing.assert_allclose(r.A_in, [[0.5, -1], [-1, -2]])
    np.testing.assert_allclose(r.b_in, [2, -1e-3])
    ((A, b),) = r.outputs
    np.testing.assert_allclose(A, [[1, -1], [-1, 1]])
    np.testing.assert_allclose(b, [1e-2, -1e-2])


def test_grouping_duplicates_constants_and_empty_boxes():
    box = "(>= X_0 0) (<= X_0 1)"
    prop = parse_vnnlib(
        declare(1, 1)
        + f"(assert (or (and {box} (>= Y_0 1)) (and {box} (<= Y_0 -1)) (and {box} (>= Y_0 1))"
        + f" (and {box} (<= 1 0) (>= Y_0 7)) (and (>= X_0 2) (<= X_0 1)) (and {box} (< 0 1))))"
    )
    (r,) = prop.regions  # the empty box and the always-false term are gone
    assert [(A.tolist(), b.tolist()) for A, b in r.outputs] == [
        ([[-1.0]], [-1.0]),
        ([[1.0]], [-1.0]),
        ([], []),
    ]
    assert r.outputs[2][0].shape == (0, 1)  # the always-true conjunction
    empty = parse_vnnlib(declare(1, 1) + "(assert (>= X_0 1)) (assert (<= X_0 0)) (assert (>= Y_0 0))")
    assert empty.regions == ()
    assert not property_violated_by(empty, np.array([0.5]), np.array([1.0]))


# --- against a brute-force evaluation of the formula -------------------------------------------------


def sexprs(text: str) -> list:
    tokens = (
        "\n".join(line.split(";")[0] for line in text.splitlines()).replace("(", " ( ").replace(")", " ) ")
    )
    stack = [[]]
    for tok in tokens.split():
        if tok == "(":
            stack.append([])
        elif tok == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    return stack[0]


COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "=": operator.eq}


def evaluate(node, env: dict):
    if isinstance(node, str):
        return env[node] if node in env else float(node)
    op, args = node[0], [evaluate(a, env) for a in node[1:]]
    if op in ("and", "or"):
        return all(args) if op == "and" else any(args)
    if op == "+":
        return sum(args)
    if op == "-":
        return -args[0] if len(args) == 1 else args[0] - sum(args[1:])
    if op == "*":
        return math.prod(args)
    if op == "/":
        return args[0] / args[1]
    return COMPARE[op](*args)


def brute_force(text: str, x: np.ndarray, y: np.ndarray) -> bool:
    env = {f"X_{i}": v for i, v in enumerate(x)} | {f"Y_{j}": v for j, v in enumerate(y)}
    return all(evaluate(cmd[1], env) for cmd in sexprs(text) if cmd[0] == "assert")


FORMULAS = [
    "(assert (>= X_0 0)) (assert (<= X_0 2))\n"
    "(assert (or (and (>= X_1 0) (<= X_1 1)) (and (>= X_1 1.5) (<= X_1 2.5) (<= (+ X_0 X_1) 3))))\n"
    "(assert (or (and (>= Y_0 Y_1) (or (>= Y_0 Y_2) (< Y_1 -0.5))) (> (- Y_2 (* 2 Y_1)) 1)))",
    "(assert (and (<= -1 X_0) (<= (* 2 X_0) 2) (>= X_1 (- 1)) (<= (/ X_1 2) 0.5)))\n"
    "(assert (or (and (<= (+ X_0 X_1) 0.5) (or (<= Y_0 -0.2) (>= Y_1 0.3)))\n"
    "            (and (>= (- X_0 X_1) 0) (and (>= (+ Y_0 Y_1 Y_2) 0.5)))))",
    "(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (< 0 1))\n"
    "            (and (>= X_0 1) (<= X_0 2) (>= X_1 0) (<= X_1 1) (< 1 0))\n"
    "            (and (>= X_0 1.5) (<= X_0 2.5) (>= X_1 1) (<= X_1 2) (or (<= Y_2 0) (>= Y_2 0.5)))))\n"
    "(assert (or (>= Y_0 0.5) (and (<= Y_1 0) (>= Y_2 -0.5))))",
]


@pytest.mark.parametrize("formula", FORMULAS)
def test_violation_matches_brute_force(formula):
    text = declare(2, 3) + formula
    prop = parse_vnnlib(text)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(500):
        x, y = rng.uniform(-1.5, 3, 2), rng.uniform(-2, 2, 3)
        expected = brute_force(text, x, y)
        assert property_violated_by(prop, x, y) == expected, (x, y)
        seen.add(expected)
    assert seen == {True, False}  # the sample exercised both answers


def test_first_formula_regions():
    prop = parse_vnnlib(declare(2, 3) + FORMULAS[0])
    assert len(prop.regions) == 2 and [len(r.outputs) for r in prop.regions] == [3, 3]
    assert prop.regions[1].A_in.tolist() == [[1.0, 1.0]]


# --- round trip through to_vnnlib --------------------------------------------------------------------


def test_round_trip_classification_spec():
    spec = Spec(lo=(0, 0), hi=(1, 1), classes=frozenset({1}))
    prop = parse_vnnlib(to_vnnlib(spec, 3))
    (r,) = prop.regions
    np.testing.assert_array_equal([r.lo, r.hi], [[0, 0], [1, 1]])
    rng = np.random.default_rng(1)
    for _ in range(300):
        x, y = rng.uniform(0, 1, 2), rng.normal(size=3)
        assert property_violated_by(prop, x, y) == (int(np.argmax(y)) not in spec.classes)
    assert not property_violated_by(prop, np.array([1.5, 0.5]), np.array([5.0, 0.0, 0.0]))


def test_round_trip_regression_spec_and_polytope():
    spec = Spec(lo=(0,), hi=(1,), interval=(0.2, 0.8))
    prop = parse_vnnlib(to_vnnlib(spec, 1))
    (r,) = prop.regions
    np.testing.assert_array_equal([r.lo, r.hi], [[0], [1]])
    for v in np.random.default_rng(2).uniform(-1, 2, 300):
        assert property_violated_by(prop, np.array([0.5]), np.array([v])) == (not 0.2 <= v <= 0.8)
    poly = Spec(lo=(0, 0), hi=(1, 1), interval=(0, 1), A=((1.0, 1.0),), b=(1.5,))
    (r,) = parse_vnnlib(to_vnnlib(poly, 1)).regions
    assert r.A_in.tolist() == [[1.0, 1.0]] and r.b_in.tolist() == [1.5]


def test_read_vnnlib_files(tmp_path):
    text = declare(1, 1) + "(assert (>= X_0 0)) (assert (<= X_0 1)) (assert (>= Y_0 0))"
    (tmp_path / "p.vnnlib").write_text(text)
    (tmp_path / "q.vnnlib.gz").write_bytes(gzip.compress(text.encode()))
    for name in ("p.vnnlib", "q.vnnlib.gz"):
        prop = read_vnnlib(tmp_path / name)
        assert prop.source.endswith(name) and len(prop.regions) == 1
    with pytest.raises(TenfoldError, match="does not exist"):
        read_vnnlib(tmp_path / "missing.vnnlib")


# --- errors ------------------------------------------------------------------------------------------

BOX = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n"  # lines 3-4 after declare(1, 1)


@pytest.mark.parametrize(
    "body, message",
    [
        (BOX + "(assert (>= Y_0 1)\n(check-sat)\n", r"line 5: unbalanced parentheses"),
        (BOX + "(assert (>= Y_0 1)))\n", r"line 5: unbalanced parentheses"),
        (BOX + "(assert\n (foo Y_0 1))\n", r"line 6: unknown operator 'foo'"),
        (BOX + "(assert (>= Y_0 (max Y_0 1)))\n", r"line 5: unknown operator 'max'"),
        (BOX + "(assert (>= Y_3 1))\n", r"line 5: undeclared variable 'Y_3'"),
        (BOX + "(assert (>= (* X_0 Y_0) 1))\n", r"line 5: product of variables"),
        (BOX + "(assert (>= (+ X_0 Y_0) 1))\n", r"line 5: atom mixes inputs \(X\) and outputs \(Y\)"),
        (BOX + "(assert (>= (/ Y_0 0) 1))\n", r"line 5: division by zero"),
        ("(declare-const X_2 Real)\n", r"line 3: X_2 is declared but X_1 is not"),
        ("(declare-const Y_0 Real)\n", r"line 3: Y_0 is declared twice"),
        ("(declare-const Z Real)\n", r"line 3: unsupported variable name 'Z'"),
    ],
)
def test_errors_name_the_line(body, message):
    with pytest.raises(TenfoldError, match=r"^p\.vnnlib " + message):
        parse_vnnlib(declare(1, 1) + body, "p.vnnlib")


def test_missing_bound_names_the_variable_and_blow_up_is_refused():
    with pytest.raises(TenfoldError, match=r"^p\.vnnlib: X_1 has no lower bound"):
        parse_vnnlib(
            declare(2, 1) + "(assert (>= X_0 0)) (assert (<= X_0 1)) (assert (<= X_1 1))", "p.vnnlib"
        )
    cases = "".join(f"(assert (or (>= Y_0 {k}) (<= Y_0 -{k})))\n" for k in range(1, 18))  # 2**17 terms
    with pytest.raises(TenfoldError, match=r"line 20: .*more than 100000 cases"):
        parse_vnnlib(declare(1, 1) + "(assert (>= X_0 0)) (assert (<= X_0 1))\n" + cases, "p.vnnlib")

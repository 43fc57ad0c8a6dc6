"""MARS's two scaling laws, the aligned-rank inversion, and the choice of a rank pair.

The paper names the laws but not their forms; these are inferred (power laws whose closed-form
inversion can go complex, as the paper's 0.7% complex-rank cases suggest):

- **Law-T** (per module m): t_m(r, D) = a_m * D^beta_m * r^(-alpha_m) + c_m, the steps module m needs
  to converge at LoRA rank r on D examples.
- **Aligned partner rank**: r_l*(r_v) = [(t_v(r_v, D) - c_l) / (a_l * D^beta_l)]^(-1/alpha_l), the LLM
  rank that converges when the vision tower does. Not real when the bracket is <= 0 (the vision tower
  converges before the LLM's floor c_l): counted, and that r_v gets no partner.
- **Law-P**: PPL(r_v, r_l) = E + A * r_v^(-gamma_v) + B * r_l^(-gamma_l). Probes run at several dataset
  sizes, so E is fitted per size (E_D, our extension); the choice at one D does not depend on E.

The choice (`choose`): candidates are grid pairs whose predicted convergence times agree within a
factor e^tol, plus each vision rank's closed-form partner snapped to the grid (when it lies within the
grid's range); the candidate with the
lowest predicted PPL wins. With no candidate, or a law that did not fit, the default pair is used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from tenfold.core.errors import TenfoldError

MIN_TIME = 1.0  # steps: a module that converged at step 0 is treated as converging in one step


class FitError(TenfoldError):
    """A law could not be fitted to the probes (too few points, or no convergence)."""


@dataclass(frozen=True)
class LawT:
    a: float
    beta: float
    alpha: float
    c: float

    def time(self, r, d):
        return self.a * np.power(float(d), self.beta) * np.power(np.asarray(r, float), -self.alpha) + self.c

    def rank_for_time(self, t: float, d: float) -> float:
        """The rank at which this module converges in `t` steps; NaN when no real rank does."""
        bracket = (t - self.c) / (self.a * float(d) ** self.beta)
        if not np.isfinite(bracket) or bracket <= 0 or self.alpha == 0:
            return math.nan
        return float(bracket ** (-1.0 / self.alpha))


@dataclass(frozen=True)
class LawP:
    e: dict  # {dataset size: E_D}
    a: float
    gamma_v: float
    b: float
    gamma_l: float

    def ppl(self, rv, rl, d=None):
        """Predicted perplexity; without `d`, relative to E (enough to rank pairs at one size)."""
        base = 0.0 if d is None else self.e[min(self.e, key=lambda k: abs(math.log(k / d)))]
        return (
            base
            + self.a * np.power(np.asarray(rv, float), -self.gamma_v)
            + self.b * np.power(np.asarray(rl, float), -self.gamma_l)
        )


def fit_law_t(d: list[float], r: list[float], t: list[float]) -> LawT:
    """Least-squares fit of Law-T to (dataset size, rank, convergence steps) points."""
    from scipy.optimize import curve_fit

    d_, r_, t_ = (np.asarray(x, float) for x in (d, r, t))
    if len(t_) < 4:
        raise FitError(f"Law-T has 4 parameters and needs at least 4 probe points, got {len(t_)}")
    t_ = np.maximum(t_, MIN_TIME)

    def f(x, a, beta, alpha, c):
        return a * np.power(x[0], beta) * np.power(x[1], -alpha) + c

    try:
        p, _ = curve_fit(
            f,
            np.vstack([d_, r_]),
            t_,
            p0=(max(t_.mean(), 1.0) / max(d_.mean(), 1.0) ** 0.5, 0.5, 0.3, 0.0),
            bounds=([0.0, -1.0, -3.0, 0.0], [np.inf, 3.0, 3.0, np.inf]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError) as exc:
        raise FitError(f"Law-T did not fit: {exc}") from exc
    return LawT(*map(float, p))


def fit_law_p(d: list[float], rv: list[float], rl: list[float], ppl: list[float]) -> LawP:
    """Least-squares fit of Law-P (one E per dataset size) to probe perplexities."""
    from scipy.optimize import curve_fit

    sizes = sorted(set(float(x) for x in d))
    d_, rv_, rl_, y = (np.asarray(x, float) for x in (d, rv, rl, ppl))
    n_params = len(sizes) + 4
    if len(y) < n_params:
        raise FitError(f"Law-P needs at least {n_params} probe points for {len(sizes)} sizes, got {len(y)}")
    which = np.array([sizes.index(x) for x in d_])

    def f(x, *p):
        e = np.asarray(p[: len(sizes)])[x[0].astype(int)]
        a, gv, b, gl = p[len(sizes) :]
        return e + a * np.power(x[1], -gv) + b * np.power(x[2], -gl)

    lo = [-np.inf] * len(sizes) + [-np.inf, 0.0, -np.inf, 0.0]
    hi = [np.inf] * len(sizes) + [np.inf, 3.0, np.inf, 3.0]
    p0 = [float(y[which == i].mean()) for i in range(len(sizes))] + [0.1, 0.5, 0.1, 0.5]
    try:
        p, _ = curve_fit(f, np.vstack([which, rv_, rl_]), y, p0=p0, bounds=(lo, hi), maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        raise FitError(f"Law-P did not fit: {exc}") from exc
    return LawP(dict(zip(sizes, map(float, p[: len(sizes)]), strict=True)), *map(float, p[len(sizes) :]))


def snap(r: float, grid: list[int], beyond: bool = False) -> int | None:
    """The grid rank nearest to `r` in log space; None when `r` lies beyond the grid's ends by more than
    half the grid's widest step (snapping it to an end would pair ranks that do not align), unless
    `beyond`."""
    logs = sorted(math.log(g) for g in grid)
    reach = max((b - a for a, b in zip(logs, logs[1:], strict=False)), default=math.log(2)) / 2
    best = min(grid, key=lambda g: abs(math.log(g) - math.log(r)))
    return best if beyond or abs(math.log(best) - math.log(r)) <= reach + 1e-12 else None


@dataclass
class Choice:
    pair: tuple[int, int]
    fallback: str | None  # why the default pair was used, or None
    candidates: list[tuple[int, int]] = field(default_factory=list)
    partners: dict = field(default_factory=dict)  # vision rank -> closed-form LLM rank (NaN: not real)
    complex_partners: int = 0
    predicted: dict = field(default_factory=dict)  # "rv,rl" -> predicted PPL - E (every grid pair)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["partners"] = {str(k): (None if math.isnan(v) else v) for k, v in self.partners.items()}
        return d


def choose(
    law_v: LawT | None,
    law_l: LawT | None,
    law_p: LawP | None,
    grid_v: list[int],
    grid_l: list[int],
    d: float,
    tol: float = 0.5,
    default: tuple[int, int] = (8, 8),
    snap_beyond_grid: bool = False,
) -> Choice:
    """MARS's pair for dataset size `d` (see the module docstring). `snap_beyond_grid`: a partner rank
    beyond the grid's ends is snapped to the nearest end too (the most nearly aligned pair the grid
    has) instead of being dropped."""
    predicted = (
        {} if law_p is None else {f"{v},{lr}": float(law_p.ppl(v, lr)) for v in grid_v for lr in grid_l}
    )
    if law_v is None or law_l is None or law_p is None:
        return Choice(default, "a law did not fit", predicted=predicted)
    partners = {v: law_l.rank_for_time(float(law_v.time(v, d)), d) for v in grid_v}
    complex_partners = sum(math.isnan(x) for x in partners.values())
    cands = {
        (v, lr)
        for v in grid_v
        for lr in grid_l
        if abs(
            math.log(max(float(law_v.time(v, d)), MIN_TIME))
            - math.log(max(float(law_l.time(lr, d)), MIN_TIME))
        )
        <= tol
    }
    snapped = {v: snap(x, grid_l, snap_beyond_grid) for v, x in partners.items() if not math.isnan(x)}
    cands |= {(v, r) for v, r in snapped.items() if r is not None}
    if not cands:
        return Choice(default, "no aligned pair", [], partners, complex_partners, predicted)
    best = min(sorted(cands), key=lambda p: predicted[f"{p[0]},{p[1]}"])
    return Choice(best, None, sorted(cands), partners, complex_partners, predicted)

"""The deterministic first-order sub-case of the bound against PEPit's worst case.

:func:`pepit_gd_comparison` compares the sub-case with no ZO block, n = 1 and no heterogeneity
(gradient descent with step eta on an L-smooth nonconvex f) with PEPit's worst case of
min_{t<T} ||grad f(x_t)||^2 over L-smooth functions with f(x_0) - f* <= Delta, and with a Huber
witness below it. PEPit is optional (``pip install 'hybridconv[pepit]'``) and imported lazily.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..theory.bound import hybrid_bound

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PEPIT_MISSING", "pepit_gd_comparison", "pepit_versions"]

PEPIT_MISSING = "PEPit not installed (pip install 'hybridconv[pepit]')"


def _import_pepit():
    try:
        import PEPit  # noqa: F401
        from PEPit import PEP
        from PEPit.functions import SmoothFunction
    except ImportError as e:
        raise ImportError(PEPIT_MISSING) from e
    return PEP, SmoothFunction


def _pepit_gd(PEP, SmoothFunction, L: float, Delta: float, eta: float, T: int,
              solver: str | None) -> float:
    """PEPit's worst case of min_{t<T} ||grad f(x_t)||^2 after T - 1 GD steps from x_0.

    The class: L-smooth f (``SmoothFunction``, not necessarily convex) with a minimizer x*
    (grad f(x*) = 0, f(x*) = f*) and f(x_0) - f* <= Delta. Necessary conditions of a global
    minimum are imposed at x_0 .. x_T: f(x_t) >= f* and f(x_t) - f* >= ||grad f(x_t)||^2 / (2L)
    (true for every L-smooth function bounded below by f*). The PEP is thus a relaxation of the
    class, and its dual value an upper bound on the exact worst case."""
    problem = PEP()
    f = problem.declare_function(SmoothFunction, L=L)
    xs = f.stationary_point()
    fs = f(xs)
    x = problem.set_initial_point()
    g, fx = f.oracle(x)
    problem.set_initial_condition(fx - fs <= Delta)
    for t in range(T + 1):
        if t < T:  # x_T is not measured, but the minimum's conditions hold there too
            problem.set_performance_metric(g**2)
        problem.add_constraint(fx >= fs)
        problem.add_constraint(fx - fs >= g**2 / (2 * L))
        if t < T:
            x = x - eta * g
            g, fx = f.oracle(x)
    kwargs = {"solver": solver} if solver else {}
    with warnings.catch_warnings():  # "may be inaccurate": the witness brackets the value
        warnings.simplefilter("ignore", UserWarning)
        return float(problem.solve(wrapper="cvxpy", verbose=0, **kwargs))


def _huber_witness(L: float, Delta: float, eta: float, T: int) -> float:
    """min_{t<T} |f'(x_t)|^2 of gradient descent on a 1-d Huber function, a lower bound on the
    exact worst case.

    f(x) = g |x| - g^2 / (2L) for |x| >= g / L, L x^2 / 2 inside (L-smooth, inf f = 0 at 0),
    x_0 = Delta / g + g / (2L) (so f(x_0) = Delta), with g^2 = Delta / ((T - 1) eta + 1/(2L)),
    the largest slope for which the T - 1 steps of length eta g stay on the linear part."""
    g = math.sqrt(Delta / ((T - 1) * eta + 1 / (2 * L)))
    x = Delta / g + g / (2 * L)
    best = math.inf
    for _ in range(T):
        d = g * math.copysign(1.0, x) if abs(x) >= g / L else L * x
        best = min(best, d * d)
        x -= eta * d
    return best


def pepit_gd_comparison(L: float = 1.0, Delta: float = 1.0,
                        etas: Sequence[float] | None = None,
                        T_values: Sequence[int] = (1, 2, 5, 10, 20)) -> pd.DataFrame:
    """Our bound against PEPit's worst case in the deterministic first-order sub-case.

    The sub-case: no ZO block (``hybrid_bound().special_case("no_zo_block")``), n = 1,
    sigma_y = Theta_y = 0, i.e. gradient descent x_{t+1} = x_t - eta grad f(x_t) on an L-smooth
    (nonconvex) f with f(x_0) - f* <= Delta; our bound on min_{t<T} ||grad f(x_t)||^2 is then
    min(Delta / (gamma_y eta T), 2 L Delta) under C2 (eta L <= 1/2), with gamma_y the derived
    descent coefficient (7/8 for small eta L). PEPit's worst case is computed on
    ``SmoothFunction`` (L-smooth, not necessarily convex) over the iterates x_0 .. x_T and a
    minimizer x* with the necessary conditions of a global minimum f* at every iterate: the
    dual value of the SDP, an upper bound on the exact worst case. A lower bound comes with it:
    gradient descent run on a Huber function (``witness``). The exact worst case lies between
    the two, which differ by a factor of at most 1 / (1 - L eta / 2) (3% at eta L = 1/16).

    Args:
        L, Delta: the smoothness constant and the initial gap.
        etas: step sizes (default 1/(2L), 1/(8L), 1/(32L)); each must satisfy C2.
        T_values: numbers of gradient evaluations T (the bound's epochs at n = 1).

    Returns:
        one row per (eta, T): L, Delta, eta, T, pepit (PEPit's worst case), witness (the Huber
        lower bound), ours (our bound) and ratio = pepit / ours (<= 1 for a valid bound;
        1 / ratio is a lower bound on how loose ours is).

    Raises:
        ImportError: with :data:`PEPIT_MISSING` when PEPit is not installed.
        ValueError: for a step size outside C2 or bad arguments.
    """
    import pandas as pd

    for name, v in (("L", L), ("Delta", Delta)):
        if isinstance(v, bool) or not (isinstance(v, int | float) and math.isfinite(v)
                                       and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    etas = tuple(etas) if etas is not None else (1 / (2 * L), 1 / (8 * L), 1 / (32 * L))
    T_values = tuple(T_values)
    if not etas or not T_values:
        raise ValueError("etas and T_values must not be empty")
    for T in T_values:
        if isinstance(T, bool) or not isinstance(T, int | np.integer) or T < 1:
            raise ValueError(f"T_values must be integers >= 1, got {T!r}")
    bound = hybrid_bound().special_case("no_zo_block")
    values = dict(L_y=L, Delta=Delta, n=1, sigma_y=0.0, Theta_y=0.0)
    for eta in etas:
        if isinstance(eta, bool) or not (isinstance(eta, int | float) and eta > 0):
            raise ValueError(f"etas must be numbers > 0, got {eta!r}")
        bad = bound.violated(**values, eta_y=eta, T=1)
        if bad:
            raise ValueError(f"eta = {eta!r} is outside the theorem's conditions: "
                             + "; ".join(bad))
    PEP, SmoothFunction = _import_pepit()
    import cvxpy

    solver = "CLARABEL" if "CLARABEL" in cvxpy.installed_solvers() else None
    rows = []
    for eta in etas:
        for T in T_values:
            ours = bound.evaluate(**values, eta_y=eta, T=int(T))
            pep = _pepit_gd(PEP, SmoothFunction, L, Delta, float(eta), int(T), solver)
            rows.append({"L": float(L), "Delta": float(Delta), "eta": float(eta), "T": int(T),
                         "pepit": pep, "witness": _huber_witness(L, Delta, float(eta), int(T)),
                         "ours": ours, "ratio": pep / ours})
    return pd.DataFrame(rows)


def pepit_versions() -> str:
    """The versions of PEPit and its solvers, for the report."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("pepit", "cvxpy", "clarabel"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)

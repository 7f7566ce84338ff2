"""The stationary noise floor of an isotropic quadratic against the bound.

For the hybrid (ZO on x, FO on y) with random reshuffling on a quadratic whose blocks are
isotropic (H_xx = L_x I, H_yy = L_y I, no coupling) and whose FO block has no heterogeneity
(sigma_y = 0), E||grad F||^2 at epoch ends settles to a floor that
:meth:`~hybridconv.problems.quadratic.QuadraticProblem.noise_floor` computes in closed form
(first order in eta_x: the ZO directions' variance, (d_x + 1) sigma_x^2 / q for Gaussian
directions). The theorem bounds the average of E||grad F||^2 over epochs by
B / min(gamma_x eta_x, gamma_y eta_y); as T -> infinity (the descent part, without the small-T
alternative, which is 0 at a minimizer) that is its bound on the floor. The ratio floor / bound
says how much of the bound's ZO term is slack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import spec
from ..problems.quadratic import QuadraticProblem
from ..theory.bound import Bound, hybrid_bound

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FRACTIONS", "isotropic_noise_floor"]

FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.2, 0.5, 1.0)
"""Step sizes as fractions of their caps (C1-C3), on both blocks."""

_T_INFINITY = 10**12


def isotropic_noise_floor(*, directions: str = "gaussian", q: int = 1, n: int = 8,
                          d_x: int = 16, d_y: int = 4, sigma_x: float = 1.0, mu: float = 1e-3,
                          fractions: Sequence[float] = FRACTIONS, seed: int = 0,
                          bound: Bound | None = None) -> pd.DataFrame:
    """Closed-form floor against the bound as T -> infinity, at step sizes that are
    ``fractions`` of their caps.

    Returns:
        one row per fraction: fraction, eta_x, eta_y, floor (closed form), bound (T -> oo),
        ratio = floor / bound, gamma_x, gamma_y.

    Raises:
        ValueError: for directions without a closed form (Rademacher) or bad arguments.
    """
    import pandas as pd

    directions = spec.validate("directions", directions)
    if directions not in ("gaussian", "sphere"):
        raise ValueError(f"directions must be 'gaussian' or 'sphere' for the closed-form floor, "
                         f"got {directions!r}")
    q = spec.validate("q", q)
    bound = bound or hybrid_bound(directions=directions)
    problem = QuadraticProblem(n, d_x, d_y, L_x=1.0, m_x=1.0, L_y=1.0, m_y=1.0, coupling=0.0,
                               sigma_x=sigma_x, sigma_y=0.0, seed=seed)
    z = problem.minimizer()
    consts = problem.constants(z[:d_x], z[d_x:])
    rows = []
    for frac in fractions:
        hyper = {"mu": mu, "q": q, "n": n, "T": _T_INFINITY}
        ex, ey = bound.admissible_steps(frac, frac, **consts, **hyper)
        values = {**consts, **hyper, "eta_x": ex, "eta_y": ey}
        floor = problem.noise_floor(method="hybrid", sampling="rr", eta_x=ex, eta_y=ey,
                                    directions=directions, q=q)
        value = bound.evaluate(small_T=False, **values)
        gx, gy = bound.gamma_functions(values)
        rows.append({"fraction": float(frac), "eta_x": ex, "eta_y": ey, "floor": floor,
                     "bound": value, "ratio": floor / value, "gamma_x": gx, "gamma_y": gy})
    return pd.DataFrame(rows)

"""A simulator problem as a ``torch.nn.Module``: the bridge of the equivalence test.

``ProblemModule(problem)`` holds x (the ZO block) and y (the FO block) as two float64
parameters; ``module(j)`` returns f_j(x, y) of component ``j`` through a custom autograd
function that calls the problem's own numpy ``values`` and ``grads``. Running
:class:`~.optimizer.HybridZOFO` on it with :class:`~.sampler.ReshufflingSampler` and
:class:`~.directions.NumpyStreamDirections` gives the iterates of
``hybridconv.sim.simulate(problem, SimConfig(trials=1, ...))`` for the same seed, which binds
the bound checked on the simulator to the optimizer users fine-tune with.
"""

from __future__ import annotations

import numpy as np
import torch

from ..problems.base import Problem

__all__ = ["ProblemModule"]


class _Component(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, problem, j):  # type: ignore[override]
        xs, ys = x.detach().numpy()[None], y.detach().numpy()[None]
        ctx.save_for_backward(x, y)
        ctx.problem, ctx.j = problem, j
        return torch.tensor(float(problem.values(xs, ys, np.array([j]))[0]),
                            dtype=torch.float64)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, y = ctx.saved_tensors
        gx, gy = ctx.problem.grads(x.detach().numpy()[None], y.detach().numpy()[None],
                                   np.array([ctx.j]))
        return (g * torch.from_numpy(gx[0]), g * torch.from_numpy(gy[0]), None, None)


class ProblemModule(torch.nn.Module):
    """x, y as parameters (start: the problem's default, or ``x0``, ``y0``); ``forward(j)``
    is f_j(x, y).

    >>> from hybridconv.problems import make_problem
    >>> m = ProblemModule(make_problem("quadratic", 4, 3, 2))
    >>> m(0).dtype, tuple(m.x.shape), tuple(m.y.shape)
    (torch.float64, (3,), (2,))
    """

    def __init__(self, problem: Problem, x0: np.ndarray | None = None,
                 y0: np.ndarray | None = None):
        super().__init__()
        if not isinstance(problem, Problem):
            raise ValueError(f"problem must be a hybridconv Problem, got {problem!r}")
        sx, sy = problem.start()
        self.problem = problem
        self.x = torch.nn.Parameter(torch.tensor(sx if x0 is None else x0, dtype=torch.float64))
        self.y = torch.nn.Parameter(torch.tensor(sy if y0 is None else y0, dtype=torch.float64))

    def forward(self, j: int) -> torch.Tensor:
        if not 0 <= int(j) < self.problem.n:
            raise ValueError(f"component j must be in [0, {self.problem.n}), got {j}")
        return _Component.apply(self.x, self.y, self.problem, int(j))

"""The constants of a real model, measured by Hessian-vector products, against the exact
Hessian of a model small enough to form it (``torch.autograd.functional.hessian``).

Tolerances: Lanczos eigen/singular values to 1e-6 relative (tol 1e-10 here, float64);
Hutchinson's trace is unbiased: with 400 probes the estimate is within 4 standard errors of
the exact trace (a 99.99% band for a mean of 400 bounded terms, seed 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybridconv.finetune.diagnostics import BlockHessian, measure_constants


class Tiny(torch.nn.Module):
    """A two-layer classifier with a LoRA-shaped adapter: base W1, W2 (block x), adapter
    A, B and head bias (block y)."""

    def __init__(self, d_in: int = 5, width: int = 4, classes: int = 3, r: int = 2,
                 seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        def p(*shape):
            return torch.nn.Parameter(torch.randn(*shape, generator=g, dtype=torch.float64)
                                      * 0.7)
        self.W1, self.W2 = p(width, d_in), p(classes, width)
        self.A, self.B, self.b = p(r, d_in), p(width, r), p(classes)

    def forward(self, inputs):
        h = torch.tanh(inputs @ (self.W1 + self.B @ self.A).T)
        return h @ self.W2.T + self.b


def make_data(n: int = 12, d_in: int = 5, classes: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    Y = torch.randint(0, classes, (n,), generator=g)
    return [(X[i], Y[i]) for i in range(n)]


def collate(items):
    return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


def exact(model, data):
    x = [model.W1, model.W2]
    y = [model.A, model.B, model.b]
    params = x + y
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    X, Y = collate(data)

    def F(flat):
        parts = torch.split(flat, sizes)
        named = dict(zip(["W1", "W2", "A", "B", "b"],
                         [t.view(s) for t, s in zip(parts, shapes, strict=True)], strict=True))
        out = torch.func.functional_call(model, named, (X,))
        return torch.nn.functional.cross_entropy(out, Y)

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    H = torch.autograd.functional.hessian(F, flat).numpy()
    dx = sum(sizes[:2])
    return H[:dx, :dx], H[dx:, dx:], H[:dx, dx:], dx


def loss_fn_for(model):
    def loss(batch):
        X, Y = batch
        return torch.nn.functional.cross_entropy(model(X), Y)
    return loss


def test_block_products_equal_the_exact_hessian():
    model, data = Tiny(), make_data()
    Hxx, Hyy, Hxy, dx = exact(model, data)
    for p in model.parameters():
        p.requires_grad_(True)
    H = BlockHessian(loss_fn_for(model), [collate(data[:6]), collate(data[6:])],
                     [model.W1, model.W2], [model.A, model.B, model.b])
    rng = np.random.default_rng(0)
    vx, vy = rng.standard_normal(dx), rng.standard_normal(Hyy.shape[0])
    np.testing.assert_allclose(H.xx(vx), Hxx @ vx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(H.yy(vy), Hyy @ vy, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(H.xy(vy), Hxy @ vy, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(H.yx(vx), Hxy.T @ vx, rtol=1e-10, atol=1e-12)
    assert H.count == 8  # 4 products x 2 batches


@pytest.mark.parametrize(("seed", "ncv"), [(0, 6), (1, 6), (2, 6), (0, 40)])
def test_constants_agree_with_the_exact_hessian(seed, ncv):
    """ncv = 6: Lanczos (d_x = 32, d_y = 21); ncv = 40: the small-block path that forms the
    blocks explicitly."""
    model, data = Tiny(seed=seed), make_data(seed=seed + 10)
    Hxx, Hyy, Hxy, _ = exact(model, data)
    c = measure_constants(model, loss_fn_for(model), data, [model.W1, model.W2],
                          [model.A, model.B, model.b], batch_size=4, hessian_batch=6,
                          collate=collate, tol=1e-10, ncv=ncv, trace_probes=400, seed=seed)
    assert c.L_x == pytest.approx(np.abs(np.linalg.eigvalsh(Hxx)).max(), rel=1e-6)
    assert c.L_y == pytest.approx(np.abs(np.linalg.eigvalsh(Hyy)).max(), rel=1e-6)
    assert c.L_xy == pytest.approx(np.linalg.svd(Hxy, compute_uv=False).max(), rel=1e-6)
    assert max(c.L_x_residual, c.L_y_residual, c.L_xy_residual) < 1e-5
    assert abs(c.trace_xx - np.trace(Hxx)) <= 4 * c.trace_xx_se
    assert c.effective_rank == pytest.approx(c.trace_xx / c.L_x)


def test_gradients_and_heterogeneity_are_exact():
    model, data = Tiny(), make_data(n=8)
    loss = loss_fn_for(model)
    x, y = [model.W1, model.W2], [model.A, model.B, model.b]
    c = measure_constants(model, loss, data, x, y, batch_size=2, collate=collate, seed=0)
    grads = []
    for item in data:
        g = torch.autograd.grad(loss(collate([item])), x + y)
        grads.append(torch.cat([t.reshape(-1) for t in g]).numpy())
    G = np.array(grads)
    dx = model.W1.numel() + model.W2.numel()
    mean = G.mean(axis=0)
    assert c.grad_x_sq == pytest.approx(mean[:dx] @ mean[:dx], rel=1e-10)
    assert c.grad_y_sq == pytest.approx(mean[dx:] @ mean[dx:], rel=1e-10)
    s_x = np.mean(((G[:, :dx] - mean[:dx]) ** 2).sum(axis=1))
    assert c.s_x_sq == pytest.approx(s_x, rel=1e-8)
    # minibatch components: the variance of a mean of B = 2 drawn without replacement from 8,
    # checked by enumerating every pair
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    var = np.mean([((G[[i, j], :dx].mean(axis=0) - mean[:dx]) ** 2).sum() for i, j in pairs])
    assert c.sigma_x_sq == pytest.approx(var, rel=1e-8)
    assert c.F == pytest.approx(float(loss(collate(data)).detach()), rel=1e-12)
    assert c.d_x == dx and c.examples == 8 and c.hvps > 0 and c.seconds > 0
    # a subset of 8 from a population of 64: the unbiased variance rescaled to divisor N, then
    # the minibatch formula with N
    big = measure_constants(model, loss, data, x, y, batch_size=2, population=64,
                            collate=collate, seed=0)
    sigma_n = s_x * 8 / 7 * 63 / 64
    assert big.sigma_x_sq == pytest.approx(sigma_n / 2 * 62 / 63, rel=1e-8)
    assert big.population == 64 and c.population == 8


def test_lanczos_residual_catches_a_wrong_singular_pair():
    """The L_xy residual looks at both sides: a pair off by 3% is not reported as converged."""
    from hybridconv.finetune.diagnostics import _top_singular

    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 20))
    s, res = _top_singular(lambda v: A @ v, lambda u: A.T @ u, 30, 20, tol=1e-12, ncv=8,
                           rng=rng)
    assert s == pytest.approx(np.linalg.svd(A, compute_uv=False)[0], rel=1e-9) and res < 1e-8
    u, sv, vt = np.linalg.svd(A)
    v = vt[0] + 0.03 * vt[1]
    v /= np.linalg.norm(v)
    w = A @ v
    u0 = w / np.linalg.norm(w)
    bad = max(np.linalg.norm(A @ v - sv[0] * u0), np.linalg.norm(A.T @ u0 - sv[0] * v)) / sv[0]
    assert bad > 1e-3  # what the two-sided residual would report for such a pair


def test_state_is_restored():
    model, data = Tiny(), make_data(n=4)
    model.train()
    model.W2.requires_grad_(False)
    before = [p.detach().clone() for p in model.parameters()]
    measure_constants(model, loss_fn_for(model), data, [model.W1, model.W2],
                      [model.A, model.B, model.b], batch_size=2, collate=collate)
    assert model.training and not model.W2.requires_grad and model.W1.requires_grad
    for a, b in zip(before, model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, "batch_size must be an integer in"),
    ({"batch_size": 9}, "batch_size must be an integer in"),
    ({"population": 4}, "population must be an integer >= 8"),
    ({"trace_probes": 1}, "trace_probes must be an integer >= 2"),
    ({"tol": 0}, "tol must be a number > 0"),
    ({"hessian_batch": 3}, "hessian_batch must be an integer that divides 8"),
    ({"examples": []}, "examples must hold at least 2"),
    ({"y": "x"}, "x and y must be disjoint"),
])
def test_bad_input(kwargs, message):
    model, data = Tiny(), make_data(n=8)
    x, y = [model.W1, model.W2], [model.A, model.B, model.b]
    args = {"examples": data, "batch_size": 2, **kwargs}
    if args.get("y") == "x":
        args["y"] = x
    with pytest.raises(ValueError, match=message):
        measure_constants(model, loss_fn_for(model), args.pop("examples"), x,
                          args.pop("y", y), collate=collate, **args)


def test_seed_gives_the_same_numbers():
    model, data = Tiny(), make_data(n=6)
    x, y = [model.W1, model.W2], [model.A, model.B, model.b]
    a = measure_constants(model, loss_fn_for(model), data, x, y, batch_size=2, collate=collate,
                          seed=3)
    b = measure_constants(model, loss_fn_for(model), data, x, y, batch_size=2, collate=collate,
                          seed=3)
    assert {k: v for k, v in a.as_dict().items() if k != "seconds"} == \
        {k: v for k, v in b.as_dict().items() if k != "seconds"}
    assert math.isfinite(a.effective_rank)

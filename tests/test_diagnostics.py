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

from hybridconv.finetune.diagnostics import BlockHessian, measure_constants, slq


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one thread is fastest, and a loaded machine's oversubscribed
    threads made these tests 8x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
                          collate=collate, tol=1e-10, ncv=ncv, trace_probes=400, slq_steps=1,
                          seed=seed)
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


# ---------------------------------------------------------------------------------------------
# stochastic Lanczos quadrature
def _fun(H, f):
    lam, U = np.linalg.eigh(H)
    return (U * f(lam)) @ U.T


@pytest.mark.parametrize("reorthogonalize", [True, False])
def test_slq_with_d_steps_is_the_exact_quadratic_form_per_probe(reorthogonalize):
    """With m = d Lanczos steps the Gauss quadrature is exact: each probe's estimate is
    z^T f(H) z for its Rademacher z (reproduced from the same seed), for f = identity,
    positive part and absolute value. Without reorthogonalization, d = 12 steps of a
    well-separated spectrum stay accurate too."""
    rng = np.random.default_rng(3)
    d = 12
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    H = (Q * np.linspace(-2.0, 3.0, d)) @ Q.T
    res = slq(lambda v: H @ v, d, probes=5, steps=d, rng=np.random.default_rng(7),
              reorthogonalize=reorthogonalize)
    assert res.reorthogonalized is reorthogonalize
    again = np.random.default_rng(7)
    zs = [again.choice(np.array([-1.0, 1.0]), size=d) for _ in range(5)]
    for name, f in (("trace", lambda t: t), ("positive", lambda t: np.maximum(t, 0)),
                    ("absolute", np.abs)):
        want = [z @ _fun(H, f) @ z for z in zs]
        np.testing.assert_allclose(res.estimates[name], want, rtol=1e-7, atol=1e-9)
    assert all(abs(w.sum() - 1) < 1e-12 for w in res.weights)   # a probability measure


def test_slq_of_a_diagonal_matrix_is_exact():
    """Rademacher probes see every eigenvector of a diagonal matrix with weight 1/d: exact."""
    lam = np.array([-1.0, 0.5, 2.0, 4.0, -3.0, 0.25])
    res = slq(lambda v: lam * v, 6, probes=3, steps=6, rng=np.random.default_rng(0),
              functions=("positive", "absolute", "sqrt"))
    assert res.mean("positive") == pytest.approx(6.75)
    assert res.mean("absolute") == pytest.approx(10.75)
    assert res.mean("sqrt") == pytest.approx(sum(np.sqrt(np.maximum(lam, 0))))
    assert res.se("absolute") == pytest.approx(0.0, abs=1e-12)


def test_slq_few_steps_on_a_large_spectrum_within_its_error():
    """d = 400, a few outliers over a bulk near 0 (a Hessian's shape), 12 steps, 40 probes:
    tr|H| within 4 standard errors plus the quadrature's bias (5%)."""
    rng = np.random.default_rng(1)
    d = 400
    lam = np.concatenate([[50.0, 20.0, -8.0], 0.05 * rng.standard_normal(d - 3)])
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    H = (Q * lam) @ Q.T
    res = slq(lambda v: H @ v, d, probes=40, steps=12, rng=np.random.default_rng(2))
    for name, exact_value in (("absolute", np.abs(lam).sum()),
                              ("positive", np.maximum(lam, 0).sum()), ("trace", lam.sum())):
        assert abs(res.mean(name) - exact_value) <= 4 * res.se(name) + 0.05 * exact_value, name


def test_slq_refuses_bad_arguments():
    with pytest.raises(ValueError, match="probes"):
        slq(lambda v: v, 3, probes=1, steps=2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="steps"):
        slq(lambda v: v, 3, probes=2, steps=0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="functions"):
        slq(lambda v: v, 3, probes=2, steps=2, rng=np.random.default_rng(0),
            functions=("cube",))


def test_effective_rank_of_the_er_assumption_against_the_exact_hessian():
    """r = (tr|H_xx| + ||H_xy||_*) / (L_x + L_xy) by SLQ with d steps (exact per probe) on the
    tiny model: within 4 standard errors of the exact value; MeZO's one-sided
    tr(H_xx,+) / L_x likewise; and -diag(W, (L_y + L_xy) I) <= H <= diag(W, ...) holds for
    W = |H_xx| + (H_xy H_yx)^{1/2}, the matrix whose trace r measures."""
    model, data = Tiny(seed=1), make_data(seed=11)
    Hxx, Hyy, Hxy, dx = exact(model, data)
    c = measure_constants(model, loss_fn_for(model), data, [model.W1, model.W2],
                          [model.A, model.B, model.b], batch_size=4, hessian_batch=6,
                          collate=collate, tol=1e-10, ncv=6, trace_probes=20, slq_steps=dx,
                          seed=0)
    lam = np.linalg.eigvalsh(Hxx)
    s = np.linalg.svd(Hxy, compute_uv=False)
    r_exact = (np.abs(lam).sum() + s.sum()) / (c.L_x + c.L_xy)
    assert abs(c.effective_rank_er - r_exact) <= 4 * c.effective_rank_er_se + 1e-9
    assert abs(c.trace_abs_xx - np.abs(lam).sum()) <= 4 * c.trace_abs_xx_se + 1e-9
    assert abs(c.nuclear_xy - s.sum()) <= 4 * c.nuclear_xy_se + 1e-9
    assert abs(c.trace_pos_xx - np.maximum(lam, 0).sum()) <= 4 * c.trace_pos_xx_se + 1e-9
    assert c.effective_rank_pos == pytest.approx(c.trace_pos_xx / c.L_x)
    assert 1 <= r_exact <= dx
    W = _fun(Hxx, np.abs) + _fun(Hxy @ Hxy.T, lambda t: np.sqrt(np.maximum(t, 0)))
    ly = c.L_y + c.L_xy
    D = np.block([[W, np.zeros_like(Hxy)], [np.zeros_like(Hxy.T), ly * np.eye(len(Hyy))]])
    Hfull = np.block([[Hxx, Hxy], [Hxy.T, Hyy]])
    assert np.linalg.eigvalsh(D - Hfull).min() >= -1e-9
    assert np.linalg.eigvalsh(D + Hfull).min() >= -1e-9
    assert np.linalg.norm(W, 2) <= c.L_x + c.L_xy + 1e-9


def test_a_zero_head_gives_zero_curvature_not_an_error():
    """A zero-initialised head makes the loss independent of the base weights W1 and of the
    adapter: H_xx = 0, and H_xy = 0 between them (ARPACK cannot start from a vector its
    operator maps to 0); with the head in y the coupling through it is real (> 0)."""
    model, data = Tiny(seed=0), make_data()
    with torch.no_grad():
        model.W2.zero_()   # the head
    kw = dict(batch_size=4, collate=collate, ncv=4, trace_probes=2, slq_steps=3, seed=0)
    c = measure_constants(model, loss_fn_for(model), data, [model.W1],
                          [model.A, model.B, model.b, model.W2], **kw)
    assert c.L_x == 0.0 and c.trace_xx == 0.0 and c.trace_abs_xx == 0.0
    assert c.L_xy > 0 and c.L_y > 0
    c = measure_constants(model, loss_fn_for(model), data, [model.W1],
                          [model.A, model.B, model.b], **kw)
    assert c.L_x == 0.0 and c.L_xy == 0.0 and c.nuclear_xy == 0.0

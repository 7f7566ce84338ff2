"""HybridZOFO: memory discipline, determinism, exact restore, resume, replay, validation."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridconv.finetune import (
    HybridZOFO,
    TorchDirections,
    hybrid_param_groups,
    replay,
    split_parameters,
)


class Net(torch.nn.Module):
    """A small model: a 'base' (ZO) and a 'head' (FO), with dropout."""

    def __init__(self, dtype=torch.float32, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.base = torch.nn.Linear(6, 8).to(dtype)
        self.head = torch.nn.Linear(8, 2).to(dtype)
        self.drop = torch.nn.Dropout(0.5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g).to(dtype))

    def forward(self, x):
        return self.head(self.drop(torch.tanh(self.base(x))))


def _data(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 2, (n,), generator=g)


def _opt(net, **kw):
    groups = hybrid_param_groups(net, lr_x=kw.pop("lr_x", 1e-2), lr_y=kw.pop("lr_y", 1e-1),
                                 fo="^head")
    return HybridZOFO(groups, module=net, **kw)


def _closure(net, X, Y):
    return lambda: torch.nn.functional.cross_entropy(
        net(X.to(net.base.weight.dtype)).float(), Y)


def _train(net, opt, steps, seed=0, sched=None):
    X, Y = _data(seed)
    losses = []
    for i in range(steps):
        b = slice(4 * (i % 4), 4 * (i % 4) + 4)
        losses.append(float(opt.step(_closure(net, X[b], Y[b]))))
        if sched is not None:
            sched.step()
    return losses


def _zo(net):
    return [net.base.weight, net.base.bias]


def test_zo_parameters_have_no_grad_buffers_and_no_state():
    net = Net()
    opt = _opt(net, fo_optimizer="adam")
    _train(net, opt, 3)
    for p in _zo(net):
        assert not p.requires_grad and p.grad is None and p not in opt.state
    assert all(p.requires_grad and p in opt.state for p in net.head.parameters())


def test_the_global_random_state_is_never_touched():
    net = Net()
    opt = _opt(net, q=2)
    before = torch.get_rng_state()
    _train(net, opt, 3)
    assert torch.equal(before, torch.get_rng_state())


def test_every_pass_runs_in_eval_mode_and_the_mode_is_restored():
    net = Net()
    net.train()
    opt = _opt(net, q=2)
    seen = []
    X, Y = _data()

    def closure():
        seen.append(net.training)
        return torch.nn.functional.cross_entropy(net(X), Y)

    opt.step(closure)
    assert seen == [False] * 5 and net.training


@pytest.mark.parametrize("difference,fo_gradient,q,passes", [
    ("central", "clean", 1, 3), ("central", "clean", 3, 7), ("central", "shared", 2, 4),
    ("forward", "clean", 2, 3), ("forward", "shared", 2, 3),
])
def test_forward_passes_per_step(difference, fo_gradient, q, passes):
    net = Net()
    opt = _opt(net, q=q, difference=difference, fo_gradient=fo_gradient)
    _train(net, opt, 2)
    assert opt.forward_passes == 2 * passes


def test_the_step_is_the_two_point_estimate_and_the_clean_gradient():
    """One step by hand: x - lr_x pg u, y - lr_y grad_y f(x, y), with pg the central
    difference along the u the direction source regenerates."""
    net = Net()
    ref = copy.deepcopy(net)
    opt = _opt(net, mu=1e-3, lr_x=0.05, lr_y=0.2)
    X, Y = _data()
    opt.step(_closure(net, X, Y))
    seed = opt.log.entries[0]["seed"]
    u = list(TorchDirections().generate(seed, 0, _zo(ref)))
    ref.eval()
    loss = torch.nn.functional.cross_entropy(ref(X), Y)
    gy = torch.autograd.grad(loss, list(ref.head.parameters()))
    with torch.no_grad():
        def f(s):
            for p, v in zip(_zo(ref), u, strict=True):
                p.add_(v, alpha=s)
            val = float(torch.nn.functional.cross_entropy(ref(X).double(), Y))
            for p, v in zip(_zo(ref), u, strict=True):
                p.add_(v, alpha=-s)
            return val
        pg = (f(1e-3) - f(-1e-3)) / 2e-3
    logged = opt.log.entries[0]["projected_grads"][0]  # from fp32 losses: ~1e-4 relative
    assert math.isclose(pg, logged, rel_tol=1e-2)
    for p, p0, v in zip(_zo(net), _zo(ref), u, strict=True):
        torch.testing.assert_close(p, p0 - 0.05 * logged * v, rtol=1e-5, atol=1e-6)
    for p, p0, g in zip(net.head.parameters(), ref.head.parameters(), gy, strict=True):
        torch.testing.assert_close(p, p0 - 0.2 * g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_perturb_restore_is_bit_exact_in_half_precision(dtype):
    """A step with a zero projected gradient must leave a half-precision ZO block unchanged
    bit for bit; without the fp32 master copy it does not (the test can fail)."""
    for master, exact in ((None, True), (False, False)):
        net = Net(dtype)
        before = [p.clone() for p in _zo(net)]
        groups = hybrid_param_groups(net, lr_x=1e-2, lr_y=1e-2, fo="^head")
        opt = HybridZOFO(groups, mu=1e-2, q=4, master_weights=master, seed=3)
        for _ in range(5):
            opt.step(lambda net=net: net.head.bias.float().sum() * 0)  # constant loss: pg = 0
        same = all(torch.equal(a, b) for a, b in zip(before, _zo(net), strict=True))
        assert same is exact, (dtype, master)


def test_master_weights_keep_small_bf16_updates():
    net = Net(torch.bfloat16)
    w0 = net.base.weight.detach().float().clone()
    opt = _opt(net, lr_x=1e-4, mu=1e-2)
    _train(net, opt, 20)
    master = opt._master[0]
    assert master is not None and not torch.equal(master, w0)
    assert torch.equal(net.base.weight, master.to(torch.bfloat16))


@pytest.mark.parametrize("fo_optimizer", ["sgd", "adam", "adamw"])
def test_resume_continues_bit_identically(fo_optimizer):
    kw = dict(q=2, fo_optimizer=fo_optimizer, weight_decay=0.01, seed=5)
    straight = Net()
    opt = _opt(straight, **kw)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    _train(straight, opt, 6, sched=sched)

    first = Net()
    opt1 = _opt(first, **kw)
    sched1 = torch.optim.lr_scheduler.StepLR(opt1, step_size=2, gamma=0.5)
    _train(first, opt1, 3, sched=sched1)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict(),
                "sched": sched1.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=False)
    resumed = Net(seed=99)  # different weights: all must come from the checkpoint
    resumed.load_state_dict(ck["model"])
    opt2 = _opt(resumed, **kw)
    opt2.load_state_dict(ck["opt"])
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    sched2.load_state_dict(ck["sched"])
    X, Y = _data()
    for i in range(3, 6):
        b = slice(4 * (i % 4), 4 * (i % 4) + 4)
        opt2.step(_closure(resumed, X[b], Y[b]))
        sched2.step()
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert opt2.steps == 6 and len(opt2.log.entries) == 6


@pytest.mark.parametrize("kw,dtype", [
    ({}, torch.float32), ({"q": 3, "directions": "sphere"}, torch.float32),
    ({"difference": "forward", "directions": "rademacher"}, torch.float32),
    ({"q": 2}, torch.bfloat16), ({"master_weights": True}, torch.float32),
])
def test_replay_reproduces_the_final_zo_weights(kw, dtype):
    net = Net(dtype)
    initial = copy.deepcopy(net)
    opt = _opt(net, **kw)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    _train(net, opt, 7, sched=sched)
    out = replay(initial, opt.log.to_dict())
    for a, b in zip(out, _zo(net), strict=True):
        assert torch.equal(a, b)
    assert out[0] is initial.base.weight
    # the log matters: a corrupted projected gradient gives other weights
    bad = opt.log.to_dict()
    bad["entries"][3]["projected_grads"][0] += 1.0
    assert not torch.equal(replay(copy.deepcopy(initial), bad)[0], net.base.weight)


def test_scheduler_drives_both_rates():
    net = Net()
    opt = _opt(net, lr_x=0.1, lr_y=0.2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda t: 0.5 ** t, lambda t: 1.0])
    _train(net, opt, 3, sched=sched)
    assert [e["lr_x"][0] for e in opt.log.entries] == [0.1, 0.05, 0.025]
    assert opt.param_groups[1]["lr"] == 0.2


def test_non_finite_loss_stops_without_changing_the_weights():
    net = Net()
    opt = _opt(net)
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(FloatingPointError, match="non-finite"):
        opt.step(lambda: net.head.bias.sum() * float("nan"))
    for a, b in zip(before, net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_failing_closure_restores_the_block():
    net = Net()
    opt = _opt(net)
    before = [p.clone() for p in _zo(net)]
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:  # the first perturbed pass
            raise RuntimeError("boom")
        return net.head.bias.sum()

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    for a, b in zip(before, _zo(net), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kw,match", [
    ({"lr_x": 0}, "lr_x"), ({"lr_y": -1}, "lr_y"), ({"mu": float("nan")}, "mu"),
    ({"q": 0}, "q"), ({"q": 1.5}, "q"), ({"difference": "backward"}, "difference"),
    ({"fo_optimizer": "lion"}, "fo_optimizer"), ({"fo_gradient": "dirty"}, "fo_gradient"),
    ({"directions": "cauchy"}, "directions"), ({"seed": -1}, "seed"),
    ({"betas": (0.9, 1.0)}, "betas"), ({"weight_decay": -0.1}, "weight_decay"),
])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        _opt(Net(), **kw)


def test_bad_groups_and_closures():
    net = Net()
    with pytest.raises(ValueError, match="kind"):
        HybridZOFO([{"params": list(net.parameters())}])
    with pytest.raises(ValueError, match="parameter groups"):
        HybridZOFO(list(net.parameters()))
    with pytest.raises(ValueError, match="weight_decay"):
        HybridZOFO([{"params": [net.base.weight], "kind": "zo", "weight_decay": 0.1}])
    opt = _opt(net)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="scalar"):
        opt.step(lambda: net(torch.zeros(3, 6)))


def test_split_by_type_list_and_callable():
    net = Net()
    s = split_parameters(net, fo=torch.nn.Linear, zo=None)
    assert len(s["fo"]) == 4 and not s["zo"]
    s = split_parameters(net, zo=["base.weight"], fo=[net.head.weight])
    assert [n for n, _ in s["zo"]] == ["base.weight"]
    assert [n for n, _ in s["fo"]] == ["head.weight"]
    assert {n for n, _ in s["frozen"]} == {"base.bias", "head.bias"}
    s = split_parameters(net, fo=lambda n, p: p.ndim == 1)
    assert {n for n, _ in s["fo"]} == {"base.bias", "head.bias"}
    with pytest.raises(ValueError, match="no parameter named"):
        split_parameters(net, zo=["nope"])
    with pytest.raises(ValueError, match="regular expression"):
        split_parameters(net, zo="(")
    with pytest.raises(ValueError, match="frozen"):
        hybrid_param_groups(net, lr_x=1, lr_y=1, frozen=".")


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["gaussian", "sphere", "rademacher"]),
       shapes=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 4)), min_size=1,
                       max_size=4),
       seed=st.integers(0, 2**62), k=st.integers(0, 10))
def test_directions_regenerate_identically_and_have_the_right_support(kind, shapes, seed, k):
    params = [torch.zeros(s) for s in shapes]
    src = TorchDirections(kind)
    a = [t.clone() for t in src.generate(seed, k, params)]
    b = list(src.generate(seed, k, params))
    assert all(torch.equal(s, t) for s, t in zip(a, b, strict=True))
    assert [t.shape for t in a] == [p.shape for p in params]
    flat = torch.cat([t.reshape(-1) for t in a])
    if kind == "sphere":
        assert math.isclose(float(flat.norm()), math.sqrt(flat.numel()), rel_tol=1e-5)
    if kind == "rademacher":
        assert set(flat.tolist()) <= {-1.0, 1.0}
    other = torch.cat([t.reshape(-1) for t in src.generate(seed, k + 1, params)])
    if kind == "gaussian" or flat.numel() >= 40:  # discrete at D = 1: +-1 only
        assert not torch.equal(flat, other)


@pytest.mark.parametrize("kind", ["gaussian", "sphere", "rademacher"])
def test_directions_are_isotropic(kind):
    """E[u u^T] = I: the empirical second moment of 4000 draws in dimension 5 is within
    0.15 of I entrywise (each entry's sd is <= sqrt(3/4000) = 0.027: a 5.5-sigma band,
    seeds 0..3999, so a false failure has probability < 1e-6 per entry)."""
    params = [torch.zeros(2), torch.zeros(3)]
    src = TorchDirections(kind)
    U = torch.stack([torch.cat(list(src.generate(s, 0, params))) for s in range(4000)])
    M = U.T.double() @ U.double() / len(U)
    assert (M - torch.eye(5, dtype=torch.float64)).abs().max() < 0.15


@pytest.mark.parametrize("kind", ["gaussian", "sphere", "rademacher"])
def test_results_do_not_depend_on_the_thread_count(kind):
    """Each tensor's part has its own generator: 1 or 3 worker threads, same weights."""
    nets = []
    for threads in (1, 3):
        net = Net()
        _train(net, _opt(net, q=2, directions=kind, threads=threads), 4)
        nets.append(net)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_forked_child_steps_with_its_own_thread_pool(monkeypatch):
    """The pool threads that fill direction pieces do not survive a fork: a child forked after
    a threaded step (a DataLoader worker, a multiprocessing pool) makes its own pool instead of
    waiting forever on the parent's. Small pieces, so that a small tensor takes the pool."""
    import multiprocessing

    from hybridconv.finetune import directions, optimizer

    monkeypatch.setattr(directions, "CHUNK", 16)
    monkeypatch.setattr(optimizer, "CHUNK", 16)
    net = Net()
    _train(net, _opt(net, q=2, threads=2), 1)
    assert optimizer._POOLS, "the step did not use the thread pool"

    def child():
        torch.set_num_threads(1)  # torch's own OpenMP team does not survive a fork either
        _train(net, _opt(net, q=2, threads=2), 1)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(30)
    hung = proc.is_alive()
    if hung:
        proc.kill()
        proc.join()
    assert not hung and proc.exitcode == 0


@pytest.mark.parametrize("kind,q,dtype,threads", [
    ("gaussian", 1, torch.float32, 2), ("sphere", 2, torch.float32, 3),
    ("rademacher", 1, torch.float32, 1), ("gaussian", 2, torch.bfloat16, 2)])
def test_pieces_shared_by_the_moves_change_nothing(monkeypatch, kind, q, dtype, threads):
    """A step's moves reuse the piece each worker still holds (PieceCache): the weights, the
    log and a replay are bit for bit those of regenerating every piece, and fewer pieces are
    generated. Small pieces, so that the small net has several per tensor."""
    from hybridconv.finetune import directions, optimizer

    monkeypatch.setattr(directions, "CHUNK", 16)
    monkeypatch.setattr(optimizer, "CHUNK", 16)
    calls = []
    piece = TorchDirections.piece

    def counted(self, *args):
        calls.append(1)
        return piece(self, *args)

    monkeypatch.setattr(TorchDirections, "piece", counted)
    runs = []
    for cached in (False, True):
        net = Net(dtype=dtype)
        initial = copy.deepcopy(net)
        opt = _opt(net, q=q, directions=kind, threads=threads)
        if not cached:
            opt._pieces = None
        calls.clear()
        _train(net, opt, 3)
        runs.append((net, opt, len(calls), initial))
    (plain, o0, n0, _), (shared, o1, n1, initial) = runs
    for a, b in zip(plain.parameters(), shared.parameters(), strict=True):
        assert torch.equal(a, b)
    assert o0.log.to_dict() == o1.log.to_dict()
    assert o1._pieces.reused > 0 and n1 < n0
    for a, b in zip(replay(initial, o1.log), _zo(shared), strict=True):
        assert torch.equal(a, b)


def test_a_source_that_returns_its_own_pieces_is_copied(monkeypatch):
    """A parallel DirectionSource whose ``piece`` returns a new tensor instead of filling
    ``out`` gives the same weights as one that fills it (the shared pieces hold its values)."""
    from hybridconv.finetune import directions, optimizer

    monkeypatch.setattr(directions, "CHUNK", 16)
    monkeypatch.setattr(optimizer, "CHUNK", 16)

    class Fresh(TorchDirections):
        def piece(self, seed, k, i, c, out):
            return super().piece(seed, k, i, c, torch.empty_like(out))

    nets = []
    for source in (TorchDirections(), Fresh()):
        net = Net()
        _train(net, _opt(net, directions=source, threads=2), 2)
        nets.append(net)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_forward_difference_with_shared_gradient_moves_the_block():
    """Review finding: with q = 1 and the fused restore, forward + shared once took f0 at the
    perturbed point (pg = 0). The clean pass now comes first and gives the FO gradient."""
    net = Net()
    x0 = net.base.weight.detach().clone()
    opt = _opt(net, difference="forward", fo_gradient="shared", q=1)
    _train(net, opt, 2)
    assert all(e["projected_grads"][0] != 0 for e in opt.log.entries)
    assert not torch.equal(net.base.weight, x0)


def test_replay_stays_exact_across_failed_steps():
    net = Net()
    initial = copy.deepcopy(net)
    opt = _opt(net, q=2)
    _train(net, opt, 2)
    calls = []

    def nan_on_third_pass():
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(net(_data()[0]), _data()[1])
        return loss * float("nan") if len(calls) == 3 else loss

    with pytest.raises(FloatingPointError):
        opt.step(nan_on_third_pass)
    _train(net, opt, 2)
    assert sum(e.get("failed", False) for e in opt.log.entries) == 1
    for a, b in zip(replay(initial, opt.log), _zo(net), strict=True):
        assert torch.equal(a, b)


def test_concurrent_optimizers_do_not_share_scratch():
    import threading

    def run(out, idx):
        net = Net(seed=idx)
        _train(net, _opt(net, q=2, threads=1), 3)
        out[idx] = [p.detach().clone() for p in net.parameters()]

    serial, parallel = {}, {}
    for i in range(2):
        run(serial, i)
    ts = [threading.Thread(target=run, args=(parallel, i)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i in range(2):
        assert all(torch.equal(a, b) for a, b in zip(serial[i], parallel[i], strict=True))


def test_loaded_state_is_a_copy_and_must_match_the_settings():
    net = Net()
    opt = _opt(net)
    _train(net, opt, 2)
    sd = opt.state_dict()
    other = _opt(Net())
    other.load_state_dict(sd)
    _train(Net(), other, 1)
    assert len(sd["hybrid"]["log"]["entries"]) == 2
    with pytest.raises(ValueError, match="mu"):
        _opt(Net(), mu=0.5).load_state_dict(sd)


def test_empty_zo_tensors_and_sphere_under_float64_default():
    net = Net()
    empty = torch.nn.Parameter(torch.zeros(0))
    opt = HybridZOFO([{"kind": "zo", "params": [empty]},
                      {"kind": "fo", "params": list(net.head.parameters())}])
    opt.step(_closure(net, *_data()))
    params = [torch.zeros(300), torch.zeros(200)]
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        u = torch.cat(list(TorchDirections("sphere").generate(1, 0, params)))
    finally:
        torch.set_default_dtype(old)
    assert math.isclose(float(u.double().norm() ** 2), 500, rel_tol=1e-5)


class _Coupled(torch.nn.Module):
    """f(x, y) = 0.5 ||x||^2 + x . A y + 0.5 ||y||^2 + 0.1 sum x^3, in float64."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.x = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
        self.y = torch.nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))
        self.register_buffer("A", torch.randn(5, 3, generator=g, dtype=torch.float64))

    def f(self, x, y):
        return 0.5 * x @ x + x @ self.A @ y + 0.5 * y @ y + 0.1 * (x ** 3).sum()

    def forward(self):
        return self.f(self.x, self.y)


@pytest.mark.parametrize("difference", ["central", "forward"])
def test_gauss_seidel_takes_the_zo_estimate_at_the_updated_y(difference):
    """Gauss-Seidel (LMAO's order): y moves first by its exact gradient at (x0, y0); the
    projected gradient of x is the finite difference at (x0, y1), not at (x0, y0)."""
    m = _Coupled()
    x0, y0 = m.x.detach().clone(), m.y.detach().clone()
    eta_x, eta_y, mu = 1e-2, 1e-1, 1e-3
    groups = [{"kind": "zo", "params": [m.x]}, {"kind": "fo", "params": [m.y]}]
    opt = HybridZOFO(groups, lr_x=eta_x, lr_y=eta_y, mu=mu, difference=difference,
                     schedule="gauss-seidel", seed=5)
    loss = opt.step(lambda: m())
    y1 = y0 - eta_y * (y0 + m.A.T @ x0)
    torch.testing.assert_close(m.y.detach(), y1, rtol=0, atol=1e-14)
    assert float(loss) == pytest.approx(float(m.f(x0, y0)), rel=1e-6)  # the clean loss
    pg = opt.log.entries[-1]["projected_grads"][0]
    u = (x0 - m.x.detach()) / (eta_x * pg)
    if difference == "central":
        at = lambda y: float((m.f(x0 + mu * u, y) - m.f(x0 - mu * u, y)) / (2 * mu))  # noqa: E731
    else:
        at = lambda y: float((m.f(x0 + mu * u, y) - m.f(x0, y)) / mu)  # noqa: E731
    assert pg == pytest.approx(at(y1), rel=1e-6)
    assert abs(pg - at(y0)) > 1e-3 * abs(pg)
    assert opt.forward_passes == 3  # central: 1 + 2q; forward: 2 + q


@pytest.mark.parametrize("difference", ["central", "forward"])
def test_gauss_seidel_back_propagates_once(difference):
    """Only the clean FO pass runs with gradients: the ZO passes after the FO update are
    no-grad (a central step once back-propagated its first perturbed pass too)."""
    m = _Coupled()
    groups = [{"kind": "zo", "params": [m.x]}, {"kind": "fo", "params": [m.y]}]
    opt = HybridZOFO(groups, lr_x=1e-2, lr_y=1e-1, mu=1e-3, difference=difference,
                     schedule="gauss-seidel", seed=5)
    grad = []

    def closure():
        grad.append(torch.is_grad_enabled())
        return m()

    opt.step(closure)
    assert grad == [True, False, False]  # central: clean, +mu, -mu; forward: clean, f(x, y1), +mu


def test_jacobi_takes_both_oracles_at_the_same_point():
    m = _Coupled()
    x0, y0 = m.x.detach().clone(), m.y.detach().clone()
    groups = [{"kind": "zo", "params": [m.x]}, {"kind": "fo", "params": [m.y]}]
    opt = HybridZOFO(groups, lr_x=1e-2, lr_y=1e-1, mu=1e-3, seed=5)
    opt.step(lambda: m())
    pg = opt.log.entries[-1]["projected_grads"][0]
    u = (x0 - m.x.detach()) / (1e-2 * pg)
    at = float((m.f(x0 + 1e-3 * u, y0) - m.f(x0 - 1e-3 * u, y0)) / 2e-3)
    assert pg == pytest.approx(at, rel=1e-6)
    torch.testing.assert_close(m.y.detach(), y0 - 1e-1 * (y0 + m.A.T @ x0), rtol=0, atol=1e-14)


def test_gauss_seidel_failure_restores_the_fo_block():
    m = _Coupled()
    y0 = m.y.detach().clone()
    groups = [{"kind": "zo", "params": [m.x]}, {"kind": "fo", "params": [m.y]}]
    opt = HybridZOFO(groups, lr_x=1e-2, lr_y=1e-1, mu=1e-3, schedule="gauss-seidel",
                     fo_optimizer="adam")
    calls = []

    def closure():
        calls.append(1)
        out = m()
        return out if len(calls) == 1 else out * float("nan")

    with pytest.raises(FloatingPointError):
        opt.step(closure)
    torch.testing.assert_close(m.y.detach(), y0, rtol=0, atol=0)
    assert not opt.state.get(m.y)


def test_gauss_seidel_refuses_the_shared_gradient():
    m = _Coupled()
    groups = [{"kind": "zo", "params": [m.x]}, {"kind": "fo", "params": [m.y]}]
    with pytest.raises(ValueError, match="gauss-seidel"):
        HybridZOFO(groups, schedule="gauss-seidel", fo_gradient="shared")
    with pytest.raises(ValueError, match="schedule must be one of jacobi, gauss-seidel"):
        HybridZOFO(groups, schedule="seidel")


@pytest.mark.parametrize("fo_optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_the_fo_block_steps_as_torch_optim_does(fo_optimizer, weight_decay):
    """Step by step in float64, the FO half of HybridZOFO equals torch.optim.SGD / Adam /
    AdamW on the same batches (bias corrections, betas, eps and both decays included)."""
    net = Net(torch.float64, seed=3).eval()
    ref = copy.deepcopy(net)
    lr, betas, eps = 5e-2, (0.8, 0.95), 1e-6
    opt = HybridZOFO([{"params": list(net.parameters()), "kind": "fo",
                       "weight_decay": weight_decay}], lr_y=lr, fo_optimizer=fo_optimizer,
                     betas=betas, eps=eps, module=net)
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    extra = {} if fo_optimizer == "sgd" else {"betas": betas, "eps": eps}
    ref_opt = cls[fo_optimizer](ref.parameters(), lr=lr, weight_decay=weight_decay, **extra)
    X, Y = _data(7)
    X = X.double()
    for i in range(6):
        b = slice(4 * (i % 4), 4 * (i % 4) + 4)
        opt.step(lambda b=b: torch.nn.functional.cross_entropy(net(X[b]), Y[b]))
        ref_opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(X[b]), Y[b]).backward()
        ref_opt.step()
        for p, r in zip(net.parameters(), ref.parameters(), strict=True):
            assert torch.equal(p, r), (fo_optimizer, weight_decay, i)
    if fo_optimizer != "sgd":
        ours = opt.state_dict()["state"]
        theirs = ref_opt.state_dict()["state"]
        for k in theirs:
            for key in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(ours[k][key], theirs[k][key])


def test_the_fo_half_is_not_the_reference_with_other_settings():
    """The comparison above can fail: another beta gives other weights after one step."""
    net = Net(torch.float64, seed=3).eval()
    ref = copy.deepcopy(net)
    opt = HybridZOFO([{"params": list(net.parameters()), "kind": "fo"}], lr_y=5e-2,
                     fo_optimizer="adam", betas=(0.8, 0.95), module=net)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=5e-2, betas=(0.8, 0.9))
    X, Y = _data(7)
    X = X.double()
    for _ in range(2):
        opt.step(lambda: torch.nn.functional.cross_entropy(net(X[:4]), Y[:4]))
        ref_opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(X[:4]), Y[:4]).backward()
        ref_opt.step()
    assert not torch.equal(net.head.weight, ref.head.weight)


@pytest.mark.parametrize("schedule", ["jacobi", "gauss-seidel"])
@pytest.mark.parametrize("q", [1, 3])
def test_two_identical_ranks_step_as_one_process(monkeypatch, schedule, q):
    """In-process data parallelism: a fake process group of 2 ranks that hold the same batch
    (all_reduce sums, as torch.distributed does): the averaged step is the one-process step,
    and a rank sends 8 (q + 1) bytes of scalars plus the FO gradients."""
    import torch.distributed as dist

    def run(distributed):
        net = Net(torch.float64, seed=4)
        opt = _opt(net, q=q, schedule=schedule, distributed=distributed)
        X, Y = _data(2)
        for i in range(3):
            b = slice(4 * i, 4 * i + 4)
            opt.step(lambda b=b: torch.nn.functional.cross_entropy(net(X[b].double()), Y[b]))
        return [p.detach().clone() for p in net.parameters()], opt

    alone, _ = run(False)
    calls = []

    def all_reduce(t, group=None):
        calls.append(t.numel())
        t.mul_(2)  # the sum over two ranks holding the same values

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "gloo")
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    together, opt = run(None)
    assert opt.distributed
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    head = sum(p.numel() for p in opt.param_groups[1]["params"])
    assert opt.comm_bytes == 3 * (8 * (q + 1) + 8 * head)
    assert calls == [q + 1, head] * 3 if schedule == "jacobi" else [head, q + 1] * 3


BAD_MESSAGES = [
    ({"lr_x": 0}, "lr_x must be a finite real number > 0, got 0"),
    ({"lr_y": -1}, "lr_y must be a finite real number > 0, got -1"),
    ({"mu": 0.0}, "mu must be a finite real number > 0, got 0.0"),
    ({"q": 0}, "q must be an integer >= 1, got 0"),
    ({"eps": 0.0}, "eps must be a finite real number > 0, got 0.0"),
    ({"weight_decay": -0.1}, "weight_decay must be a finite real number >= 0, got -0.1"),
    ({"seed": -1}, "seed must be an integer >= 0 and <= 9.22337e+18, got -1"),
    ({"difference": "backward"}, "difference must be one of central, forward, got 'backward'"),
    ({"fo_optimizer": "lion"}, "fo_optimizer must be one of sgd, adam, adamw, got 'lion'"),
    ({"fo_gradient": "dirty"}, "fo_gradient must be one of clean, shared, got 'dirty'"),
    ({"schedule": "gs"}, "schedule must be one of jacobi, gauss-seidel, got 'gs'"),
    ({"schedule": "gauss-seidel", "fo_gradient": "shared"},
     "fo_gradient='shared' needs schedule='jacobi': under gauss-seidel the ZO passes come "
     "after the FO update"),
    ({"betas": (0.9,)}, "betas must be two numbers in [0, 1), got (0.9,)"),
    ({"betas": (0.9, 1.0)}, "betas[1] must be a finite real number >= 0 and < 1, got 1.0"),
    ({"betas": (-0.1, 0.9)}, "betas[0] must be a finite real number >= 0 and < 1, got -0.1"),
    ({"directions": "cauchy"}, "directions must be one of gaussian, sphere, rademacher, got "
                               "'cauchy'"),
    ({"directions": 3}, "directions must be one of gaussian, sphere, rademacher or a "
                        "DirectionSource, got 3"),
    ({"threads": 0}, "threads must be an integer >= 1, got 0"),
    ({"distributed": True}, "distributed=True needs an initialized torch.distributed process "
                            "group of more than one rank (torchrun, init_process_group)"),
]


@pytest.mark.parametrize(("kw", "message"), BAD_MESSAGES)
def test_bad_arguments_have_exact_messages(kw, message):
    with pytest.raises(ValueError) as info:
        _opt(Net(), **kw)
    assert str(info.value) == message


def test_bad_groups_and_states_have_exact_messages():
    net = Net()

    def raises(fn, message):
        with pytest.raises(ValueError) as info:
            fn()
        assert str(info.value) == message

    raises(lambda: HybridZOFO([]), "params must be a non-empty list of parameter groups "
           "(dicts with 'params' and 'kind'); see hybrid_param_groups")
    raises(lambda: HybridZOFO([{"params": [net.head.bias], "kind": "zo"}, 3]),
           "params must be a non-empty list of parameter groups (dicts with 'params' and "
           "'kind'); see hybrid_param_groups")
    raises(lambda: HybridZOFO([{"params": [net.head.bias], "kind": "y"}]),
           "every parameter group needs kind 'zo' or 'fo', got 'y'")
    raises(lambda: HybridZOFO([{"params": [net.head.bias], "kind": "fo", "lr": 0}]),
           "lr of a 'fo' group must be a finite real number > 0, got 0")
    raises(lambda: HybridZOFO([{"params": [net.head.bias], "kind": "zo",
                                "weight_decay": 0.1}]),
           "weight_decay applies to 'fo' groups only")
    raises(lambda: HybridZOFO([{"params": [torch.zeros(4, 4).t()], "kind": "zo"}]),
           "ZO parameters must be contiguous tensors")
    opt = _opt(net)
    raises(lambda: opt.step(), "HybridZOFO.step needs a closure returning the batch loss")
    raises(lambda: opt.step(lambda: torch.zeros(2)),
           "the closure must return the loss as a scalar tensor")
    raises(lambda: opt.load_state_dict({"state": {}, "param_groups": []}),
           "state_dict has no 'hybrid' section: not a HybridZOFO state")
    other = _opt(Net(), mu=1e-2)
    raises(lambda: opt.load_state_dict(other.state_dict()),
           "state_dict has mu=0.01, this optimizer 0.001")
    for name, value in (("q", 2), ("difference", "forward")):
        raises(lambda name=name, value=value: opt.load_state_dict(
            _opt(Net(), **{name: value}).state_dict()),
            f"state_dict has {name}={value!r}, this optimizer {getattr(opt, name)!r}")
    sd = opt.state_dict()
    sd["hybrid"]["master"] = sd["hybrid"]["master"] + [None]
    raises(lambda: opt.load_state_dict(sd),
           "state_dict's ZO block does not match this optimizer's")


def test_replay_refuses_with_exact_messages():
    net = Net()
    opt = _opt(net)
    log = opt.log.to_dict()

    def raises(fn, message):
        with pytest.raises(ValueError) as info:
            fn()
        assert str(info.value) == message

    raises(lambda: replay(Net(), {**log, "names": None}),
           "the log has no parameter names: pass the ZO tensors instead")
    raises(lambda: replay(torch.nn.Linear(2, 2), log),
           "initial model lacks ZO parameters ['base.weight', 'base.bias']")
    raises(lambda: replay([torch.zeros(3)], log), "the log has 2 ZO tensors, got 1")


def test_default_threads_partition_and_scratch():
    from hybridconv.finetune.optimizer import _partition, _scratch, _units, default_threads

    cpu = [torch.zeros(3)]
    assert default_threads(cpu) == max(1, min(4, torch.get_num_threads()))
    assert default_threads([torch.zeros(3, device="meta")]) == 1
    units = [(0, 0, 0, 10), (1, 0, 0, 7), (1, 1, 7, 9), (2, 0, 0, 6), (3, 0, 0, 1)]
    for w in (1, 2, 3):
        bins = _partition(units, w)
        assert sorted(u for b in bins for u in b) == sorted(units)
        loads = [sum(b - a for _, _, a, b in bin_) for bin_ in bins]
        assert len(bins) == min(w, len(units)) and max(loads) - min(loads) <= 10
    assert [sum(b - a for _, _, a, b in x) for x in _partition(units, 2)] == [13, 13]
    assert _units([torch.zeros(5), torch.zeros(2, 3)]) == [(0, 0, 0, 5), (1, 0, 0, 6)]
    a = _scratch(8, torch.float32, torch.device("cpu"))
    b = _scratch(5, torch.float32, torch.device("cpu"))
    assert a.numel() == 8 and b.numel() == 5 and b.data_ptr() == a.data_ptr()
    c = _scratch(5, torch.float64, torch.device("cpu"))
    assert c.dtype == torch.float64 and c.data_ptr() != a.data_ptr()


# --- found by mutation testing (docs/testing.md, "Mutation testing: do the tests bite?") -----

def _by_hand(ref, X, Y, u, s):
    """The loss of ``ref`` (float64) with its ZO block moved by s u."""
    with torch.no_grad():
        for p, v in zip(_zo(ref), u, strict=True):
            p.add_(v, alpha=s)
        val = float(torch.nn.functional.cross_entropy(ref(X).double(), Y))
        for p, v in zip(_zo(ref), u, strict=True):
            p.add_(v, alpha=-s)
    return val


def test_zo_only_forward_difference_takes_the_clean_pass():
    """No FO block, forward difference: pg = (f(x + mu u) - f(x)) / mu, q + 1 passes, and the
    returned loss is the clean f(x)."""
    net = Net()
    net.eval()
    ref = copy.deepcopy(net)
    opt = HybridZOFO([{"params": _zo(net), "kind": "zo", "lr": 0.05}], module=net, mu=1e-3,
                     difference="forward", q=2)
    X, Y = _data()
    loss = float(opt.step(_closure(net, X, Y)))
    assert opt.forward_passes == 3
    assert math.isclose(loss, _by_hand(ref, X, Y, [torch.zeros_like(p) for p in _zo(ref)], 0),
                        rel_tol=1e-6)
    seed = opt.log.entries[0]["seed"]
    for k, logged in enumerate(opt.log.entries[0]["projected_grads"]):
        u = list(TorchDirections().generate(seed, k, _zo(ref)))
        pg = (_by_hand(ref, X, Y, u, 1e-3) - _by_hand(ref, X, Y, u, 0.0)) / 1e-3
        assert math.isclose(pg, logged, rel_tol=2e-2, abs_tol=1e-3)


def test_central_shared_gradient_is_taken_at_the_perturbed_point():
    """fo_gradient='shared' (central): the FO gradient is the backward pass of f(x + mu u_0, y),
    the first ZO pass, and the FO block steps along it."""
    net = Net()
    ref = copy.deepcopy(net)
    opt = _opt(net, mu=1e-2, lr_x=0.05, lr_y=0.2, fo_gradient="shared")
    X, Y = _data()
    opt.step(_closure(net, X, Y))
    u = list(TorchDirections().generate(opt.log.entries[0]["seed"], 0, _zo(ref)))
    ref.eval()
    with torch.no_grad():
        for p, v in zip(_zo(ref), u, strict=True):
            p.add_(v, alpha=1e-2)
    gy = torch.autograd.grad(torch.nn.functional.cross_entropy(ref(X), Y),
                             list(ref.head.parameters()))
    with torch.no_grad():
        for p, v in zip(_zo(ref), u, strict=True):
            p.add_(v, alpha=-1e-2)
    for p, p0, g in zip(net.head.parameters(), ref.head.parameters(), gy, strict=True):
        assert not torch.equal(p, p0)
        torch.testing.assert_close(p, p0 - 0.2 * g, rtol=1e-5, atol=1e-6)


def test_a_non_finite_projected_gradient_has_an_exact_message():
    """A clean pass that is finite, ZO passes that are not: the message names the projected
    gradient and the clean loss, and the weights are unchanged."""
    net = Net()
    opt = _opt(net)
    before = [p.clone() for p in net.parameters()]
    calls = []

    def closure():
        calls.append(1)
        loss = net.head.bias.sum() * 0 + 0.5
        return loss if len(calls) == 1 else loss * float("nan")

    with pytest.raises(FloatingPointError) as info:
        opt.step(closure)
    assert str(info.value) == ("non-finite ZO projected gradient nan (loss 0.5) at step 0; "
                               "nothing was updated")
    for a, b in zip(before, net.parameters(), strict=True):  # ZO: the round trip's residues
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_rate_beyond_the_dtype_has_an_exact_message():
    net = Net(torch.float16)
    with pytest.raises(ValueError) as info:
        _opt(net, lr_x=1e6)
    assert str(info.value) == "lr_x must be <= 6.55e+04 (the largest float16), got 1000000.0"


def test_the_radius_floor_is_a_sixteenth_of_an_ulp_of_the_rms():
    """mu >= eps * RMS / 16 (``_check_mu``): refused just below, accepted at it."""
    net = Net()
    zo = _zo(net)
    rms = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in zo)
                    / sum(p.numel() for p in zo))
    floor = torch.finfo(torch.float32).eps * max(rms, 1.0) / 16
    _opt(Net(), mu=floor * 1.001)
    with pytest.raises(ValueError, match="mu must be in"):
        _opt(Net(), mu=floor * 0.97)


def test_replay_keeps_per_tensor_rates():
    """ZO groups with different rates: the log keeps one rate per tensor, in group order, and
    replay uses them (not their sorted set)."""
    net = Net()
    initial = copy.deepcopy(net)
    opt = HybridZOFO([{"params": [net.base.weight], "kind": "zo", "lr": 1e-1},
                      {"params": [net.base.bias], "kind": "zo", "lr": 1e-3},
                      {"params": list(net.head.parameters()), "kind": "fo", "lr": 0.1}],
                     module=net)
    _train(net, opt, 3)
    assert opt.log.entries[0]["lr_x"] == [1e-1, 1e-3]
    for a, b in zip(replay(_zo(initial), opt.log.to_dict()), _zo(net), strict=True):
        assert torch.equal(a, b)


def test_gauss_seidel_failing_closure_restores_both_blocks():
    """Gauss-Seidel takes the FO step before the ZO passes: a closure that fails in a perturbed
    pass leaves the ZO block where it was and the FO block (weights and optimizer state) as
    before the step."""
    net = Net()
    opt = _opt(net, schedule="gauss-seidel", fo_optimizer="adam", lr_y=1e-2)
    X, Y = _data(0)
    opt.step(_closure(net, X, Y))  # one good step, so the FO block has Adam state
    before = [p.detach().clone() for p in net.parameters()]
    state = {p: copy.deepcopy(s) for p, s in opt.state.items()}
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 3:  # the clean pass and the FO step went through; a perturbed one fails
            raise RuntimeError("boom")
        return _closure(net, X, Y)()

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    for a, b in zip(before, net.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-6)
    for p, s in state.items():
        for key, value in s.items():
            if torch.is_tensor(value):
                assert torch.equal(value, opt.state[p][key]), key


def test_the_step_log_names_its_fields():
    """The step log that replay reads: one entry per step with its number, seed, projected
    gradients, loss and ZO rate."""
    net = Net()
    opt = _opt(net)
    _train(net, opt, 2)
    assert [set(e) for e in opt.log.entries] == [
        {"step", "seed", "projected_grads", "loss", "lr_x"}] * 2
    assert [e["step"] for e in opt.log.entries] == [0, 1]  # the step count before it


def test_the_shared_count_is_what_was_not_regenerated(monkeypatch):
    """``PieceCache.reused`` counts exactly the numbers a step did not regenerate: the numbers
    drawn without sharing minus those drawn with it."""
    from hybridconv.finetune import directions, optimizer

    monkeypatch.setattr(directions, "CHUNK", 16)
    monkeypatch.setattr(optimizer, "CHUNK", 16)
    drawn = []
    piece = TorchDirections.piece

    def counted(self, seed, k, i, c, out):
        drawn.append(out.numel())
        return piece(self, seed, k, i, c, out)

    monkeypatch.setattr(TorchDirections, "piece", counted)
    totals = []
    for cached in (False, True):
        net = Net()
        opt = _opt(net, threads=2)
        if not cached:
            opt._pieces = None
        drawn.clear()
        _train(net, opt, 3)
        totals.append(sum(drawn))
    assert opt._pieces.reused > 0 and totals[0] - totals[1] == opt._pieces.reused


def test_a_one_process_group_is_not_data_parallel(tmp_path):
    """In a one-process (gloo) group there is nothing to average: ``distributed`` defaults to
    off, and an explicit True is refused with what it needs."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)
    try:
        assert _opt(Net()).distributed is False
        assert _opt(Net(), distributed=False).distributed is False
        with pytest.raises(ValueError, match=r"^distributed=True needs an initialized "
                           r"torch\.distributed process group of more than one rank"):
            _opt(Net(), distributed=True)
    finally:
        dist.destroy_process_group()

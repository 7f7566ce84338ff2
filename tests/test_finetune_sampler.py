"""ReshufflingSampler: the simulator's orders, random access by epoch, mid-epoch resume."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridconv.finetune import ReshufflingSampler
from hybridconv.sim import Sampler
from hybridconv.sim.runner import SAMPLER_STREAM, block_rng


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["rr", "so", "ig", "wr"]), n=st.integers(1, 40),
       seed=st.integers(0, 2**31), epochs=st.integers(1, 5))
def test_orders_are_the_simulators_and_valid(kind, n, seed, epochs):
    ref = Sampler(kind, n=n, trials=1, rng=block_rng(seed, SAMPLER_STREAM, 0))
    s = ReshufflingSampler(n, sampling=kind, seed=seed)
    for t in range(epochs):
        order = list(s)
        assert order == ref.epoch(t)[0].tolist()
        assert len(order) == n and all(0 <= i < n for i in order)
        if kind != "wr":
            assert sorted(order) == list(range(n))


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["rr", "so", "wr"]), n=st.integers(2, 30),
       seed=st.integers(0, 1000), epoch=st.integers(0, 6), cut=st.integers(0, 30))
def test_resume_mid_epoch_continues_the_same_order(kind, n, seed, epoch, cut):
    cut = min(cut, n)
    full = ReshufflingSampler(n, sampling=kind, seed=seed)
    full.set_epoch(epoch)
    expected = list(full) + list(full)  # this epoch and the next
    s = ReshufflingSampler(n, sampling=kind, seed=seed)
    s.set_epoch(epoch)
    head = list(itertools.islice(iter(s), cut))
    state = s.state_dict()
    r = ReshufflingSampler(n, sampling=kind, seed=seed)
    r.load_state_dict(state)
    assert head + list(r) + list(r) == expected


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["rr", "wr"]), n=st.integers(1, 20), seed=st.integers(0, 1000),
       epochs=st.lists(st.integers(0, 12), min_size=1, max_size=8))
def test_random_access_in_any_order_equals_a_fresh_replay(kind, n, seed, epochs):
    # the sampler keeps its stream between calls; forwards, backwards or repeated, every
    # order must be the one a fresh sampler replays from the stream's start
    s = ReshufflingSampler(n, sampling=kind, seed=seed)
    for e in epochs:
        got = s.order(e)
        assert got.tolist() == ReshufflingSampler(n, sampling=kind, seed=seed).order(e).tolist()
        got[:] = -1  # a caller writing into an order must not corrupt the next one
    assert s.order(epochs[-1]).min() >= 0


def test_a_run_costs_one_draw_per_epoch(monkeypatch):
    s = ReshufflingSampler(7, seed=3)
    draws = []
    real = ReshufflingSampler._draw
    monkeypatch.setattr(ReshufflingSampler, "_draw",
                        lambda self, rng, base: draws.append(1) or real(self, rng, base))
    for _ in range(50):
        list(s)
    assert len(draws) == 50                      # not 1 + 2 + ... + 50
    s.set_epoch(10)
    list(s)
    assert len(draws) == 50 + 11                 # backwards: one replay from the start


def test_epoch_index_is_capped_with_a_short_message():
    s = ReshufflingSampler(5, seed=0)
    s.set_epoch(10**7)
    with pytest.raises(ValueError, match=r"^epoch must be an integer >= 0 and <= 1e\+07, got "
                                         r"an integer of 301 digits \(1000000000\.\.\.\)$"):
        s.set_epoch(10**300)
    with pytest.raises(ValueError, match="epoch"):
        s.order(10**7 + 1)


def test_rr_changes_every_epoch_and_so_does_not():
    rr, so = ReshufflingSampler(50, sampling="rr"), ReshufflingSampler(50, sampling="so")
    assert list(rr) != list(rr)
    assert list(so) == list(so)
    assert list(ReshufflingSampler(5, sampling="ig")) == [0, 1, 2, 3, 4]


def test_seeds_differ_and_dataloader_works():
    import torch

    a, b = list(ReshufflingSampler(30, seed=0)), list(ReshufflingSampler(30, seed=1))
    assert a != b
    data = torch.arange(10)
    loader = torch.utils.data.DataLoader(data, batch_size=4,
                                         sampler=ReshufflingSampler(data, seed=3))
    batches = [b.tolist() for b in loader]
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(sum(batches, [])) == list(range(10))


@pytest.mark.parametrize("kw,match", [
    (dict(data=0), "n must be"),
    (dict(data=object()), "^data must be a sized dataset or an integer n >= 1$"),
    (dict(data=5, sampling="random"), "sampling must be one of rr, so, ig, wr"),
    (dict(data=5, seed=-1), "seed"), (dict(data=True), "n must be"),
])
def test_bad_arguments(kw, match):
    kw = dict(kw)  # the table is shared by reruns of the test in one process
    data = kw.pop("data")
    with pytest.raises(ValueError, match=match):
        ReshufflingSampler(data, **kw)


def test_kind_is_a_deprecated_spelling_of_sampling():
    with pytest.warns(DeprecationWarning, match=r"^ReshufflingSampler\(kind=\.\.\.\) is "
                      r"deprecated; use sampling=\.\.\.$") as caught:
        old = ReshufflingSampler(7, kind="so", seed=2)
    # the warning points at the caller (under mutmut, at its trampoline: one frame between)
    caller = "trampoline.py" if "MUTANT_UNDER_TEST" in os.environ else Path(__file__).name
    assert Path(caught[0].filename).name == caller
    new = ReshufflingSampler(7, sampling="so", seed=2)
    assert old.sampling == old.kind == "so" and list(old) == list(new)
    state = {**new.state_dict(), "kind": "so"}  # a checkpoint written before the rename
    del state["sampling"]
    old.load_state_dict(state)


def test_state_of_another_sampler_is_refused():
    s = ReshufflingSampler(5, seed=1)
    with pytest.raises(ValueError, match="seed"):
        s.load_state_dict(ReshufflingSampler(5, seed=2).state_dict())
    with pytest.raises(ValueError, match="epoch"):
        s.set_epoch(-1)


def test_shard_splits_a_batch_among_ranks():
    from hybridconv.finetune.sampler import ReshufflingSampler

    batch = [7, 3, 9, 1, 4, 8]
    parts = [ReshufflingSampler.shard(batch, r, 3) for r in range(3)]
    assert parts == [[7, 3], [9, 1], [4, 8]] and sum(parts, []) == batch
    for bad in ((batch, 3, 3), (batch, -1, 2), (batch, 0, 0), (batch, True, 2),
                (batch, 1.0, 2)):
        with pytest.raises(ValueError, match="rank must be|world_size must be"):
            ReshufflingSampler.shard(*bad)

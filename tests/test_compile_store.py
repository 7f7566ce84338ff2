"""The compiled bound: one per process and options, its source kept on disk between processes."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from hybridconv.theory.bound import compile_numeric, hybrid_bound
from hybridconv.theory.symbols import sym

V = dict(L_x=1, L_y=2, L_xy=0.5, sigma_x=0.3, sigma_y=0.2, Theta_x=0.1, Theta_y=0.1, Delta=5,
         mu=1e-4, q=4, n=16, T=1000, d_x=100, eta_x=1e-5, eta_y=1e-3)


def test_hybrid_bound_is_derived_once_per_options():
    assert hybrid_bound() is hybrid_bound()
    assert hybrid_bound(directions="sphere") is not hybrid_bound()
    with pytest.raises(ValueError, match="directions"):
        hybrid_bound(directions=["gaussian"])  # unhashable: still the named error


def _expr():
    x, y, z = sym("eta_x"), sym("eta_y"), sym("L_x")
    e = (x + y) ** 3 * z + sp.Min(x * z, y, evaluate=False) + (x + y) ** 2 / (1 + z)
    return [x, y, z], e


def test_store_cold_and_warm_give_the_same_function(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDCONV_CACHE", str(tmp_path))
    args, e = _expr()
    pts = [np.array([1e-3, 0.5, 2.0]), np.array([0.2, 1e-4, 3.0]), np.array([7.0, 7.0, 0.1])]
    cold = compile_numeric(args, e)
    files = list((tmp_path / "lambdify").iterdir())
    assert len(files) == 1
    warm = compile_numeric(args, e)
    assert list((tmp_path / "lambdify").iterdir()) == files  # read, not written again
    direct = sp.lambdify(args, e, modules="numpy")
    for p in pts:
        assert cold(*p) == warm(*p)
        assert cold(*p) == pytest.approx(float(direct(*p)), rel=1e-12)
    # a vectorized call works from the stored source too
    np.testing.assert_allclose(warm(*np.stack(pts, axis=1)), [cold(*p) for p in pts])


def test_store_changed_expression_is_a_new_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDCONV_CACHE", str(tmp_path))
    args, e = _expr()
    compile_numeric(args, e)
    f = compile_numeric(args, e + 1)
    assert len(list((tmp_path / "lambdify").iterdir())) == 2
    assert f(1.0, 1.0, 1.0) == pytest.approx(compile_numeric(args, e)(1.0, 1.0, 1.0) + 1)


def test_store_corrupt_or_unwritable_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDCONV_CACHE", str(tmp_path))
    args, e = _expr()
    good = compile_numeric(args, e)(0.1, 0.2, 0.3)
    (path,) = (tmp_path / "lambdify").iterdir()
    path.write_text("{not json")
    assert compile_numeric(args, e)(0.1, 0.2, 0.3) == good  # regenerated
    assert path.read_text().startswith("{\"source\"")
    path.write_text('{"source": "raise RuntimeError", "imports": {}}')
    assert compile_numeric(args, e)(0.1, 0.2, 0.3) == good
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("HYBRIDCONV_CACHE", str(blocked))  # a file: no folder can be made
    assert compile_numeric(args, e)(0.1, 0.2, 0.3) == good


def test_bound_value_unchanged_by_the_store(tmp_path, monkeypatch):
    """The README's call: the small-T bound 2 max(Lambda) Delta = 2 * 2.5 * 5 decides it."""
    assert hybrid_bound().evaluate(**V) == 25.0
    assert hybrid_bound().evaluate(small_T=False, **V) > 25.0

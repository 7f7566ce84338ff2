"""Package-level facts: light imports, symbol table, version."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sympy as sp

import hybridconv
from hybridconv.theory import SYMBOLS, TABLE, sym
from hybridconv.theory.symbols import validate_value


def test_theory_import_is_light():
    code = ("import sys, hybridconv.theory, hybridconv.theory.theorems; "
            "print(sorted(m for m in ('torch', 'numpy', 'scipy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_symbol_table_names_the_issue_asks_for():
    names = ("L_x L_y L_xy L0_x L1_x L0_y L1_y L0_xy L1_xy sigma_x sigma_y Theta_x Theta_y "
             "Delta eta_x eta_y mu q n T d_x d_y eps").split()
    assert set(names) <= set(TABLE)
    for name in ("L_x", "L_y", "eta_x", "eta_y", "eps", "n", "q", "T"):
        assert sym(name).is_positive, name
    for name in ("L_xy", "sigma_x", "Theta_y", "d_x", "mu"):
        assert sym(name).is_nonnegative, name
    assert all(isinstance(s, sp.Symbol) for s in SYMBOLS.values())


def test_validate_value_accepts_domain_edges():
    assert validate_value("d_x", 0) == 0.0
    assert validate_value("q", 1) == 1.0
    assert validate_value("L_xy", 0.0) == 0.0
    with pytest.raises(ValueError, match="unknown symbol"):
        sym("nope")


def test_version():
    assert hybridconv.__version__.count(".") == 2

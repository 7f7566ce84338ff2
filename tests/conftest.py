"""Shared fixtures; tolerances and seeds live in one place (STYLE.md, practice 3)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("fast", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
"""``HYPOTHESIS_PROFILE=thorough python -m pytest`` runs every property test 10x longer."""

REL_TOL = 1e-9
"""Relative tolerance for exact identities evaluated in float64."""


@pytest.fixture(scope="session")
def bound():
    from hybridconv.theory import hybrid_bound

    return hybrid_bound()


@pytest.fixture(scope="session")
def theorem():
    from hybridconv.theory import hybrid_reshuffling_theorem

    return hybrid_reshuffling_theorem()


@pytest.fixture
def values():
    """A typical admissible point (hybrid fine-tuning: small ZO rate, larger FO rate)."""
    return dict(L_x=1.0, L_y=2.0, L_xy=0.5, sigma_x=0.3, sigma_y=0.2, Theta_x=0.1,
                Theta_y=0.1, Delta=5.0, eta_x=1e-5, eta_y=1e-3, mu=1e-4, q=4, n=16,
                T=1000, d_x=100)

import math

import numpy as np
import pytest

from calsurr.training.physics.phase_space import (
    minkowski_dot,
    pair_invariants,
    passes_cuts,
    rambo,
    rambo_weight,
    sample_cut_phase_space,
)

SQRT_S = 1000.0


@pytest.mark.parametrize("n_final", [2, 3, 4])
def test_rambo_events_are_physical(n_final):
    p = rambo(n_final, SQRT_S, 2000, np.random.default_rng(0))
    assert p.shape == (2000, n_final + 2, 4)
    np.testing.assert_allclose(p[:, :2].sum(1), p[:, 2:].sum(1), atol=1e-10 * SQRT_S)  # momentum conservation
    np.testing.assert_allclose(minkowski_dot(p, p), 0.0, atol=1e-6 * SQRT_S**2)  # massless
    assert (p[..., 0] > 0).all()
    np.testing.assert_allclose(p[:, 0], [[SQRT_S / 2, 0, 0, SQRT_S / 2]] * 2000)


def test_two_body_phase_space_is_isotropic():
    cos_theta = rambo(2, SQRT_S, 200_000, np.random.default_rng(1))[:, 2, 3] / (SQRT_S / 2)
    # uniform on [-1, 1]: mean 0, variance 1/3
    assert abs(cos_theta.mean()) < 0.01
    assert abs(cos_theta.var() - 1 / 3) < 0.005


def test_three_body_phase_space_is_flat_in_the_dalitz_plane():
    """Massless 3-body phase space is flat in the energy fractions x_i = 2E_i/sqrt(s), whose triangle
    (x1 + x2 >= 1, x_i <= 1) gives x1 the marginal density 2 x1, so <x1> = 2/3 and <x1^2> = 1/2."""
    x1 = 2 * rambo(3, SQRT_S, 400_000, np.random.default_rng(2))[:, 2, 0] / SQRT_S
    assert abs(x1.mean() - 2 / 3) < 0.002
    assert abs((x1**2).mean() - 1 / 2) < 0.002


def test_phase_space_volumes_match_closed_forms():
    assert rambo_weight(2, SQRT_S) == pytest.approx(1 / (8 * math.pi))
    assert rambo_weight(3, SQRT_S) == pytest.approx(SQRT_S**2 / (256 * math.pi**3))


def test_pair_invariants_are_lorentz_invariant():
    p = rambo(3, SQRT_S, 100, np.random.default_rng(3))
    rapidity = 0.7
    boost = np.eye(4)
    boost[0, 0] = boost[3, 3] = np.cosh(rapidity)
    boost[0, 3] = boost[3, 0] = np.sinh(rapidity)
    np.testing.assert_allclose(pair_invariants(p @ boost.T), pair_invariants(p), rtol=1e-10)


def test_cut_sampling_returns_exactly_the_events_asked_for_all_inside():
    p = sample_cut_phase_space(3, SQRT_S, 5000, 0.01, np.random.default_rng(4))
    assert p.shape == (5000, 5, 4)
    assert passes_cuts(p, 0.01).all()
    assert (pair_invariants(p).min(axis=1) > 0.01 * SQRT_S**2).all()
    assert not passes_cuts(rambo(3, SQRT_S, 5000, np.random.default_rng(5)), 0.01).all()

"""Phase-space samplers: the decay-chain map covers massless phase space with the right volume, VEGAS keeps
the integral and raises the unweighting efficiency."""

from __future__ import annotations

import numpy as np
import pytest

from calsurr.events.bookkeeping import RunningMean
from calsurr.events.phase_space import DecayChainMap, FlatSampler, VegasSampler
from calsurr.training.physics.phase_space import minkowski_dot, rambo_weight
from calsurr.training.physics.processes import get_process


@pytest.mark.parametrize("n_final", [2, 3, 4])
def test_decay_chain_has_the_volume_of_massless_phase_space(n_final):
    chain = DecayChainMap(n_final, 1000.0)
    assert chain.dimension == 3 * n_final - 4
    momenta, jacobian = chain.momenta(np.random.default_rng(n_final).random((100_000, chain.dimension)))
    error = jacobian.std() / np.sqrt(len(jacobian))
    assert abs(jacobian.mean() - rambo_weight(n_final, 1000.0)) < 4 * error + 1e-12 * jacobian.mean()
    incoming, outgoing = momenta[:, :2].sum(axis=1), momenta[:, 2:].sum(axis=1)
    np.testing.assert_allclose(outgoing, incoming, atol=1e-9)
    np.testing.assert_allclose(minkowski_dot(momenta, momenta), 0.0, atol=1e-7)
    assert np.all(momenta[..., 0] > 0)


def test_decay_chain_reproduces_flat_phase_space_averages():
    """<s_13 / s> weighted by the Jacobian equals RAMBO's (1/3 for three massless particles)."""
    chain = DecayChainMap(3, 1000.0)
    momenta, jacobian = chain.momenta(np.random.default_rng(5).random((200_000, chain.dimension)))
    s13 = 2 * minkowski_dot(momenta[:, 0], momenta[:, 2]) / 1e6
    mean = np.sum(jacobian * s13) / np.sum(jacobian)
    assert mean == pytest.approx(1 / 3, abs=0.005)


def test_vegas_keeps_the_integral_and_adapts_to_the_amplitude():
    process = get_process("gg_ggg")
    rng = np.random.default_rng(3)
    flat, vegas = FlatSampler(3, 1000.0, 0.01), VegasSampler(3, 1000.0, 0.01)
    vegas.adapt(process.squared_amplitude, iterations=4, points=10_000, rng=rng)
    estimates, spreads = [], []
    for sampler in (flat, vegas):
        batch = sampler.sample(100_000, rng)
        w = np.zeros(len(batch))
        w[batch.inside] = batch.jacobian[batch.inside] * process.squared_amplitude(batch.momenta[batch.inside])
        mean = RunningMean()
        mean.add(w, len(w))
        estimates.append(mean.estimate())
        inside = w[w > 0]
        spreads.append(inside.max() / inside.mean())
    assert abs(estimates[0].pull(estimates[1])) < 4
    assert estimates[1].error < 0.5 * estimates[0].error  # importance sampling: a smaller variance
    assert spreads[1] < spreads[0]  # max/mean of the weights: what the unweighting efficiency is 1 over

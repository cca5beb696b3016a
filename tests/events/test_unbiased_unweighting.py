"""Unbiasedness: whatever the surrogate, two-stage and gated unweighting reproduce the exact cross section and
distributions, because overweights are kept. Checked against an independent 1-D integral of the textbook
gg -> gg cross section, against standard unweighting, and with a surrogate that is wrong by a factor 1 to 3."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from calsurr.events.bookkeeping import GEV2_TO_PB, Estimate
from calsurr.events.observables import compare_samples
from calsurr.events.phase_space import FlatSampler, VegasSampler
from calsurr.events.unweighting import EventGenerator
from calsurr.training.physics.processes import get_process
from tests.events.doubles import DistortedSurrogate

SQRT_S, CUT = 1000.0, 0.01
PULL_BOUND = 4.0  # cross sections of independent samples agree within 4 standard errors
CHI2_PROBABILITY_BOUND = 1e-3  # loose: a shape disagreement this unlikely fails (the bench uses 0.01)


def textbook_gg_gg_cross_section(sqrt_s: float, cut: float) -> float:
    """sigma(gg -> gg) in pb with g_s = 1 and every s_ij > cut s, i.e. -(1 - cut) s < t < -cut s:
    (1/2) integral dt (9/2) (3 - tu/s^2 - su/t^2 - st/u^2) / (16 pi s^2), the 1/2 for identical gluons
    (Ellis, Stirling, Webber, QCD and collider physics, Table 7.1, averaged |M|^2 / g^4)."""
    s = sqrt_s**2

    def dsigma_dt(t):
        u = -s - t
        return 4.5 * (3.0 - t * u / s**2 - s * u / t**2 - s * t / u**2) / (16.0 * math.pi * s**2)

    value, _ = quad(dsigma_dt, -(1.0 - cut) * s, -cut * s, limit=200)
    return 0.5 * value * GEV2_TO_PB


def generate(process, method, n_events, seed, surrogate=None, sampler=None, optimisation_points=20_000, **options):
    proc = get_process(process)
    rng = np.random.default_rng(seed)
    sampler = sampler or FlatSampler(proc.n_final, SQRT_S, CUT)
    generator = EventGenerator(proc.squared_amplitude, sampler, method, surrogate, **options)
    return generator.generate(n_events, generator.optimise(optimisation_points, rng), rng)


@pytest.fixture(scope="module")
def vegas_ggg():
    """One VEGAS map for gg -> ggg shared by the samples below (each draws its own points): ten times the
    unweighting efficiency of flat phase space, so meaningful samples take seconds."""
    sampler = VegasSampler(3, SQRT_S, CUT)
    sampler.adapt(get_process("gg_ggg").squared_amplitude, iterations=4, points=10_000, rng=np.random.default_rng(20))
    return sampler


@pytest.mark.parametrize("method", ["standard", "two-stage", "gated"])
def test_gg_gg_cross_section_matches_the_textbook_integral(method):
    reference = textbook_gg_gg_cross_section(SQRT_S, CUT)
    assert reference == pytest.approx(3338.85, rel=1e-5)  # pb at g_s = 1; this test's own regression
    sample = generate("gg_gg", method, 4000, seed=11, surrogate=DistortedSurrogate("gg_gg"))
    for estimate in (sample.sigma_weighted, sample.sigma_events):
        assert abs(estimate.pull(Estimate(reference, 0.0))) < PULL_BOUND, (estimate, reference)


@pytest.fixture(scope="module")
def standard_ggg(vegas_ggg):
    return generate("gg_ggg", "standard", 3000, seed=21, sampler=vegas_ggg)


@pytest.mark.parametrize("method", ["two-stage", "gated"])
def test_a_surrogate_wrong_by_up_to_x3_still_gives_the_exact_distributions(standard_ggg, vegas_ggg, method):
    sample = generate("gg_ggg", method, 3000, seed=22, surrogate=DistortedSurrogate("gg_ggg"), sampler=vegas_ggg)
    assert abs(sample.sigma_weighted.pull(standard_ggg.sigma_weighted)) < PULL_BOUND
    assert abs(sample.sigma_events.pull(standard_ggg.sigma_weighted)) < PULL_BOUND
    for comparison in compare_samples((standard_ggg.momenta, standard_ggg.weights), (sample.momenta, sample.weights)):
        assert comparison.probability > CHI2_PROBABILITY_BOUND, comparison
    # the distortion costs efficiency in stage 2 (r = w/s spans a factor 3), not correctness
    assert sample.efficiencies["eps_2"] < 0.75


def test_dropping_the_overweights_would_be_caught(standard_ggg, vegas_ggg):
    """Maxima from a small optimisation sample put a large part of sigma into overweights: kept, the events
    reproduce sigma; clipped to W_max (what dropping overweights amounts to), they miss it by many sigma."""
    surrogate = DistortedSurrogate("gg_ggg")
    sample = generate("gg_ggg", "two-stage", 3000, 23, surrogate, vegas_ggg, optimisation_points=500, max_quantile=0.0)
    assert sample.overweight_fraction > 0.1
    assert abs(sample.sigma_events.pull(standard_ggg.sigma_weighted)) < PULL_BOUND
    clipped = np.minimum(sample.weights, sample.setup.event_weight).sum() / sample.n_trials
    assert (standard_ggg.sigma_weighted.value - clipped) / sample.sigma_events.error > 2 * PULL_BOUND


def test_gating_everything_is_standard_unweighting(standard_ggg, vegas_ggg):
    """A threshold of zero gates every point: no stage 1, the exact weight against W_max, still unbiased."""
    surrogate = DistortedSurrogate("gg_ggg")
    sample = generate("gg_ggg", "gated", 2000, 24, surrogate, vegas_ggg, gate_threshold=1e-9)
    assert sample.efficiencies["gated_fraction"] == 1.0
    assert sample.n_stage1 == 0
    assert abs(sample.sigma_weighted.pull(standard_ggg.sigma_weighted)) < PULL_BOUND

"""Cross-section bookkeeping and the cost model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calsurr.events.bookkeeping import GEV2_TO_PB, CostModel, RunningMean, kish_factor, weight_normalisation


def test_weight_normalisation_is_flux_and_symmetry_factor_in_pb():
    assert weight_normalisation(1000.0, 3) == pytest.approx(0.3893794e9 / (2 * 1e6 * 6))
    assert GEV2_TO_PB == 0.3893794e9


def test_running_mean_counts_the_zero_trials():
    mean = RunningMean()
    mean.add(np.array([2.0, 2.0]), 4)  # four trials, two of them zero
    estimate = mean.estimate()
    assert estimate.value == 1.0
    assert estimate.error == pytest.approx(math.sqrt((2.0 - 1.0) / 4))


def test_kish_factor():
    assert kish_factor(np.ones(10)) == pytest.approx(1.0)
    assert kish_factor(np.array([1.0, 1.0, 1.0, 3.0])) == pytest.approx(36 / (4 * 12))


def test_gain_of_the_cost_model():
    standard = CostModel(surrogate_calls=0, exact_calls=1, efficiency=0.01, kish=1.0)
    two_stage = CostModel(surrogate_calls=1, exact_calls=0.02, efficiency=0.01, kish=0.9)
    # f_eff(r) = a r / (1 + n_x r), a = eps alpha / (eps_std alpha_std) = 0.9
    r = 100.0
    assert two_stage.gain_over(standard, 0.0, 1.0, r) == pytest.approx(0.9 * r / (1 + 0.02 * r))
    assert two_stage.asymptotic_gain(standard) == pytest.approx(0.9 / 0.02)
    assert two_stage.gain_over(standard, 0.0, 1.0, two_stage.break_even_ratio(standard)) == pytest.approx(1.0)
    assert CostModel(1, 1, 0.01, 1.0).break_even_ratio(standard) == math.inf

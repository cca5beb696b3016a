"""Leading-colour flows: the partial amplitudes reproduce the full colour sum where leading colour is exact,
every flow is a valid Les Houches colour assignment, and flows are drawn in proportion to |A(sigma)|^2."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from calsurr.events.colour_flow import (
    choose_flows,
    colour_tags,
    leading_colour_squared,
    partial_amplitudes_squared,
    trace_orderings,
)
from calsurr.training.physics.gluon_amplitudes import colour_helicity_summed
from calsurr.training.physics.phase_space import sample_cut_phase_space


@pytest.mark.parametrize("n_final", [2, 3])
def test_leading_colour_is_the_full_colour_sum_for_four_and_five_gluons(n_final):
    momenta = sample_cut_phase_space(n_final, 1000.0, 200, 0.01, np.random.default_rng(n_final))
    np.testing.assert_allclose(leading_colour_squared(momenta), colour_helicity_summed(momenta), rtol=1e-9)


def test_six_gluons_leading_colour_is_close_to_full_colour():
    """With NMHV from Berends-Giele: only O(1/N^2) terms are missing at n = 6."""
    momenta = sample_cut_phase_space(4, 1000.0, 40, 0.01, np.random.default_rng(6))
    ratio = leading_colour_squared(momenta) / colour_helicity_summed(momenta)
    assert np.all((ratio > 0.8) & (ratio < 1.2)), ratio
    assert abs(ratio.mean() - 1.0) < 0.05


@pytest.mark.parametrize("n", [4, 5, 6])
def test_every_flow_is_a_valid_les_houches_colour_assignment(n):
    for ordering in trace_orderings(n):
        tags = colour_tags(ordering)
        for tag in np.unique(tags):
            roles = []
            for particle, (colour, anticolour) in enumerate(tags):
                side = "in" if particle < 2 else "out"
                roles += [(side, "c")] * int(colour == tag) + [(side, "a")] * int(anticolour == tag)
            # a line runs from an incoming colour to an outgoing colour (or anticolour to anticolour), or joins
            # a colour and an anticolour on the same side
            assert sorted(roles) in (
                [("in", "c"), ("out", "c")],
                [("in", "a"), ("out", "a")],
                [("out", "a"), ("out", "c")],
                [("in", "a"), ("in", "c")],
            ), (ordering, tags)
        assert np.all(tags[:, 0] != tags[:, 1])  # no gluon is a colour singlet


def test_flows_are_drawn_in_proportion_to_the_partial_amplitudes():
    event = sample_cut_phase_space(3, 1000.0, 1, 0.01, np.random.default_rng(1))
    many = np.repeat(event, 20_000, axis=0)
    counts = Counter(choose_flows(many, np.random.default_rng(2)).tolist())
    expected = partial_amplitudes_squared(event)[0]
    expected = expected / expected.sum() * len(many)
    observed = np.array([counts.get(k, 0) for k in range(len(expected))])
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert chi2 < len(expected) + 6 * np.sqrt(2 * len(expected))

"""LHE files read back through pylhe: the init block, the weights, momentum conservation and mass shells."""

from __future__ import annotations

import numpy as np
import pylhe
import pytest

from calsurr.events.colour_flow import choose_flows
from calsurr.events.lhe import write_lhe
from calsurr.events.phase_space import FlatSampler
from calsurr.events.unweighting import EventGenerator
from calsurr.training.physics.phase_space import sample_cut_phase_space
from calsurr.training.physics.processes import get_process

N_EVENTS = 25


def read_back(path):
    lhe = pylhe.LHEFile.fromfile(str(path))
    return lhe.init, list(lhe.events)


def check_events(events, n_particles):
    """Every event conserves four-momentum and has massless gluons on shell, to float64 precision."""
    for event in events:
        particles = event.particles
        assert len(particles) == n_particles
        p = np.array([[q.e, q.px, q.py, q.pz] for q in particles])
        status = np.array([q.status for q in particles])
        assert list(status) == [-1, -1] + [1] * (n_particles - 2)
        np.testing.assert_allclose(p[status == 1].sum(axis=0), p[status == -1].sum(axis=0), atol=1e-8)
        mass_sq = p[:, 0] ** 2 - np.sum(p[:, 1:] ** 2, axis=1)
        assert np.all(np.abs(mass_sq) < 1e-9 * p[:, 0] ** 2)
        assert all(q.id == 21 for q in particles)


def test_events_read_back_through_pylhe(tmp_path):
    proc = get_process("gg_ggg")
    rng = np.random.default_rng(4)
    generator = EventGenerator(proc.squared_amplitude, FlatSampler(proc.n_final, 1000.0, 0.01), "standard")
    sample = generator.generate(N_EVENTS, generator.optimise(5_000, rng), rng)
    path = tmp_path / "events.lhe"
    write_lhe(
        path,
        sample.momenta,
        sample.lhe_weights,
        sample.overweights,
        choose_flows(sample.momenta, rng),
        sample.sigma_weighted.value,
        sample.sigma_weighted.error,
        {"process": "gg_ggg", "coupling": "g_s = 1", "cuts": "every s_ij > 0.01 s"},
    )
    init, events = read_back(path)
    assert init.initInfo.beamA == init.initInfo.beamB == 2212
    assert init.initInfo.weightingStrategy == 4
    assert init.procInfo[0].xSection == pytest.approx(sample.sigma_weighted.value, rel=1e-9)
    assert len(events) == N_EVENTS
    check_events(events, proc.n_particles)
    weights = np.array([e.eventinfo.weight for e in events])
    assert weights.mean() == pytest.approx(sample.sigma_events.value, rel=1e-8)
    assert all(e.weights["overweight"] >= 1.0 for e in events)
    assert "g_s = 1" in path.read_text() and "every s_ij > 0.01 s" in path.read_text()


def test_six_gluon_events_with_their_colour_flows_read_back(tmp_path):
    """gg -> gggg points straight from phase space (no unweighting needed to check the file)."""
    rng = np.random.default_rng(5)
    momenta = sample_cut_phase_space(4, 1000.0, N_EVENTS, 0.01, rng)
    flows = choose_flows(momenta, rng)
    path = tmp_path / "six.lhe"
    ones = np.ones(N_EVENTS)
    write_lhe(path, momenta, ones, ones, flows, 1.0, 0.1, {"process": "gg_gggg"})
    _, events = read_back(path)
    check_events(events, 6)
    assert len({tuple(q.color1 for q in e.particles) for e in events}) > 1  # flows differ from event to event

"""`calsurr events` end to end: through a running server into an LHE file that pylhe reads back and Pythia 8
showers and hadronises; closure of two-stage and gated against standard with a real (tiny) exported model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from calsurr.cli import app
from calsurr.events.observables import compare_samples
from calsurr.events.phase_space import FlatSampler
from calsurr.events.surrogates import LocalSurrogate
from calsurr.events.unweighting import EventGenerator
from calsurr.service.config import ServerSettings
from calsurr.service.server import BackgroundServer
from calsurr.training.physics.processes import get_process
from tests.conftest import TINY_MODEL
from tests.events.test_lhe_file import check_events, read_back

pytestmark = pytest.mark.slow

PYTHIA_EVENTS = 300
PYTHIA_SCRIPT = Path(__file__).with_name("pythia_shower.py")


@pytest.fixture(scope="module")
def server(tiny_repository):
    settings = ServerSettings(repo=tiny_repository, host="127.0.0.1", port=0, metrics_port=0)
    with BackgroundServer(settings) as running:
        yield running


@pytest.fixture(scope="module")
def served_events(server, tmp_path_factory):
    """300 two-stage gg -> gg events through the server, with the summary JSON."""
    out = tmp_path_factory.mktemp("events")
    args = ["events", "gg_gg", "--events", PYTHIA_EVENTS, "--out", out / "events.lhe", "--server", server.address]
    args += ["--model-name", TINY_MODEL, "--method", "two-stage", "--seed", 3, "--summary", out / "summary.json"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return out / "events.lhe", json.loads((out / "summary.json").read_text()), result.output


def test_events_through_a_server_read_back_through_pylhe(served_events):
    path, summary, output = served_events
    init, events = read_back(path)
    assert len(events) == PYTHIA_EVENTS
    check_events(events, 4)
    run = summary["run"]
    assert run["method"] == "two-stage" and run["events"] == PYTHIA_EVENTS
    assert init.procInfo[0].xSection == pytest.approx(run["sigma_pb"], rel=1e-8)
    assert run["t_surr_us"] > 0 and run["eps_1"] > 0 and run["eps_2"] > 0
    assert "Kish factor" in output and "sigma [pb] (weighted sample)" in output
    header = path.read_text()[:4000]
    assert "g_s = 1" in header and "fixed sqrt(s) = 1000 GeV" in header and "server 127.0.0.1" in header


def test_pythia_showers_and_hadronises_the_events(served_events):
    path, summary, _ = served_events
    result = subprocess.run(
        [sys.executable, str(PYTHIA_SCRIPT), str(path), str(PYTHIA_EVENTS)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("PYTHIA-SUMMARY "))
    shower = json.loads(line.removeprefix("PYTHIA-SUMMARY "))
    assert shower["events"] == PYTHIA_EVENTS and shower["failed"] == 0
    assert shower["hadrons_per_event"] > 20
    # strategy 4: Pythia's cross section is the average of XWGTUP, the events' own estimate of sigma
    assert shower["sigma_pb"] == pytest.approx(summary["run"]["sigma_events_pb"], rel=1e-6)
    # Pythia's error statistics: nothing, or at most the end of the file; no error, no warning
    messages = result.stdout.split("Error and Warning Messages Statistics")[1].split("End PYTHIA Error")[0]
    counted = [x for x in messages.splitlines() if x.strip(" |*-").split(" ")[0].isdigit()]
    allowed = ("no errors or warnings to report", "reached end of Les Houches Events File")
    assert counted and all(any(a in x for a in allowed) for x in counted), counted
    assert "Error in" not in result.stdout.split("Error and Warning Messages Statistics")[0]


@pytest.fixture(scope="module")
def tiny_surrogate(tiny_repository):
    return LocalSurrogate(tiny_repository / TINY_MODEL / "1")


def _sample(method, seed, surrogate, n_events=4000):
    proc = get_process("gg_gg")
    rng = np.random.default_rng(seed)
    generator = EventGenerator(proc.squared_amplitude, FlatSampler(2, 1000.0, 0.01), method, surrogate)
    return generator.generate(n_events, generator.optimise(20_000, rng), rng)


@pytest.mark.parametrize("method", ["two-stage", "gated"])
def test_closure_with_an_exported_model(tiny_surrogate, method):
    """A 5-epoch, 3-member model: a poor surrogate, an exact sample all the same (loose bounds; the bench is tight)."""
    standard, other = _sample("standard", 31, None), _sample(method, 32, tiny_surrogate)
    assert abs(other.sigma_weighted.pull(standard.sigma_weighted)) < 4
    comparisons = compare_samples((standard.momenta, standard.weights), (other.momenta, other.weights))
    assert all(c.probability > 1e-3 for c in comparisons), comparisons
    assert other.n_exact < other.n_inside  # stage 1 spared exact calls

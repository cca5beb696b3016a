"""`calsurr demo` (gg -> ggg) end to end on a small budget: the table and the summary appear; a rerun in the same
workdir publishes the next version (versions are immutable) and queries it."""

import pytest
from typer.testing import CliRunner

from calsurr.cli import app

pytestmark = pytest.mark.slow


def _demo(workdir, events, epochs, members):
    args = ["demo", "--events", events, "--epochs", epochs, "--members", members, "--rows", 4, "--workdir", workdir]
    return CliRunner().invoke(app, [str(a) for a in args])


def test_demo_prints_predictions_with_both_uncertainties_and_a_rerun_publishes_version_2(tmp_path):
    result = _demo(tmp_path, 3000, 15, 3)
    assert result.exit_code == 0, result.output
    for header in ("true |M|^2", "mean", "sigma_stat", "sigma_syst", "pull"):
        assert header in result.output
    assert "held-out points through the server" in result.output
    model = tmp_path / "repository" / "gg_ggg"
    assert (model / "1" / "model.onnx").is_file()
    first_card = (model / "1" / "card.json").read_bytes()

    rerun = _demo(tmp_path, 1000, 3, 2)
    assert rerun.exit_code == 0, rerun.output
    assert f"{model} has versions [1]; this run publishes version 2" in " ".join(rerun.output.split())
    assert "query version 2" in rerun.output and "held-out points through the server" in rerun.output
    assert (model / "2" / "model.onnx").is_file()
    assert (model / "1" / "card.json").read_bytes() == first_card  # version 1 untouched

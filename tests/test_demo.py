"""`calsurr demo` end to end on a small budget: the table and the summary appear."""

import pytest
from typer.testing import CliRunner

from calsurr.cli import app

pytestmark = pytest.mark.slow


def test_demo_prints_predictions_with_both_uncertainties(tmp_path):
    result = CliRunner().invoke(
        app, ["demo", "--events", "3000", "--epochs", "15", "--members", "3", "--rows", "4", "--workdir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    for header in ("true |M|^2", "mean", "sigma_stat", "sigma_syst", "pull"):
        assert header in result.output
    assert "held-out points through the server" in result.output
    assert (tmp_path / "repository" / "gg_gg" / "1" / "model.onnx").is_file()

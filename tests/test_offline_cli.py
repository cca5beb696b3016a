"""The offline commands chained as a physicist would: generate, train, export, report, predict."""

import json

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from calsurr.cli import app
from calsurr.service.config import ServerSettings
from calsurr.service.server import BackgroundServer
from calsurr.training.data import read_dataset

pytestmark = pytest.mark.slow


def _ok(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    work = tmp_path_factory.mktemp("offline")
    (work / "small.yaml").write_text("members: 3\nhidden: 16\nlayers: 2\nfit:\n  epochs: 3\n")
    _ok("generate", "gg_ggg", "--events", 3000, "--out", work / "train.h5", "--seed", 1)
    _ok("train", "--config", work / "small.yaml", "--data", work / "train.h5", "--out", work / "run")
    _ok("export", work / "run", "--repo", work / "repo", "--name", "ggg", "--version", 2)
    _ok("generate", "gg_ggg", "--events", 500, "--out", work / "heldout.parquet", "--seed", 2)
    return work


def test_export_writes_a_card_for_the_process_of_the_data_file(exported):
    card = json.loads((exported / "repo" / "ggg" / "2" / "card.json").read_text())
    assert card["process"] == "gg_ggg" and card["inputs"][0]["shape"] == [-1, 5, 4]
    assert card["uncertainty"]["members"] == 3


def test_report_writes_summary_and_plots(exported):
    _ok("report", exported / "repo" / "ggg" / "2", "--data", exported / "heldout.parquet", "--out", exported / "rep")
    summary = json.loads((exported / "rep" / "summary.json").read_text())
    assert summary["calibration"]["n_points"] == 500
    for plot in ("pulls.png", "coverage.png", "relative_deviation.png", "sigma_vs_delta.png", "phase_space.png"):
        assert (exported / "rep" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_in_process_and_through_a_server_agree(exported):
    model = exported / "repo" / "ggg" / "2"
    _ok("predict", "--model", model, "--data", exported / "heldout.parquet", "--out", exported / "local.parquet")
    settings = ServerSettings(repo=exported / "repo", host="127.0.0.1", port=0, metrics_port=0)
    with BackgroundServer(settings) as server:
        _ok(
            "predict",
            "--server",
            server.address,
            "--model-name",
            "ggg",
            "--chunk-rows",
            128,
            "--data",
            exported / "heldout.parquet",
            "--out",
            exported / "remote.h5",
        )
    local = pq.read_table(exported / "local.parquet")
    assert local.num_rows == 500
    assert {"p1_E", "p5_pz", "target", "mean", "sigma_stat", "sigma_syst", "sigma_tot"} <= set(local.column_names)
    with h5py.File(exported / "remote.h5") as remote:
        for name in ("mean", "sigma_stat", "sigma_syst", "sigma_tot"):
            np.testing.assert_array_equal(remote[name][:], local.column(name).to_numpy())
    np.testing.assert_array_equal(read_dataset(exported / "remote.h5").target, local.column("target").to_numpy())

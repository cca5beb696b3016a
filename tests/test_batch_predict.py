"""`calsurr predict` on Dask (calsurr/batch.py): two files, one cut in partitions, on a LocalCluster of two
worker processes, in-process and through a server; every row against the single-process run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from calsurr import batch, offline
from calsurr.service.card import UNCERTAINTY_OUTPUTS
from tests.conftest import TINY_MODEL

CALSURR = Path(sys.executable).with_name("calsurr")
EVENTS = (3000, 2000)  # an HDF5 file cut in row ranges, a Parquet file of several row groups
PARTITION_ROWS = 800
ROW_GROUP_ROWS = 700
# Partitions change onnxruntime's batch boundaries, which moves results by a few units in the last place.
RTOL = 1e-12


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    from calsurr.training.data import generate_dataset, write_dataset

    folder = tmp_path_factory.mktemp("batch-inputs")
    h5 = write_dataset(folder / "events.h5", generate_dataset("gg_gg", EVENTS[0], seed=11))
    single = write_dataset(folder / "one-group.parquet", generate_dataset("gg_gg", EVENTS[1], seed=12))
    table = pq.read_table(single)
    parquet = folder / "events.parquet"
    pq.write_table(table, parquet, row_group_size=ROW_GROUP_ROWS)  # keeps the schema's calsurr metadata
    single.unlink()
    return [h5, parquet]


@pytest.fixture(scope="module")
def cluster():
    import distributed  # the ops extra, which scripts/setup.sh installs

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as local:
        yield local


def single_process(model_dir: Path, data: Path, out: Path) -> dict[str, np.ndarray]:
    from calsurr.predict import predict_file

    return predict_file(model_dir, data, out, progress=False)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CALSURR), "predict", *args], capture_output=True, text=True, timeout=300)


def check_against_single_process(out: Path, inputs: list[Path], model_dir: Path, tmp_path: Path) -> None:
    from calsurr.training.data import momentum_columns, read_dataset

    table = batch.read_output(out)
    assert table.num_rows == sum(EVENTS)
    offset = 0
    for data in inputs:
        expected = single_process(model_dir, data, tmp_path / f"{data.stem}-single.parquet")
        dataset = read_dataset(data)
        rows = slice(offset, offset + len(dataset))
        for i, column in enumerate(momentum_columns(dataset.n_particles)):
            flat = dataset.momenta.reshape(len(dataset), -1)[:, i]
            np.testing.assert_array_equal(table.column(column).to_numpy()[rows], flat)
        np.testing.assert_array_equal(table.column("target").to_numpy()[rows], dataset.target)
        for name in UNCERTAINTY_OUTPUTS:
            np.testing.assert_allclose(table.column(name).to_numpy()[rows], expected[name], rtol=RTOL, atol=0)
        offset += len(dataset)
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == len(batch.plan(inputs, PARTITION_ROWS)) > len(inputs)
    part = read_dataset(parts[-1])  # each part is a calsurr dataset file of its own
    assert part.process == TINY_MODEL and len(part) > 0


@pytest.mark.slow
def test_two_workers_predict_every_row_as_the_single_process_run(cluster, inputs, tiny_repository, tmp_path):
    model_dir = tiny_repository / TINY_MODEL / "1"
    out = tmp_path / "predictions"
    args = ["--model", str(model_dir), "--data", str(inputs[0]), "--data", str(inputs[1]), "--out", str(out)]
    done = run_cli(*args, "--scheduler", cluster.scheduler_address, "--partition-rows", str(PARTITION_ROWS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote {sum(EVENTS)} predictions" in done.stdout
    check_against_single_process(out, inputs, model_dir, tmp_path)
    summary = json.loads((out / batch.SUMMARY_FILE).read_text())
    assert summary["workers"] == 2 and summary["rows"] == sum(EVENTS)
    assert sum(summary["by_worker"].values()) == sum(EVENTS)

    again = run_cli(*args, "--scheduler", cluster.scheduler_address)
    assert again.returncode == 2 and "parts of a previous run; pass --overwrite" in again.stderr


@pytest.mark.slow
def test_partitions_through_a_server_match_too(cluster, inputs, tiny_repository, tmp_path):
    from calsurr.service.config import ServerSettings
    from calsurr.service.server import BackgroundServer

    model_dir = tiny_repository / TINY_MODEL / "1"
    out = tmp_path / "served"
    settings = ServerSettings(repo=tiny_repository, port=0, metrics_port=0)
    with BackgroundServer(settings) as server:
        done = run_cli(
            *("--server", server.address, "--model-name", TINY_MODEL, "--data", str(inputs[0])),
            *("--data", str(inputs[1]), "--out", str(out), "--scheduler", cluster.scheduler_address),
            *("--partition-rows", str(PARTITION_ROWS)),
        )
    assert done.returncode == 0, done.stdout + done.stderr
    check_against_single_process(out, inputs, model_dir, tmp_path)


def test_partitions_cover_every_row_once(inputs):
    parts = batch.plan(inputs, PARTITION_ROWS)
    for index, events in enumerate(EVENTS):
        mine = [p for p in parts if p.file.index == index]
        assert [p.start for p in mine] == [0, *[p.stop for p in mine[:-1]]] and mine[-1].stop == events
    parquet = [p for p in parts if p.file.format == "parquet"]
    assert all(p.rows <= PARTITION_ROWS for p in parquet) and {len(p.row_groups) for p in parquet} == {1}
    assert offline.DEFAULT_PARTITION_ROWS == batch.DEFAULT_PARTITION_ROWS


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["--workers", "0"], "--workers"),
        (["--same-data"], "names a file twice"),
        (["--out-is-a-file"], "is a file; on Dask --out is a folder"),
        (["--calorimeter"], "hold different inputs"),
    ],
)
def test_mistakes_are_one_line_and_exit_2_before_a_cluster_starts(extra, message, inputs, tiny_repository, tmp_path):
    from calsurr.training.data import generate_dataset, write_dataset

    data = [str(inputs[0]), str(inputs[1])]
    out = tmp_path / "out"
    if "--same-data" in extra:
        data, extra = [str(inputs[0]), str(inputs[0])], []
    if "--out-is-a-file" in extra:
        out.write_text("x")
        extra = ["--workers", "2"]
    if "--calorimeter" in extra:
        data = [str(inputs[0]), str(write_dataset(tmp_path / "clusters.h5", generate_dataset("calorimeter", 10, 1)))]
        extra = []
    args = ["--model", str(tiny_repository / TINY_MODEL / "1"), "--out", str(out)]
    for path in data:
        args += ["--data", path]
    done = run_cli(*args, *extra)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr and "predicting" not in done.stdout

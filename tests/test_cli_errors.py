"""A user's mistake on the command line: one line `Error: ...`, exit 2 (1 for a failure of the work), no
traceback, and found before any expensive work (training, generation, export, prediction) starts."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from calsurr.cli import app
from calsurr.offline import RUN_FILES

CALSURR = Path(sys.executable).with_name("calsurr")


def _invoke(*args, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _error(result, *words: str, code: int = 2) -> str:
    """The one `Error: ...` line of a result that exited `code`; it holds every one of `words`."""
    output = result.output
    assert result.exit_code == code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output and 'File "' not in output, output
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _forbid(*_args, **_kwargs):
    raise AssertionError("expensive work started before the arguments were checked")


@pytest.fixture
def no_expensive_work(monkeypatch):
    """Fail the test if a command starts generating, training, loading a run, exporting or predicting."""
    import calsurr.demo
    import calsurr.predict
    import calsurr.training.data
    import calsurr.training.export
    import calsurr.training.pipeline
    import calsurr.training.runs

    for module, name in [
        (calsurr.training.data, "generate_dataset"),
        (calsurr.training.pipeline, "train_surrogate"),
        (calsurr.training.runs, "load_run"),
        (calsurr.training.export, "export_to_repository"),
        (calsurr.predict, "predict_dataset"),
        (calsurr.predict, "server_runner"),
        (calsurr.demo, "run_demo"),
    ]:
        monkeypatch.setattr(module, name, _forbid)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """A 150-event gg -> gg file (generated in milliseconds)."""
    from calsurr.training.data import generate_dataset, write_dataset

    path = tmp_path_factory.mktemp("data") / "gg.h5"
    write_dataset(path, generate_dataset("gg_gg", 150, seed=3))
    return path


@pytest.fixture
def fake_run(tmp_path) -> Path:
    """A folder that looks like a finished run; nothing may read it (load_run is forbidden)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in RUN_FILES:
        (run / name).write_bytes(b"not read")
    return run


def test_run_files_are_those_of_training_runs():
    from calsurr.training import runs

    assert (runs.SURROGATE_FILE, runs.TEST_FILE) == RUN_FILES


# ---------------------------------------------------------------------------------------------------------------
# generate


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["gg_qq", "--events", "10", "--out", "x.h5"], ["PROCESS", "expected one of gg_gg"]),
        (["gg_gg", "--events", "10", "--out", "x.csv"], ["--out", "expect suffix"]),
        (["gg_gg", "--events", "10", "--out", "x.h5", "--noise", "-1"], ["--noise", "finite value > 0"]),
        (["gg_gg", "--events", "10", "--out", "x.h5", "--sqrt-s", "0"], ["--sqrt-s", "greater than 0"]),
        (["calorimeter", "--events", "10", "--out", "x.h5", "--sqrt-s", "10"], ["amplitude processes only"]),
    ],
)
def test_generate_bad_arguments(tmp_path, no_expensive_work, args, words):
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    _error(_invoke("generate", *args), *words)
    assert not list(tmp_path.iterdir())


def test_generate_refuses_an_existing_out_unless_overwrite(tmp_path, monkeypatch):
    out = tmp_path / "data.h5"
    out.write_bytes(b"precious")
    with monkeypatch.context() as patch:
        import calsurr.training.data

        patch.setattr(calsurr.training.data, "generate_dataset", _forbid)
        _error(_invoke("generate", "gg_gg", "--events", 10, "--out", out), "--out", "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    result = _invoke("generate", "gg_gg", "--events", 120, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    from calsurr.training.data import read_dataset

    assert len(read_dataset(out)) == 120


def test_generate_out_under_a_file(tmp_path, no_expensive_work):
    (tmp_path / "file").write_text("")
    _error(_invoke("generate", "gg_gg", "--events", 10, "--out", tmp_path / "file" / "x.h5"), "is a file")


# ---------------------------------------------------------------------------------------------------------------
# train


def _train(tmp_path, *args):
    return _invoke("train", "--out", tmp_path / "run", *args)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--method", "bayes"], ["--method", "'deep_ensemble'", "'bayes'"]),
        (["--process", "gg_qq"], ["--process", "expected one of gg_gg", "'gg_qq'"]),
        (["--seed", "-1"], ["--seed", "greater than or equal to 0"]),
    ],
)
def test_train_bad_arguments(tmp_path, no_expensive_work, args, words):
    _error(_train(tmp_path, *args), *words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("members: [1\n", ["not valid YAML", "line 2"]),
        ("- 1\n- 2\n", ["must map fields to values", "list"]),
        ("fit:\n  epochs: 0\n", ["fit.epochs", "greater than or equal to 1", "(got 0)"]),
        ("memebrs: 4\n", ["memebrs: unknown field", "TrainingConfig"]),
        ("process: gg_qq\n", ["process: expected one of"]),
    ],
)
def test_train_invalid_config(tmp_path, no_expensive_work, text, words):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    _error(_train(tmp_path, "--config", config), "--config", str(config), *words)
    assert not (tmp_path / "run").exists()


def test_train_missing_inputs(tmp_path, no_expensive_work):
    _error(_train(tmp_path, "--config", tmp_path / "nope.yaml"), "--config", "nope.yaml", "no such file")
    _error(_train(tmp_path, "--data", tmp_path / "nope.h5"), "--data", "nope.h5", "no such file")
    _error(_train(tmp_path, "--data", tmp_path / "nope.csv"), "--data", "expect suffix")
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    _error(_train(tmp_path, "--data", tmp_path / "broken.h5"), "--data", "broken.h5", "not a readable HDF5 file")
    assert not (tmp_path / "run").exists()


def test_train_data_that_cannot_train(tmp_path, small_data, no_expensive_work):
    _error(_train(tmp_path, "--data", small_data, "--process", "gg_ggg"), "--process gg_ggg", "gg_gg events")
    from calsurr.training.data import read_dataset, write_dataset

    few = write_dataset(tmp_path / "few.parquet", read_dataset(small_data).subset(np.arange(20)))
    _error(_train(tmp_path, "--data", few), "holds 20 events", "at least 100")
    assert not (tmp_path / "run").exists()


def test_train_refuses_an_out_that_holds_a_finished_run(tmp_path, fake_run, no_expensive_work):
    result = _invoke("train", "--out", fake_run)
    _error(result, str(fake_run), "finished run", "--overwrite")
    (tmp_path / "file").write_text("")
    _error(_invoke("train", "--out", tmp_path / "file"), "is a file")


# ---------------------------------------------------------------------------------------------------------------
# export


def test_export_refuses_an_existing_version_before_loading_the_run(tmp_path, fake_run, no_expensive_work):
    repo = tmp_path / "repo"
    for version in ("1", "2", ".3.staging"):
        (repo / "gg_gg" / version).mkdir(parents=True)
    line = _error(_invoke("export", fake_run, "--repo", repo, "--name", "gg_gg", "--version", 2), "immutable")
    assert str(repo / "gg_gg" / "2") in line and "--version 3" in line
    assert sorted(p.name for p in (repo / "gg_gg").iterdir()) == [".3.staging", "1", "2"]


def test_export_bad_arguments(tmp_path, fake_run, no_expensive_work):
    repo = tmp_path / "repo"
    _error(_invoke("export", tmp_path / "nope", "--repo", repo, "--name", "m"), "RUN", "not a folder")
    (tmp_path / "empty").mkdir()
    _error(_invoke("export", tmp_path / "empty", "--repo", repo, "--name", "m"), "not a finished run", "surrogate.pt")
    _error(_invoke("export", fake_run, "--repo", repo, "--name", ".hidden"), "--name", "not a model name")
    _error(_invoke("export", fake_run, "--repo", repo, "--name", "a/b"), "--name", "not a model name")
    (tmp_path / "file").write_text("")
    _error(_invoke("export", fake_run, "--repo", tmp_path / "file", "--name", "m"), "--repo", "is a file")
    result = _invoke("export", fake_run, "--repo", repo, "--name", "m", "--version", 0)
    assert result.exit_code == 2 and "--version" in result.output and "Traceback" not in result.output
    assert not repo.exists()


def test_export_of_an_unreadable_run_is_one_line(tmp_path, fake_run):
    _error(_invoke("export", fake_run, "--repo", tmp_path / "repo", "--name", "m"), "not a readable run")
    assert not (tmp_path / "repo" / "m" / "1").exists()


# ---------------------------------------------------------------------------------------------------------------
# report and predict: the checks that need no model


def test_report_and_predict_without_a_model_folder(tmp_path, small_data, no_expensive_work):
    half = tmp_path / "repo" / "m" / "1"
    half.mkdir(parents=True)
    (half / "model.onnx").write_bytes(b"")
    for model, words in [(tmp_path / "nope", ["not a folder"]), (half, ["not an exported model", "card.json"])]:
        _error(_invoke("report", model, "--data", small_data, "--out", tmp_path / "rep"), "MODEL_DIR", *words)
        _error(_invoke("predict", "--model", model, "--data", small_data, "--out", tmp_path / "p.h5"), *words)
    (half / "card.json").write_text("{}")
    _error(
        _invoke("predict", "--model", half, "--data", small_data, "--out", tmp_path / "p.h5"), "not a valid model card"
    )
    assert not (tmp_path / "rep").exists() and not (tmp_path / "p.h5").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], ["give --model MODEL_DIR", "--server HOST:PORT"]),
        (["--model-name", "m"], ["--model-name", "--server"]),
        (["--server", "localhost", "--model-name", "m"], ["--server expects HOST:PORT", "'localhost'"]),
        (["--server", "localhost:8001"], ["--model-name NAME"]),
    ],
)
def test_predict_bad_arguments(tmp_path, small_data, no_expensive_work, args, words):
    _error(_invoke("predict", "--data", small_data, "--out", tmp_path / "p.h5", *args), *words)


def test_predict_missing_input_and_existing_output(tmp_path, small_data, no_expensive_work):
    server = ["--server", "127.0.0.1:8001", "--model-name", "m"]
    _error(_invoke("predict", "--data", tmp_path / "no.h5", "--out", tmp_path / "p.h5", *server), "--data", "no such")
    _error(_invoke("predict", "--data", small_data, "--out", tmp_path / "p.txt", *server), "--out", "expect suffix")
    out = tmp_path / "p.h5"
    out.write_bytes(b"precious")
    _error(_invoke("predict", "--data", small_data, "--out", out, *server), "--out", "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    _error(_invoke("predict", "--data", small_data, "--out", small_data, "--overwrite", *server), "is the --data file")


def test_predict_from_a_server_that_is_not_there_fails_with_exit_1(tmp_path, small_data):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _invoke(
        "predict",
        "--server",
        f"127.0.0.1:{port}",
        "--model-name",
        "m",
        "--data",
        small_data,
        "--out",
        tmp_path / "p.h5",
    )
    _error(result, "cannot reach the server", f"127.0.0.1:{port}", code=1)
    assert not (tmp_path / "p.h5").exists()


# ---------------------------------------------------------------------------------------------------------------
# demo and serve


def test_demo_bad_arguments(tmp_path, no_expensive_work):
    _error(_invoke("demo", "--events", 10), "--events", "greater than or equal to 100", "(got 10)")
    _error(_invoke("demo", "--epochs", 0), "--epochs", "greater than or equal to 1")
    _error(_invoke("demo", "--members", 1), "--members", "greater than or equal to 2")
    (tmp_path / "file").write_text("")
    _error(_invoke("demo", "--workdir", tmp_path / "file"), "--workdir", "is a file")
    (tmp_path / "w" / "repository").mkdir(parents=True)
    (tmp_path / "w" / "repository" / "gg_ggg").write_text("")
    _error(_invoke("demo", "--workdir", tmp_path / "w"), "--workdir", "gg_ggg is a file")
    _error(_invoke("demo", "--process", "gg_gggg"), "--process", "gg_ggg, gg_gg", "got 'gg_gggg'")


def test_serve_bad_settings_are_one_line(tmp_path):
    _error(_invoke("serve", "--repo", tmp_path, "--port", 70000), "port", "65535", "(got 70000)")
    _error(_invoke("serve", "--repo", tmp_path / "nope"), "repo")
    _error(_invoke("serve", "--config", tmp_path / "nope.yaml"), "--config", "does not exist")
    (tmp_path / "bad.yaml").write_text("port: [1\n")
    _error(_invoke("serve", "--config", tmp_path / "bad.yaml"), "--config", "not readable YAML")
    _error(_invoke("serve", "--repo", tmp_path, env={"CALSURR_PROVIDERS": "not json"}), "providers")


# ---------------------------------------------------------------------------------------------------------------
# A real process: the line on stderr, nothing on stdout, no traceback


@pytest.mark.parametrize("command", ["export", "train"])
def test_a_real_process_prints_one_line_on_stderr(tmp_path, fake_run, command):
    if command == "export":
        (tmp_path / "repo" / "m" / "1").mkdir(parents=True)
        args = ["export", fake_run, "--repo", tmp_path / "repo", "--name", "m", "--version", "1"]
    else:
        args = ["train", "--out", tmp_path / "new", "--config", tmp_path / "missing.yaml"]
    done = subprocess.run([str(CALSURR), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------------------------
# With a trained model: checks against the model, and what the checks let through


@pytest.fixture(scope="module")
def ggg_data(tmp_path_factory) -> Path:
    from calsurr.training.data import generate_dataset, write_dataset

    path = tmp_path_factory.mktemp("data") / "ggg.h5"
    write_dataset(path, generate_dataset("gg_ggg", 100, seed=4))
    return path


@pytest.mark.slow
def test_data_that_does_not_fit_the_model(tiny_repository, ggg_data, tmp_path, no_expensive_work):
    model, data = tiny_repository / "gg_gg" / "1", ggg_data
    words = ["does not fit", "[-1, 4, 4]", "[-1, 5, 4]"]
    _error(_invoke("report", model, "--data", data, "--out", tmp_path / "rep"), *words)
    _error(_invoke("predict", "--model", model, "--data", data, "--out", tmp_path / "p.h5"), *words)
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "summary.json").write_text("{}")
    _error(_invoke("report", model, "--data", data, "--out", tmp_path / "rep"), "holds a report", "--overwrite")


@pytest.mark.slow
def test_export_refuses_an_existing_version_of_a_real_run(tiny_run, tmp_path, monkeypatch):
    from calsurr.training.export import export_to_repository
    from calsurr.training.runs import save_run

    run = save_run(tiny_run, tmp_path / "run")
    repo = tmp_path / "repo"
    export_to_repository(tiny_run, repo, "gg_gg", 1)
    import calsurr.training.runs

    monkeypatch.setattr(calsurr.training.runs, "load_run", _forbid)
    _error(_invoke("export", run, "--repo", repo, "--name", "gg_gg"), "exists", "immutable", "--version 2")


@pytest.mark.slow
def test_an_export_whose_float32_members_miss_the_bounds_is_refused_naming_float64(tiny_run, tmp_path, monkeypatch):
    """The real check, with bounds no float32 graph can meet (as an L-GATr's float32 mean misses 1e-5)."""
    import calsurr.training.export
    from calsurr.training.runs import save_run

    run = save_run(tiny_run, tmp_path / "run")
    monkeypatch.setattr(calsurr.training.export, "FLOAT32_MEMBER_RTOL", dict.fromkeys(("mean", "sigma_stat"), 1e-15))
    line = _error(_invoke("export", run, "--repo", tmp_path / "repo", "--name", "m"), "refused", code=1)
    assert "float32 members differs from torch: mean by" in line and "--member-dtype float64" in line
    assert not (tmp_path / "repo" / "m" / "1").exists()  # nothing published
    result = _invoke("export", run, "--repo", tmp_path / "repo", "--name", "m", "--member-dtype", "float64")
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_predict_an_fp32_export_in_process_and_an_unknown_model_on_a_server(tiny_run, tiny_repository, tmp_path):
    from calsurr.service.config import ServerSettings
    from calsurr.service.server import BackgroundServer
    from calsurr.training.data import read_dataset, write_dataset
    from calsurr.training.export import export_to_repository

    data = write_dataset(tmp_path / "test.parquet", tiny_run.test)
    folder = export_to_repository(tiny_run, tmp_path / "repo32", "gg_gg", 1, io_datatype="FP32")
    result = _invoke("predict", "--model", folder, "--data", data, "--out", tmp_path / "p.h5")
    assert result.exit_code == 0, result.output
    assert len(read_dataset(tmp_path / "p.h5")) == len(tiny_run.test)

    settings = ServerSettings(repo=tiny_repository, host="127.0.0.1", port=0, metrics_port=0)
    with BackgroundServer(settings) as server:
        result = _invoke(
            "predict", "--server", server.address, "--model-name", "nope", "--data", data, "--out", tmp_path / "s.h5"
        )
        _error(result, "has no model 'nope'", "--model-name")
        result = _invoke(
            "predict", "--server", server.address, "--model-name", "gg_gg", "--data", data, "--out", tmp_path / "s.h5"
        )
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("device", "words"), [("cuda", ["--device", "no CUDA GPU"]), ("tpu", ["device", "tpu"])])
def test_train_on_a_device_that_is_not_there_stops_before_training(
    monkeypatch, no_expensive_work, tmp_path, device, words
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _error(_invoke("train", "--out", tmp_path / "run", "--device", device), *words)
    assert not (tmp_path / "run").exists()

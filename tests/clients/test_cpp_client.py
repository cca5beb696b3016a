"""The C++ client (calsurr::Client) against a live `calsurr serve`, through calsurr_cpp_driver
(clients/tests/cpp_driver.cpp): values equal to onnxruntime in-process bit for bit, sync, asynchronous, a large
array pipelined in chunks, the coalescer under 64 threads; and every failure a status with its message, never a
crash of the caller."""

from __future__ import annotations

import json
import math
import subprocess
import time

import numpy as np
import pytest

from tests.clients.conftest import (
    OUTPUTS,
    assert_failed_cleanly,
    assert_own_rows,
    closed_port,
    phase_space,
    run_driver,
    start_server,
    stop_server,
)
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow
PREFERRED_BATCH = 4096  # the server's default preferred_batch_size (service/batcher.py)


@pytest.fixture(scope="module")
def driver(client_build):
    return client_build.program("calsurr_cpp_driver")


@pytest.fixture(scope="module")
def momenta():
    return phase_space(300, seed=3)


def assert_equal_to_reference(run, reference, momenta, chunk=None):
    """Bit for bit what onnxruntime in-process gives for the same rows in the same batches (`chunk` rows)."""
    expected = reference(momenta, chunk)
    for name in OUTPUTS:
        np.testing.assert_array_equal(run.outputs[name], expected[name], err_msg=name)


@pytest.mark.parametrize("mode", ["predict", "into", "async", "future"])
def test_predict_equals_onnxruntime_bit_for_bit(driver, served, reference, momenta, tmp_path, mode):
    run = run_driver(driver, mode, served.address, tmp_path, momenta, "--window-us", "0")
    assert run.returncode == 0, run.report
    assert_equal_to_reference(run, reference, momenta)
    assert run.report["infer_requests"] == 1
    if mode == "predict":
        assert run.report["model_version"] == "1"


def test_large_array_pipelined_in_preferred_batches(driver, served, reference, large_momenta, tmp_path):
    run = run_driver(driver, "predict", served.address, tmp_path, large_momenta)
    assert run.returncode == 0, run.report
    assert run.report["infer_requests"] == math.ceil(len(large_momenta) / PREFERRED_BATCH)
    assert_equal_to_reference(run, reference, large_momenta, chunk=PREFERRED_BATCH)


def test_large_array_with_own_chunks_and_in_flight(driver, served, reference, large_momenta, tmp_path):
    momenta = large_momenta[:100_000]
    run = run_driver(driver, "future", served.address, tmp_path, momenta, "--chunk-rows", "3000", "--in-flight", "2")
    assert run.returncode == 0, run.report
    assert run.report["infer_requests"] == math.ceil(len(momenta) / 3000)
    assert_equal_to_reference(run, reference, momenta, chunk=3000)


def test_coalescer_64_threads_one_point_each(driver, served, reference, tmp_path):
    momenta = phase_space(64 * 20, seed=5)
    run = run_driver(driver, "coalesce", served.address, tmp_path, momenta, "--threads", "64")
    assert run.returncode == 0, run.report
    assert (run.codes == 0).all()
    assert_own_rows(run, reference, momenta)
    assert run.report["coalesced_calls"] == len(momenta)
    assert run.report["coalesced_requests"] == run.report["infer_requests"] < len(momenta)


def test_coalescer_merges_within_its_window(driver, served, reference, tmp_path):
    """With a window of 5 ms the 64 callers of each round meet in a few requests, even on a loaded host."""
    momenta = phase_space(64 * 10, seed=6)
    run = run_driver(driver, "coalesce", served.address, tmp_path, momenta, "--threads", "64", "--window-us", "5000")
    assert run.returncode == 0, run.report
    assert_own_rows(run, reference, momenta)
    assert run.report["infer_requests"] <= len(momenta) / 8, run.report


def test_coalescer_nan_fails_only_its_caller(driver, served, reference, tmp_path):
    momenta = phase_space(64 * 4, seed=8)
    bad = 77
    momenta[bad, 2, 1] = np.nan
    run = run_driver(driver, "coalesce", served.address, tmp_path, momenta, "--threads", "64", "--window-us", "2000")
    assert_failed_cleanly(run, 3)
    assert run.codes[bad] == 3
    good = np.arange(len(momenta)) != bad
    assert (run.codes[good] == 0).all()
    assert_own_rows(run, reference, np.where(np.isnan(momenta), 0.0, momenta), rows=good)


def test_model_info_and_card(driver, served, tiny_repository, tmp_path):
    info = run_driver(driver, "info", served.address, tmp_path)
    assert info.returncode == 0, info.report
    assert info.report["n_particles"] == 4 and info.report["input"] == "momenta" and info.report["datatype"] == "FP64"
    assert info.report["preferred_batch_size"] == PREFERRED_BATCH == info.report["chunk_rows"]
    assert info.report["max_batch_size"] > 0 and info.report["ready"] and info.report["live"]
    card = run_driver(driver, "card", served.address, tmp_path)
    assert card.returncode == 0, card.report
    served_card = json.loads(card.report["card"])
    assert served_card == json.loads((tiny_repository / TINY_MODEL / "1" / "card.json").read_text())


def test_bearer_token_is_sent_and_accepted(driver, served, reference, momenta, tmp_path):
    run = run_driver(driver, "predict", served.address, tmp_path, momenta[:5], "--token", "s3cret")
    assert run.returncode == 0, run.report
    assert_equal_to_reference(run, reference, momenta[:5])


def test_wrong_model_is_not_found(driver, served, momenta, tmp_path):
    run = run_driver(driver, "predict", served.address, tmp_path, momenta[:3], model="no_such_model")
    assert_failed_cleanly(run, 5)
    assert "no_such_model" in run.message
    assert (run.codes == 5).all()


def test_wrong_shape_fails_before_sending(driver, served, tmp_path):
    five = phase_space(10, seed=9)[:, :, :].repeat(2, axis=1)[:, :5]  # 5 particles for a 4-particle model
    run = run_driver(driver, "predict", served.address, tmp_path, five, n_particles=5)
    assert_failed_cleanly(run, 3)
    assert "expects shape [-1, 4, 4], got [10, 5, 4]" in run.message
    assert "gg_gg" in run.message and "momenta" in run.message
    assert run.report["infer_requests"] == 0  # the metadata refused it: nothing was sent


def test_nan_input_is_invalid_argument_from_the_server(driver, served, momenta, tmp_path):
    bad = momenta[:4].copy()
    bad[2, 1, 3] = np.nan
    run = run_driver(driver, "predict", served.address, tmp_path, bad, "--window-us", "0")
    assert_failed_cleanly(run, 3)
    assert "nan" in run.message.lower()
    assert run.report["infer_requests"] == 1


def test_nan_in_a_large_array_names_the_request(driver, served, large_momenta, tmp_path):
    bad = large_momenta[:20_000].copy()
    bad[9_000, 0, 0] = np.inf
    run = run_driver(driver, "predict", served.address, tmp_path, bad)
    assert_failed_cleanly(run, 3)
    assert "rows 8192..12287 of 20000, request 3 of 5" in run.message


def test_server_down_retries_then_unavailable(driver, momenta, tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    start = time.monotonic()
    run = run_driver(driver, "predict", address, tmp_path, momenta[:2])
    elapsed = time.monotonic() - start
    assert_failed_cleanly(run, 14)
    assert address in run.message and "5 attempts" in run.message, run.message
    assert run.report["retries"] == 4
    assert 0.8 * 1.5 <= elapsed < 15, elapsed  # waits of about 0.1 + 0.2 + 0.4 + 0.8 s


def test_server_coming_back_is_found_by_the_retries(driver, tiny_repository, reference, momenta, tmp_path):
    """A server that starts while the client is retrying: a later attempt gets the answer (9 attempts wait
    about 25 s in all, long enough for `calsurr serve` to start)."""
    port = closed_port()
    np.ascontiguousarray(momenta[:20]).tofile(tmp_path / "in")
    files = [str(tmp_path / "in"), str(tmp_path / "out")]
    command = [str(driver), "predict", f"127.0.0.1:{port}", TINY_MODEL, "4", *files]
    process = subprocess.Popen([*command, "--max-attempts", "9", "--timeout", "60"], stdout=subprocess.PIPE, text=True)
    server = None
    try:
        time.sleep(0.3)
        server = start_server(tiny_repository, tmp_path / "serve.log", port=port)
        stdout, _ = process.communicate(timeout=120)
    finally:
        process.kill()
        if server is not None:
            stop_server(server)
    report = json.loads(stdout.strip().splitlines()[-1])
    assert process.returncode == 0 and report["code"] == 0, report
    assert report["retries"] >= 1, report
    values = np.fromfile(tmp_path / "out").reshape(5, -1)
    np.testing.assert_array_equal(values[0], reference(momenta[:20])["mean"])


def test_deadline_that_passes_is_deadline_exceeded(driver, served, large_momenta, tmp_path):
    run = run_driver(driver, "predict", served.address, tmp_path, large_momenta, "--warmup", "--timeout", "0.005")
    assert_failed_cleanly(run, 4)
    assert "timeout 0.005 s" in run.message, run.message
    assert run.report["seconds"] < 5


def test_a_bad_option_is_invalid_argument(driver, served, momenta, tmp_path):
    run = run_driver(driver, "predict", served.address, tmp_path, momenta[:2], "--in-flight", "0")
    assert_failed_cleanly(run, 3)
    assert "max_in_flight" in run.message

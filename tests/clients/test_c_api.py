"""The C API (calsurr.h) against a live `calsurr serve`, through calsurr_c_driver (clients/tests/c_driver.c):
caller-owned arrays equal to onnxruntime in-process bit for bit, the coalescer under 64 pthreads, the card's
two-call size protocol, and each failure its gRPC status code and message, with the caller going on."""

from __future__ import annotations

import json
import math
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
)
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def driver(client_build):
    return client_build.program("calsurr_c_driver")


def test_predict_into_caller_arrays_bit_for_bit(driver, served, reference, tmp_path):
    momenta = phase_space(500, seed=21)
    run = run_driver(driver, "predict", served.address, tmp_path, momenta)
    assert run.returncode == 0, run.report
    expected = reference(momenta)
    for name in OUTPUTS:
        np.testing.assert_array_equal(run.outputs[name], expected[name], err_msg=name)


def test_large_array_bit_for_bit(driver, served, reference, large_momenta, tmp_path):
    momenta = large_momenta[:50_000]
    run = run_driver(driver, "predict", served.address, tmp_path, momenta, "--chunk-rows", "5000")
    assert run.returncode == 0, run.report
    expected = reference(momenta, chunk=5000)
    for name in OUTPUTS:
        np.testing.assert_array_equal(run.outputs[name], expected[name], err_msg=name)


def test_coalescer_64_threads_one_point_each(driver, served, reference, tmp_path):
    momenta = phase_space(64 * 10, seed=22)
    run = run_driver(driver, "coalesce", served.address, tmp_path, momenta, "--threads", "64")
    assert run.returncode == 0, run.report
    assert (run.codes == 0).all()
    assert_own_rows(run, reference, momenta)


def test_card_with_the_size_protocol(driver, served, tiny_repository, tmp_path):
    run = run_driver(driver, "card", served.address, tmp_path)
    assert run.returncode == 0, run.report
    assert json.loads(run.report["card"]) == json.loads((tiny_repository / TINY_MODEL / "1" / "card.json").read_text())


def test_model_particles(driver, served, tmp_path):
    run = run_driver(driver, "particles", served.address, tmp_path)
    assert run.returncode == 0 and run.report["particles"] == 4, run.report


def test_wrong_model_is_not_found(driver, served, tmp_path):
    run = run_driver(driver, "predict", served.address, tmp_path, phase_space(2), model="nope")
    assert_failed_cleanly(run, 5)
    assert "nope" in run.message
    particles = run_driver(driver, "particles", served.address, tmp_path, model="nope")
    assert_failed_cleanly(particles, 5)


def test_wrong_shape_is_invalid_argument_naming_both(driver, served, tmp_path):
    run = run_driver(driver, "predict", served.address, tmp_path, phase_space(6).reshape(8, 3, 4), n_particles=3)
    assert_failed_cleanly(run, 3)
    assert "expects shape [-1, 4, 4], got [8, 3, 4]" in run.message


def test_nan_is_invalid_argument_from_the_server(driver, served, tmp_path):
    momenta = phase_space(100)
    momenta[40, 3, 2] = np.nan
    run = run_driver(driver, "predict", served.address, tmp_path, momenta)
    assert_failed_cleanly(run, 3)
    assert "nan" in run.message.lower()


def test_server_down_is_unavailable_in_bounded_time(driver, tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    start = time.monotonic()
    run = run_driver(driver, "predict", address, tmp_path, phase_space(3), "--max-attempts", "3")
    assert_failed_cleanly(run, 14)
    assert address in run.message and "3 attempts" in run.message
    assert time.monotonic() - start < 10


def test_deadline_is_deadline_exceeded(driver, served, large_momenta, tmp_path):
    run = run_driver(driver, "predict", served.address, tmp_path, large_momenta, "--timeout", "0.002")
    assert_failed_cleanly(run, 4)
    assert "timeout 0.002 s" in run.message
    assert math.isfinite(run.report["seconds"]) and run.report["seconds"] < 5


def test_bad_options_are_invalid_argument(driver, served, tmp_path):
    run = run_driver(driver, "predict", served.address, tmp_path, phase_space(2), "--max-attempts", "0")
    assert_failed_cleanly(run, 3)
    assert "max_attempts" in run.message

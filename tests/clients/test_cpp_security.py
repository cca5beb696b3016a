"""The C++ client against a secured server and across a server's death: TLS and mutual TLS (certificates made
by trustme), bearer tokens, and a `calsurr serve` killed and restarted on its port while the client retries."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest
import trustme

from calsurr.service.auth import new_token
from calsurr.service.config import ServerSettings
from calsurr.service.server import BackgroundServer
from tests.clients.conftest import OUTPUTS, closed_port, phase_space, run_driver, start_server, stop_server

pytestmark = pytest.mark.slow
UNAVAILABLE, UNAUTHENTICATED = 14, 16


@pytest.fixture(scope="module")
def driver(client_build):
    return client_build.program("calsurr_cpp_driver")


@pytest.fixture(scope="module")
def momenta():
    return phase_space(64, seed=11)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(folder / "ca.pem")
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(folder / "server.key")
    server.cert_chain_pems[0].write_to_path(folder / "server.pem")
    client = ca.issue_cert("generator-job")
    client.private_key_pem.write_to_path(folder / "client.key")
    client.cert_chain_pems[0].write_to_path(folder / "client.pem")
    trustme.CA().cert_pem.write_to_path(folder / "other-ca.pem")
    return folder


def _serve(repo, **settings):
    return BackgroundServer(ServerSettings(repo=repo, port=0, metrics_port=0, **settings))


def _assert_equal(run, reference, momenta):
    assert run.returncode == 0, run.report
    expected = reference(momenta)
    for name in OUTPUTS:
        np.testing.assert_array_equal(run.outputs[name], expected[name], err_msg=name)


def test_the_cpp_client_over_tls_and_refused_without_the_ca(driver, tiny_repository, pki, reference, momenta, tmp_path):
    tls = {"tls_cert": pki / "server.pem", "tls_key": pki / "server.key"}
    with _serve(tiny_repository, **tls) as server:
        trusted = run_driver(driver, "predict", server.address, tmp_path, momenta, "--ca", str(pki / "ca.pem"))
        _assert_equal(trusted, reference, momenta)
        flags = ("--max-attempts", "1", "--timeout", "10")
        other = run_driver(
            driver, "predict", server.address, tmp_path, momenta, "--ca", str(pki / "other-ca.pem"), *flags
        )
        plaintext = run_driver(driver, "predict", server.address, tmp_path, momenta, *flags)
    for refused in (other, plaintext):
        assert refused.returncode == 1 and refused.code == UNAVAILABLE, refused.report


def test_the_cpp_client_with_a_client_certificate_under_mtls(
    driver, tiny_repository, pki, reference, momenta, tmp_path
):
    tls = {"tls_cert": pki / "server.pem", "tls_key": pki / "server.key", "tls_client_ca": pki / "ca.pem"}
    ca = ("--ca", str(pki / "ca.pem"))
    with _serve(tiny_repository, **tls) as server:
        mutual = run_driver(
            driver, "predict", server.address, tmp_path, momenta, *ca,
            "--cert", str(pki / "client.pem"), "--key", str(pki / "client.key"),
        )  # fmt: skip
        _assert_equal(mutual, reference, momenta)
        without = run_driver(driver, "predict", server.address, tmp_path, momenta, *ca, "--max-attempts", "1")
    assert without.returncode == 1 and without.code == UNAVAILABLE, without.report


def test_the_cpp_client_with_a_bearer_token(driver, tiny_repository, reference, momenta, tmp_path):
    tokens = tmp_path / "tokens"
    token = new_token("infer", tokens)
    with _serve(tiny_repository, auth_tokens=tokens) as server:
        _assert_equal(
            run_driver(driver, "predict", server.address, tmp_path, momenta, "--token", token), reference, momenta
        )
        missing = run_driver(driver, "predict", server.address, tmp_path, momenta)
        wrong = run_driver(driver, "predict", server.address, tmp_path, momenta, "--token", "not-a-token")
    for refused in (missing, wrong):
        assert refused.returncode == 1 and refused.code == UNAUTHENTICATED, refused.report
        assert token not in refused.stdout + refused.stderr


def test_the_cpp_client_retries_through_a_kill_and_restart_on_the_same_port(
    driver, tiny_repository, reference, momenta, tmp_path
):
    """Calls in a loop while the server is killed (SIGKILL) and started again on its port: the client retries
    (UNAVAILABLE, backoff) until the new process answers, and the loop ends with the right values."""
    port = closed_port()
    server = start_server(tiny_repository, tmp_path / "serve.log", port=port)
    source, out = tmp_path / "kill.in", tmp_path / "kill.out"
    np.ascontiguousarray(momenta).tofile(source)
    timing = run_driver(driver, "into", server.address, tmp_path, momenta, "--repeat", "200")
    per_call = timing.report["seconds"] / 200
    repeat = max(2000, int(6.0 / max(per_call, 1e-5)))  # about 6 s of calls without the outage
    command = [str(driver), "into", server.address, "gg_gg", "4", str(source), str(out), "--repeat", str(repeat)]
    command += ["--max-attempts", "60", "--initial-backoff", "0.05", "--timeout", "120"]
    calls = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        assert calls.poll() is None, "the loop ended before the kill: raise the repeat count"
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        time.sleep(0.5)
        server = start_server(tiny_repository, tmp_path / "serve-again.log", port=port)
        stdout, stderr = calls.communicate(timeout=180)
    finally:
        if calls.poll() is None:
            calls.kill()
        stop_server(server)
    report = json.loads(stdout.strip().splitlines()[-1])
    assert calls.returncode == 0 and report["code"] == 0, (report, stderr)
    assert report["retries"] > 0, report
    values = np.fromfile(out, dtype=np.float64).reshape(5, -1)
    expected = reference(momenta)
    for index, name in enumerate(OUTPUTS):
        np.testing.assert_array_equal(values[index], expected[name], err_msg=name)


def test_the_cpp_client_reports_retries_across_a_restart(driver, tiny_repository, reference, momenta, tmp_path):
    """A bounded run: the client starts against a closed port, the server comes up on it meanwhile; the call
    succeeds with the right values after retries, and says how many."""
    port = closed_port()
    source = tmp_path / "late.in"
    np.ascontiguousarray(momenta).tofile(source)
    command = [str(driver), "predict", f"127.0.0.1:{port}", "gg_gg", "4", str(source), str(tmp_path / "late.out")]
    command += ["--max-attempts", "60", "--initial-backoff", "0.05", "--timeout", "60"]
    calls = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        time.sleep(0.5)
        server = start_server(tiny_repository, tmp_path / "serve.log", port=port)
        stdout, stderr = calls.communicate(timeout=90)
    finally:
        if calls.poll() is None:
            calls.kill()
        if server is not None:
            stop_server(server)
    report = json.loads(stdout.strip().splitlines()[-1])
    assert calls.returncode == 0 and report["code"] == 0, (report, stderr)
    assert report["retries"] > 0
    values = np.fromfile(tmp_path / "late.out", dtype=np.float64).reshape(5, -1)
    expected = reference(momenta)
    for index, name in enumerate(OUTPUTS):
        np.testing.assert_array_equal(values[index], expected[name], err_msg=name)

"""The clients under test (clients/, CMake): built once per source hash, and a live `calsurr serve` for them.

Fixtures for every client test (C++, C, Fortran, OLP):
- `client_build`: the build of clients/ for the sources as they are, in build/clients/<hash>/ (configured,
  built with -j2, ctest run, installed into <hash>/prefix; bench/client_build.py, shared with bench/clients.py);
  reused while no file under clients/ or protos/ and no compiler changes. `.program(name)` is a built
  program's path, `.library(name)` a built library's, `.prefix` the install, `.ctest` what ctest said.
- `served`: `calsurr serve` on the tiny gg_gg model (tests/conftest.py), `.address` and `.metrics_url`.
- `reference`: onnxruntime in-process on the same model.onnx, the values the clients must equal bit for bit.
- `run_driver(program, mode, address, ...)`: runs a test driver on momenta and reads back its outputs.

A missing toolchain fails these tests, naming the Debian packages to install (scripts/install_client_toolchain.sh
installs them as root; scripts/test.sh runs it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.client_build import (  # noqa: F401 (BUILD_JOBS, CLIENTS: imported from here by the client tests)
    BUILD_JOBS,
    CLIENTS,
    DEBIAN_PACKAGES,
    BuildFailed,
    ClientBuild,
    build_clients,
    missing_toolchain,
)
from tests.conftest import TINY_MODEL, missing_tool

CALSURR = Path(sys.executable).with_name("calsurr")
OUTPUTS = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
N_PARTICLES = 4  # gg -> gg
SERVER_START_SECONDS = 60
ROW_RTOL = 1e-13  # a few ulps: how far a row's value moves with the size of the batch it runs in


@pytest.fixture(scope="session")
def client_build() -> ClientBuild:
    missing = missing_toolchain()
    if missing:
        missing_tool(
            f"C++ client toolchain ({', '.join(missing)})",
            f"install the Debian packages {DEBIAN_PACKAGES} (scripts/install_client_toolchain.sh)",
        )
    try:
        return build_clients()
    except BuildFailed as exc:
        pytest.fail(str(exc), pytrace=False)


@dataclass
class Served:
    address: str
    metrics_url: str
    process: subprocess.Popen
    log: Path


def start_server(repository: Path, log: Path, port: int = 0) -> Served:
    """`calsurr serve` as its own process, ready once it prints the address it bound."""
    command = [str(CALSURR), "serve", "--repo", str(repository), "--port", str(port), "--metrics-port", "0"]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not (match := re.search(r"on (127\.0\.0\.1:\d+); metrics on (http://\S+)", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"calsurr serve did not start: {log.read_text()}", pytrace=False)
        time.sleep(0.05)
    return Served(match.group(1), match.group(2), process, log)


def stop_server(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(30)
    except subprocess.TimeoutExpired:
        served.process.kill()


@pytest.fixture(scope="session")
def served(tiny_repository, tmp_path_factory) -> Iterator[Served]:
    """One `calsurr serve` of the tiny gg_gg model for all client tests."""
    server = start_server(tiny_repository, tmp_path_factory.mktemp("served") / "serve.log")
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def reference(tiny_repository):
    """onnxruntime in-process on the served model.onnx: momenta (N, 4, 4) -> the four outputs.

    `chunk`: run the rows in batches of that many, as the client sends them. onnxruntime rounds the last bit of
    a row differently by where it falls in the batch (a short tail block, a thread's share), so the values a
    client must equal bit for bit are those of the same rows in the same batches.
    """
    import onnxruntime as ort

    from calsurr.service.card import MODEL_FILENAME

    session = ort.InferenceSession(str(tiny_repository / TINY_MODEL / "1" / MODEL_FILENAME))

    def run(momenta: np.ndarray, chunk: int | None = None) -> dict[str, np.ndarray]:
        step = chunk or max(1, len(momenta))
        parts = [session.run(list(OUTPUTS), {"momenta": momenta[i : i + step]}) for i in range(0, len(momenta), step)]
        return {name: np.concatenate([part[k] for part in parts]) for k, name in enumerate(OUTPUTS)}

    return run


def phase_space(n_events: int, seed: int = 7) -> np.ndarray:
    """gg -> gg points at sqrt(s) = 1 TeV inside the default cuts, (N, 4, 4) float64, all distinct."""
    from calsurr.training.physics.phase_space import sample_cut_phase_space

    return np.ascontiguousarray(sample_cut_phase_space(2, 1000.0, n_events, 0.01, np.random.default_rng(seed)))


@pytest.fixture(scope="session")
def large_momenta() -> np.ndarray:
    """250 000 points: 62 requests of the server's preferred 4096 rows."""
    return phase_space(250_000, seed=11)


@dataclass
class DriverRun:
    """A test driver's outcome: its exit code, its JSON report, its outputs and each row's status code."""

    returncode: int
    report: dict
    outputs: dict[str, np.ndarray]
    codes: np.ndarray
    stdout: str
    stderr: str

    @property
    def code(self) -> int:
        return self.report["code"]

    @property
    def message(self) -> str:
        return self.report["message"]


def run_driver(
    program: Path,
    mode: str,
    address: str,
    workdir: Path,
    momenta: np.ndarray | None = None,
    *flags: str,
    model: str = TINY_MODEL,
    n_particles: int = N_PARTICLES,
    timeout: float = 300,
) -> DriverRun:
    """Run `program MODE ADDRESS MODEL N_PARTICLES [IN OUT] FLAGS...` and read what it reports and writes."""
    command = [str(program), mode, address, model, str(n_particles)]
    out = workdir / f"{mode}.out"
    if momenta is not None:
        source = workdir / f"{mode}.in"
        np.ascontiguousarray(momenta, dtype=np.float64).tofile(source)
        command += [str(source), str(out)]
    result = subprocess.run([*command, *flags], capture_output=True, text=True, timeout=timeout)
    lines = result.stdout.strip().splitlines()
    assert lines, f"{program.name} printed nothing (exit {result.returncode}): {result.stderr}"
    report = json.loads(lines[-1])
    outputs: dict[str, np.ndarray] = {}
    codes = np.zeros(0)
    if momenta is not None and out.exists():
        values = np.fromfile(out, dtype=np.float64).reshape(5, -1)
        outputs = dict(zip(OUTPUTS, values[:4], strict=True))
        codes = values[4]
    return DriverRun(result.returncode, report, outputs, codes, result.stdout, result.stderr)


def closed_port() -> int:
    """A loopback port that nothing listens on (bound to find a free one, then closed)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_own_rows(run, reference, momenta, rows=slice(None)):
    """Each caller got its own rows back, point by point. Not bit for bit: a coalesced row runs in a batch of
    whatever size the callers made, and onnxruntime's kernels round the last bit differently for some batch
    sizes (in-process too: rows run 1 or 3 at a time differ from the same rows run 64 at a time)."""
    expected = reference(momenta)
    for name in OUTPUTS:
        np.testing.assert_allclose(run.outputs[name][rows], expected[name][rows], rtol=ROW_RTOL, atol=0, err_msg=name)
    means = np.sort(expected["mean"][rows])
    assert (np.diff(means) > 1e3 * ROW_RTOL * np.abs(means[1:])).all(), "rows too alike to tell a swap"


def assert_failed_cleanly(run, code: int):
    """A failed call: the status reported, exit code 1 (not a signal, not a usage error)."""
    assert run.returncode == 1, f"exit {run.returncode}: {run.stdout} {run.stderr}"
    assert run.code == code, run.report
    assert run.message, run.report

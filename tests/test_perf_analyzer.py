"""Triton's own load generator, perf_analyzer (C++), drives a live `calsurr serve` in every mode it has for
gRPC (sync, async, streaming) at batch 1 and 64, with no failed request on either side.

perf_analyzer is installed by scripts/install_perf_analyzer.sh (scripts/test.sh runs it) as
.venv/bin/perf_analyzer; it sends what Triton's clients send as a matter of course (the request parameter
`triton_enable_empty_final_response` in every mode, ModelConfig and statistics queries), which calsurr must
accept.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
PERF_ANALYZER = BIN / "perf_analyzer"
CALSURR = BIN / "calsurr"
RUN_SECONDS = 120  # one perf_analyzer run: three 500 ms windows, plus start-up; the limit only stops a hang
MODES = ("--sync", "--async", "--streaming")


@pytest.fixture(scope="module")
def served(tiny_repository, tmp_path_factory):
    """`calsurr serve` as its own process on free ports, read from the line it prints when ready."""
    log = tmp_path_factory.mktemp("perf") / "serve.log"
    command = [str(CALSURR), "serve", "--repo", str(tiny_repository), "--port", "0", "--metrics-port", "0"]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"on (127\.0\.0\.1:\d+); metrics on (http://\S+)", log.read_text())):
            assert process.poll() is None, f"calsurr serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"calsurr serve did not start: {log.read_text()}"
            time.sleep(0.1)
        yield match.group(1), match.group(2)
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def input_data(tiny_run, tmp_path_factory) -> Path:
    """perf_analyzer's --input-data: real phase-space points (it batches copies of each for -b > 1)."""
    momenta = tiny_run.test.momenta[:16]
    data = {"data": [{"momenta": {"content": event.ravel().tolist(), "shape": list(event.shape)}} for event in momenta]}
    path = tmp_path_factory.mktemp("perf") / "data.json"
    path.write_text(json.dumps(data))
    return path


def _requests_by_code(metrics_url: str) -> dict[str, float]:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "calsurr_requests":
            for sample in family.samples:
                if sample.name == "calsurr_requests_total":
                    counts[sample.labels["code"]] = counts.get(sample.labels["code"], 0.0) + sample.value
    return counts


def test_perf_analyzer_is_installed():
    assert PERF_ANALYZER.exists(), f"{PERF_ANALYZER} missing: run scripts/install_perf_analyzer.sh"
    version = subprocess.run([str(PERF_ANALYZER), "--version"], capture_output=True, text=True, timeout=30)
    assert "2.51.0" in version.stdout + version.stderr


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("mode", MODES)
def test_perf_analyzer_completes_with_no_failed_request(served, input_data, mode, batch):
    address, metrics_url = served
    before = _requests_by_code(metrics_url)
    run = subprocess.run(
        [str(PERF_ANALYZER), "-m", TINY_MODEL, "-u", address, "-i", "grpc", "-b", str(batch), mode]
        + ["--concurrency-range", "2", "--shared-memory", "none", "--input-data", str(input_data)]
        + ["--measurement-interval", "500", "--stability-percentage", "100", "--max-trials", "3"],
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "error" not in output.lower(), output
    client_requests = int(re.search(r"Request count: (\d+)", output).group(1))
    assert client_requests > 0
    after = _requests_by_code(metrics_url)
    served_ok = after.get("OK", 0.0) - before.get("OK", 0.0)
    failed = {
        code: n - before.get(code, 0.0) for code, n in after.items() if code != "OK" and n > before.get(code, 0.0)
    }
    assert not failed, f"the server refused requests: {failed}"
    assert served_ok >= client_requests  # the measured windows, plus perf_analyzer's warm-up

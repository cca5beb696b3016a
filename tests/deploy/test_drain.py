"""The chart's shutdown, played on a real process: `calsurr serve` with the config file the chart renders gets
SIGTERM (what the kubelet sends after the preStop sleep) while requests wait in its batcher queue; every
accepted request is answered, new ones are refused, and the process exits 0 well inside the pod's
terminationGracePeriodSeconds less the preStop sleep."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from calsurr.service.client import infer_request
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import TINY_MODEL
from tests.deploy.conftest import find, render

pytestmark = pytest.mark.slow
CALSURR = Path(sys.executable).with_name("calsurr")
QUEUED = 20  # requests held in the batcher by the queue delay when SIGTERM comes
QUEUE_DELAY_US = 1_000_000  # the longest the settings allow: the requests surely wait, accepted, unanswered


def inflight(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    return float(re.search(r"^calsurr_inflight_requests (\S+)$", text, re.MULTILINE).group(1))


def test_sigterm_answers_every_accepted_request_within_the_grace(tiny_repository, tiny_run, tmp_path):
    objects = render("defaults")
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config = yaml.safe_load(find(objects, "ConfigMap")["data"]["calsurr.yaml"])
    grace = config["grace_seconds"]
    budget = pod["terminationGracePeriodSeconds"] - container["lifecycle"]["preStop"]["sleep"]["seconds"]
    config |= {"max_queue_delay_us": QUEUE_DELAY_US, "log_format": "text", "log_level": "warning"}
    (tmp_path / "calsurr.yaml").write_text(yaml.safe_dump(config))
    env = {e["name"]: e["value"] for e in container["env"]}
    env |= {"CALSURR_REPO": str(tiny_repository), "CALSURR_HOST": "127.0.0.1", "CALSURR_PORT": "0"}
    env |= {"CALSURR_METRICS_PORT": "0", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [str(CALSURR), "serve", "--config", str(tmp_path / "calsurr.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"on 127\.0\.0\.1:(\d+); metrics on (http://\S+/metrics)", line)
        assert match, line + process.stdout.read()
        threading.Thread(target=process.stdout.read, daemon=True).start()
        address, metrics_url = f"127.0.0.1:{match.group(1)}", match.group(2)

        momenta = np.ascontiguousarray(tiny_run.test.momenta)
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            stub.ServerReady(pb.ServerReadyRequest(), timeout=10)
            requests = [infer_request(TINY_MODEL, {"momenta": momenta[i : i + 2]}) for i in range(QUEUED)]
            futures = [stub.ModelInfer.future(r, timeout=60) for r in requests]
            deadline = time.monotonic() + 20
            while inflight(metrics_url) < len(requests):  # every request accepted by the server
                assert time.monotonic() < deadline, f"only {inflight(metrics_url)} of {len(requests)} in flight"
                time.sleep(0.02)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            answers = [f.result() for f in futures]
            answered = time.monotonic() - signalled
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelInfer(requests[0], timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        code = process.wait(timeout=budget)
        exited = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    rows = [np.frombuffer(a.raw_output_contents[0], dtype="<f8").size for a in answers]
    assert rows == [2] * QUEUED
    assert answered < grace, f"answered {answered:.1f} s after SIGTERM, grace {grace} s"
    assert exited < budget, f"exited {exited:.1f} s after SIGTERM; the kubelet kills at {budget} s"

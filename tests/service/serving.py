"""Helpers for tests that drive an in-process server: hold its runs at a gate, read its metrics, wait for
events instead of sleeping a fixed time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL

WAIT_SECONDS = 30.0  # generous bound on what should happen at once, so a loaded CI host does not flake


def infer_request(momenta: np.ndarray, **fields) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(**{"model_name": TINY_MODEL, **fields})
    request.inputs.add(name="momenta", datatype="FP64", shape=momenta.shape)
    request.raw_input_contents.append(np.ascontiguousarray(momenta).tobytes())
    return request


def wait_until(condition: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        time.sleep(0.002)


def sample(server: BackgroundServer, name: str, **labels: str) -> float:
    """A metric's current value from the server's own registry (0 when the series does not exist yet)."""
    value = server.running.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class Gate:
    """Holds every run of a model until opened; counts the runs that reached the model."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Semaphore(0)

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=WAIT_SECONDS), "no run reached the model"


@contextmanager
def gated(server: BackgroundServer, model: str = TINY_MODEL) -> Iterator[Gate]:
    """Replace the loaded model's `run` by one that waits at a gate (the batcher calls `model.run`)."""
    onnx_model = server.running.dataplane.repository.get(model)
    original = onnx_model.run
    gate = Gate()

    def run(inputs, outputs=None):
        gate.entered.release()
        assert gate.open.wait(WAIT_SECONDS), "gate never opened"
        return original(inputs, outputs)

    onnx_model.run = run
    try:
        yield gate
    finally:
        gate.open.set()
        del onnx_model.run

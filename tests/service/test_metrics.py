"""Prometheus metrics: the array histogram alone, then a server's /metrics scraped over HTTP after traffic."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME
from calsurr.service.config import ServerSettings
from calsurr.service.metrics import ArrayHistogram, ServerMetrics
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL
from tests.service.serving import infer_request

README = Path(__file__).resolve().parents[2] / "README.md"
METRIC_FAMILIES = {
    "calsurr_requests": "counter",
    "calsurr_request_duration_seconds": "histogram",
    "calsurr_queue_duration_seconds": "histogram",
    "calsurr_compute_duration_seconds": "histogram",
    "calsurr_batch_size_rows": "histogram",
    "calsurr_batch_requests": "histogram",
    "calsurr_queue_depth_requests": "gauge",
    "calsurr_inflight_requests": "gauge",
    "calsurr_models_loaded": "gauge",
    "calsurr_model_load_failures": "counter",
    "calsurr_execution_provider_info": "gauge",  # an info metric: value 1, the provider in a label
    "calsurr_relative_uncertainty_ratio": "histogram",
    "calsurr_out_of_domain_predictions": "counter",
    "calsurr_build_info": "gauge",
}
REQUESTS = 12
ROWS = 10


def test_array_histogram_matches_prometheus_bucket_semantics():
    registry = CollectorRegistry()
    histogram = ArrayHistogram("h_ratio", "test", ("model",), (0.1, 1.0))
    registry.register(histogram)
    histogram.observe(("a",), np.array([0.05, 0.1, 0.5, 1.0, 3.0, np.inf, np.nan]))
    histogram.observe(("a",), np.array([0.2]))
    value = registry.get_sample_value
    assert value("h_ratio_bucket", {"model": "a", "le": "0.1"}) == 2  # `le`: 0.1 itself is in the 0.1 bucket
    assert value("h_ratio_bucket", {"model": "a", "le": "1.0"}) == 5
    assert value("h_ratio_bucket", {"model": "a", "le": "+Inf"}) == 8
    assert value("h_ratio_count", {"model": "a"}) == 8
    assert value("h_ratio_sum", {"model": "a"}) == pytest.approx(
        0.05 + 0.1 + 0.5 + 1.0 + 3.0 + 0.2
    )  # inf, nan left out


def test_two_servers_in_one_process_keep_separate_registries():
    first, second = ServerMetrics(), ServerMetrics()
    first.inflight.inc()
    assert first.registry.get_sample_value("calsurr_inflight_requests") == 1
    assert second.registry.get_sample_value("calsurr_inflight_requests") == 0


@pytest.fixture(scope="module")
def momenta(tiny_run):
    return np.ascontiguousarray(tiny_run.test.momenta[: REQUESTS * ROWS])


@pytest.fixture(scope="module")
def relative_sigma(tiny_repository, momenta) -> np.ndarray:
    session = ort.InferenceSession(str(tiny_repository / TINY_MODEL / "1" / MODEL_FILENAME))
    mean, sigma_tot = session.run(["mean", "sigma_tot"], {"momenta": momenta})
    return sigma_tot / np.abs(mean)


@pytest.fixture(scope="module")
def repository(tiny_repository, relative_sigma, tmp_path_factory) -> Path:
    """The tiny model with an out-of-domain threshold at the median of the traffic's relative sigma, and a
    broken version 2 beside it (a card that fails validation) that must fail to load, version 1 serving."""
    repo = tmp_path_factory.mktemp("metrics-repository")
    shutil.copytree(tiny_repository / TINY_MODEL, repo / TINY_MODEL)
    card_path = repo / TINY_MODEL / "1" / CARD_FILENAME
    card = json.loads(card_path.read_text())
    card["out_of_domain_relative_sigma"] = float(np.median(relative_sigma))
    card_path.write_text(json.dumps(card))
    broken = repo / TINY_MODEL / "2"
    broken.mkdir()
    shutil.copy(repo / TINY_MODEL / "1" / MODEL_FILENAME, broken / MODEL_FILENAME)
    (broken / CARD_FILENAME).write_text(json.dumps({**card, "version": 2, "task": "classification"}))
    return repo


@pytest.fixture(scope="module")
def scraped(repository, momenta):
    """Serve, send REQUESTS good requests of ROWS rows, one for an unknown model and one malformed, scrape."""
    with BackgroundServer(ServerSettings(repo=repository, port=0, metrics_port=0)) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            futures = [
                stub.ModelInfer.future(infer_request(momenta[i * ROWS : (i + 1) * ROWS])) for i in range(REQUESTS)
            ]
            for future in futures:
                future.result(timeout=60)
            for bad in (infer_request(momenta[:2], model_name="gg_qq"), infer_request(momenta[:0])):
                with pytest.raises(grpc.RpcError):
                    stub.ModelInfer(bad)
        with urllib.request.urlopen(server.metrics_url, timeout=30) as response:
            assert response.status == 200
            text = response.read().decode()
        provider = server.running.dataplane.repository.get(TINY_MODEL).provider
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return families, provider


def _value(families, family: str, sample: str | None = None, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {sample or family} {labels} in {families[family].samples}")


@pytest.mark.slow
def test_every_metric_is_scraped_with_its_type(scraped):
    families, _ = scraped
    for name, kind in METRIC_FAMILIES.items():
        assert name in families, f"{name} missing from /metrics"
        assert families[name].type == kind, f"{name} is a {families[name].type}, expected {kind}"
    assert all(name.startswith("calsurr_") for name in families)


@pytest.mark.slow
def test_request_counts_latencies_and_batches_after_traffic(scraped):
    families, _ = scraped
    model = {"model": TINY_MODEL, "version": "1"}
    assert _value(families, "calsurr_requests", "calsurr_requests_total", code="OK", **model) == REQUESTS
    # Unknown models are not a label value a client can invent; the malformed request is the model's.
    assert _value(families, "calsurr_requests", "calsurr_requests_total", code="NOT_FOUND", model="") == 1
    assert _value(families, "calsurr_requests", "calsurr_requests_total", code="INVALID_ARGUMENT", **model) == 1
    for latency in ("calsurr_request_duration_seconds", "calsurr_queue_duration_seconds"):
        assert _value(families, latency, f"{latency}_count", **model) == REQUESTS
        assert 0 < _value(families, latency, f"{latency}_sum", **model) < 60 * REQUESTS
    runs = _value(families, "calsurr_compute_duration_seconds", "calsurr_compute_duration_seconds_count", **model)
    assert 1 <= runs <= REQUESTS
    assert _value(families, "calsurr_batch_size_rows", "calsurr_batch_size_rows_count", **model) == runs
    assert _value(families, "calsurr_batch_size_rows", "calsurr_batch_size_rows_sum", **model) == REQUESTS * ROWS
    assert _value(families, "calsurr_batch_requests", "calsurr_batch_requests_sum", **model) == REQUESTS
    assert _value(families, "calsurr_queue_depth_requests", **model) == 0
    assert _value(families, "calsurr_inflight_requests") == 0


@pytest.mark.slow
def test_served_uncertainty_and_out_of_domain_count(scraped, relative_sigma):
    families, _ = scraped
    model = {"model": TINY_MODEL, "version": "1"}
    family = "calsurr_relative_uncertainty_ratio"
    assert _value(families, family, f"{family}_count", **model) == REQUESTS * ROWS
    assert _value(families, family, f"{family}_sum", **model) == pytest.approx(relative_sigma.sum(), rel=1e-9)
    assert _value(families, family, f"{family}_bucket", le="+Inf", **model) == REQUESTS * ROWS
    beyond = int((relative_sigma > np.median(relative_sigma)).sum())
    assert 0 < beyond < REQUESTS * ROWS
    assert _value(
        families, "calsurr_out_of_domain_predictions", "calsurr_out_of_domain_predictions_total", **model
    ) == (beyond)


@pytest.mark.slow
def test_models_loaded_load_failures_and_provider(scraped):
    families, provider = scraped
    assert _value(families, "calsurr_models_loaded", model=TINY_MODEL) == 1  # version 2 is broken
    assert _value(families, "calsurr_model_load_failures", "calsurr_model_load_failures_total", model=TINY_MODEL) == 1
    assert _value(families, "calsurr_execution_provider_info", model=TINY_MODEL, provider=provider) == 1
    assert _value(families, "calsurr_build_info") == 1


def test_the_readme_lists_every_metric():
    readme = README.read_text()
    for name, kind in METRIC_FAMILIES.items():
        exposed = {"counter": f"{name}_total", "info": f"{name}_info"}.get(kind, name)
        assert exposed in readme, f"README.md does not mention {exposed}"

"""Every RPC of the protocol through the unmodified tritonclient.grpc client (sync, asyncio and streaming)
against an in-process server, checking the answers: values against onnxruntime, configuration fields,
statistics counts, repository states, and UNIMPLEMENTED with a reason where an RPC does not apply."""

from __future__ import annotations

import asyncio
import json
import queue
import shutil

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import model_config_pb2 as triton_config

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.service.config import ServerSettings
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL
from tests.service.toy_model import TOY_MEMBERS, TOY_MODEL, toy_reference, write_toy_model

pytestmark = pytest.mark.slow
OUTPUTS = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
EXTENSIONS = ["model_configuration", "model_repository", "statistics", "parameters", "calsurr_card"]
ROWS = 8


@pytest.fixture(scope="module")
def repo(tiny_repository, tmp_path_factory):
    """A copy of the tiny repository (the tests load and unload) plus a toy model with per-member outputs."""
    copy = tmp_path_factory.mktemp("compat") / "repository"
    shutil.copytree(tiny_repository, copy)
    write_toy_model(copy)
    return copy


@pytest.fixture(scope="module")
def server(repo):
    with BackgroundServer(ServerSettings(repo=repo, port=0, metrics_port=0, log_level="warning")) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    client = triton.InferenceServerClient(url=server.address)
    yield client
    client.close()


@pytest.fixture(scope="module")
def momenta(tiny_run):
    return np.ascontiguousarray(tiny_run.test.momenta[:ROWS])


@pytest.fixture(scope="module")
def reference(repo, momenta):
    session = ort.InferenceSession(str(repo / TINY_MODEL / "1" / MODEL_FILENAME))
    return dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"momenta": momenta}), strict=True))


def _inputs(momenta: np.ndarray, name: str = "momenta") -> list[triton.InferInput]:
    tensor = triton.InferInput(name, list(momenta.shape), "FP64")
    tensor.set_data_from_numpy(momenta)
    return [tensor]


def _status(error: triton.InferenceServerException) -> str:
    return error.status() or ""


def _statistics(client, model: str = TINY_MODEL) -> dict:
    (stats,) = client.get_inference_statistics(model, as_json=True)["model_stats"]
    return stats


def _count(stats: dict, *path: str) -> int:
    """A counter from tritonclient's JSON (proto3 JSON leaves zeros out and writes uint64 as strings)."""
    value = stats
    for key in path:
        value = value.get(key, {}) if isinstance(value, dict) else {}
    return int(value) if value != {} else 0


# -- health and metadata --


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(TINY_MODEL) and client.is_model_ready(TINY_MODEL, "1")
    assert not client.is_model_ready(TINY_MODEL, "7") and not client.is_model_ready("gg_qq")
    metadata = client.get_server_metadata()
    assert metadata.name == "calsurr" and list(metadata.extensions) == EXTENSIONS
    model = client.get_model_metadata(TINY_MODEL)
    assert (model.name, list(model.versions), model.platform) == (TINY_MODEL, ["1"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("momenta", "FP64", [-1, 4, 4])]


# -- inference: sync, asyncio, streaming --


def test_sync_infer_equals_onnxruntime(client, momenta, reference):
    result = client.infer(TINY_MODEL, _inputs(momenta), request_id="sync-1")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (TINY_MODEL, "1", "sync-1")
    for name in OUTPUTS:
        np.testing.assert_array_equal(result.as_numpy(name), reference[name])
    subset = client.infer(TINY_MODEL, _inputs(momenta), outputs=[triton.InferRequestedOutput("sigma_stat")])
    np.testing.assert_array_equal(subset.as_numpy("sigma_stat"), reference["sigma_stat"])
    assert subset.as_numpy("mean") is None


def test_asyncio_client_infers_and_reads_every_answer(server, momenta, reference):
    async def session():
        async with triton_aio.InferenceServerClient(url=server.address) as client:
            assert await client.is_server_live() and await client.is_model_ready(TINY_MODEL)
            results = await asyncio.gather(*(client.infer(TINY_MODEL, _inputs(momenta)) for _ in range(4)))
            config = await client.get_model_config(TINY_MODEL)
            index = await client.get_model_repository_index()
            stats = await client.get_inference_statistics(TINY_MODEL)
            return results, config, index, stats

    results, config, index, stats = asyncio.run(session())
    for result in results:
        for name in OUTPUTS:
            np.testing.assert_array_equal(result.as_numpy(name), reference[name])
    assert config.config.name == TINY_MODEL and config.config.platform == "onnxruntime_onnx"
    assert (TINY_MODEL, "1", "READY") in {(m.name, m.version, m.state) for m in index.models}
    assert stats.model_stats[0].inference_count >= 4 * ROWS


def test_stream_answers_every_request_in_order_and_survives_a_bad_one(client, momenta, reference):
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(6):
            if i == 3:  # wrong shape: answered with an error, and the stream goes on
                client.async_stream_infer(TINY_MODEL, _inputs(np.zeros((2, 5, 4))), request_id="bad")
            else:
                client.async_stream_infer(TINY_MODEL, _inputs(momenta[: i + 1]), request_id=f"r{i}")
        got = [answers.get(timeout=30) for _ in range(6)]
    finally:
        client.stop_stream()
    for i, (result, error) in enumerate(got):
        if i == 3:
            assert result is None and "INVALID_ARGUMENT" in str(error) and "[-1, 4, 4]" in str(error)
            continue
        assert error is None, error
        assert result.get_response().id == f"r{i}"
        # i + 1 rows against the reference's 8: onnxruntime's vectorised kernels may round a short batch's tail
        # differently in the last place (bit for bit holds only for whole multiples of 8, test_batcher.py).
        np.testing.assert_allclose(result.as_numpy("mean"), reference["mean"][: i + 1], rtol=1e-14, atol=0)


def test_asyncio_stream(server, momenta, reference):
    async def requests():
        for i in range(5):
            yield {"model_name": TINY_MODEL, "inputs": _inputs(momenta), "request_id": f"a{i}"}

    async def session():
        async with triton_aio.InferenceServerClient(url=server.address) as client:
            return [answer async for answer in client.stream_infer(requests())]

    answers = asyncio.run(session())
    assert [result.get_response().id for result, _ in answers] == [f"a{i}" for i in range(5)]
    for result, error in answers:
        assert error is None
        np.testing.assert_array_equal(result.as_numpy("sigma_tot"), reference["sigma_tot"])


# -- parameters --


def test_members_parameter_returns_the_graphs_per_member_outputs(client):
    x = np.random.default_rng(3).normal(1.0, 0.2, size=(5, TOY_MEMBERS))
    plain = client.infer(TOY_MODEL, _inputs(x, "x"))
    assert plain.as_numpy("member_mean") is None  # only on request
    result = client.infer(TOY_MODEL, _inputs(x, "x"), parameters={"members": True})
    expected = toy_reference(x)
    for name, values in expected.items():
        np.testing.assert_allclose(result.as_numpy(name), values, rtol=1e-12)
    assert result.as_numpy("member_sigma").shape == (5, TOY_MEMBERS)


def test_members_parameter_on_a_graph_without_them_is_refused(client, momenta):
    with pytest.raises(triton.InferenceServerException) as error:
        client.infer(TINY_MODEL, _inputs(momenta), parameters={"members": True})
    assert _status(error.value) == "StatusCode.INVALID_ARGUMENT"
    assert "parameter 'members'" in error.value.message() and "member_mean" in error.value.message()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"parameters": {"temperature": 0.5}}, "['temperature']"),
        ({"parameters": {"members": "yes"}}, "'members' expects a bool"),
    ],
)
def test_unknown_or_mistyped_parameters_are_refused_naming_the_known_ones(client, momenta, kwargs, named):
    with pytest.raises(triton.InferenceServerException) as error:
        client.infer(TINY_MODEL, _inputs(momenta), **kwargs)
    assert _status(error.value) == "StatusCode.INVALID_ARGUMENT"
    assert named in error.value.message()
    if "expects" not in named:
        assert "'members'" in error.value.message() and "'timeout'" in error.value.message()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"priority": 2},
        {"sequence_id": 7, "sequence_start": True},
        {"sequence_id": "chain", "sequence_end": True},
        {"priority": 1, "timeout": 30_000_000, "sequence_id": 3},
    ],
)
def test_what_tritonclient_puts_on_a_request_is_accepted_and_changes_no_answer(client, momenta, reference, kwargs):
    result = client.infer(TINY_MODEL, _inputs(momenta), **kwargs)
    for name in OUTPUTS:
        np.testing.assert_array_equal(result.as_numpy(name), reference[name])


def test_a_stream_with_empty_final_responses_enabled_gets_one_final_answer_per_request(client, momenta, reference):
    """Triton marks every stream response `triton_final_response`; a non-decoupled model sends no empty one."""
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(3):
            client.async_stream_infer(
                TINY_MODEL, _inputs(momenta), request_id=f"f{i}", enable_empty_final_response=True, priority=1
            )
        got = [answers.get(timeout=30) for _ in range(3)]
        assert answers.empty()  # nothing more will come: stop_stream below would fail on a late answer
    finally:
        client.stop_stream()
    for i, (result, error) in enumerate(got):
        assert error is None, error
        response = result.get_response()
        assert response.id == f"f{i}" and response.parameters["triton_final_response"].bool_param is True
        np.testing.assert_array_equal(result.as_numpy("mean"), reference["mean"])


def test_timeout_parameter_is_honoured(client, momenta, reference):
    result = client.infer(TINY_MODEL, _inputs(momenta), timeout=30_000_000)  # microseconds
    np.testing.assert_array_equal(result.as_numpy("mean"), reference["mean"])


def test_tensor_parameters_of_missing_extensions_are_refused(client, momenta):
    output = triton.InferRequestedOutput("mean", class_count=2)  # the classification extension
    with pytest.raises(triton.InferenceServerException, match="no classification") as error:
        client.infer(TINY_MODEL, _inputs(momenta), outputs=[output])
    assert _status(error.value) == "StatusCode.INVALID_ARGUMENT"


# -- model configuration --


def test_model_config_describes_the_model_as_triton_does(server, client, repo):
    config = client.get_model_config(TINY_MODEL).config
    model = server.running.dataplane.repository.get(TINY_MODEL)
    assert (config.name, config.platform, config.backend) == (TINY_MODEL, "onnxruntime_onnx", "onnxruntime")
    assert config.max_batch_size == server.settings.max_batch_size
    assert config.default_model_filename == MODEL_FILENAME
    assert config.version_policy.WhichOneof("policy_choice") == "latest"
    assert config.version_policy.latest.num_versions == 1
    ((name, data_type, dims),) = [(t.name, t.data_type, list(t.dims)) for t in config.input]
    assert (name, data_type, dims) == ("momenta", triton_config.TYPE_FP64, [4, 4])  # no batch dimension
    assert [o.name for o in config.output] == list(OUTPUTS)
    for output in config.output:  # shape [batch]: dims [1], reshaped to []
        assert output.data_type == triton_config.TYPE_FP64 and list(output.dims) == [1]
        assert output.HasField("reshape") and list(output.reshape.shape) == []
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.dynamic_batching.max_queue_delay_microseconds == server.settings.max_queue_delay_us
    assert config.dynamic_batching.default_queue_policy.max_queue_size == server.settings.max_queue_size
    assert list(config.dynamic_batching.preferred_batch_size) == [server.settings.preferred_batch_size]
    (group,) = config.instance_group
    gpu = model.provider != "CPUExecutionProvider"
    kind = triton_config.ModelInstanceGroup.KIND_GPU if gpu else triton_config.ModelInstanceGroup.KIND_CPU
    assert (group.kind, group.count) == (kind, server.settings.instances)
    assert config.parameters["execution_provider"].string_value == model.provider
    card = ModelCard.model_validate_json(config.parameters["calsurr_card"].string_value)
    assert card == ModelCard.read(repo / TINY_MODEL / "1" / CARD_FILENAME)


def test_model_config_as_json_and_errors(client):
    config = client.get_model_config(TINY_MODEL, as_json=True)["config"]
    assert config["input"][0]["data_type"] == "TYPE_FP64" and config["max_batch_size"] > 0
    assert json.loads(config["parameters"]["calsurr_card"]["string_value"])["domain"]
    with pytest.raises(triton.InferenceServerException) as error:
        client.get_model_config("gg_qq")
    assert _status(error.value) == "StatusCode.NOT_FOUND"


# -- statistics --


def test_statistics_count_exactly_the_requests_made(client, momenta):
    before = _statistics(client)
    for _ in range(3):
        client.infer(TINY_MODEL, _inputs(momenta[:5]))
    with pytest.raises(triton.InferenceServerException):
        client.infer(TINY_MODEL, _inputs(np.zeros((5, 5, 4))))
    after = _statistics(client)
    assert (after["name"], after["version"]) == (TINY_MODEL, "1")
    assert _count(after, "inference_count") - _count(before, "inference_count") == 15
    assert _count(after, "execution_count") - _count(before, "execution_count") == 3  # one at a time: one run each
    for phase in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert _count(after, "inference_stats", phase, "count") - _count(before, "inference_stats", phase, "count") == 3
        assert _count(after, "inference_stats", phase, "ns") > _count(before, "inference_stats", phase, "ns")
    assert _count(after, "inference_stats", "fail", "count") - _count(before, "inference_stats", "fail", "count") == 1
    # perf_analyzer refuses statistics whose three compute counts differ ("compute counts must be the same")
    phases = [_count(after, "inference_stats", f"compute_{p}", "count") for p in ("input", "infer", "output")]
    assert len(set(phases)) == 1, phases
    (batch_of_5,) = [b for b in after["batch_stats"] if int(b["batch_size"]) == 5]
    runs_of_5 = [_count(batch_of_5, f"compute_{p}", "count") for p in ("input", "infer", "output")]
    assert runs_of_5[0] >= 3 and len(set(runs_of_5)) == 1
    assert int(after["last_inference"]) >= int(before.get("last_inference", 0))


def test_statistics_of_every_model_and_unknown_ones(client):
    every = client.get_inference_statistics()
    assert {(s.name, s.version) for s in every.model_stats} == {(TINY_MODEL, "1"), (TOY_MODEL, "1")}
    for name, version in (("gg_qq", ""), (TINY_MODEL, "9")):
        with pytest.raises(triton.InferenceServerException) as error:
            client.get_inference_statistics(name, version)
        assert _status(error.value) == "StatusCode.NOT_FOUND"


# -- repository --


def _index(client) -> dict[tuple[str, str], tuple[str, str]]:
    return {(m.name, m.version): (m.state, m.reason) for m in client.get_model_repository_index().models}


def test_repository_index_unload_and_load(server, client):
    assert _index(client)[(TOY_MODEL, "1")] == ("READY", "")
    client.unload_model(TOY_MODEL)
    assert not client.is_model_ready(TOY_MODEL)
    state, reason = _index(client)[(TOY_MODEL, "1")]
    assert state == "UNAVAILABLE" and "unloaded" in reason
    with grpc.insecure_channel(server.address) as channel:  # `ready` is not in tritonclient's signature
        ready_only = pb_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(pb.RepositoryIndexRequest(ready=True))
    assert [(m.name, m.version, m.state) for m in ready_only.models] == [(TINY_MODEL, "1", "READY")]
    with pytest.raises(triton.InferenceServerException) as error:
        client.infer(TOY_MODEL, _inputs(np.ones((1, TOY_MEMBERS)), "x"))
    assert _status(error.value) == "StatusCode.NOT_FOUND"
    client.load_model(TOY_MODEL)
    assert client.is_model_ready(TOY_MODEL) and _index(client)[(TOY_MODEL, "1")] == ("READY", "")
    result = client.infer(TOY_MODEL, _inputs(np.ones((1, TOY_MEMBERS)), "x"))
    np.testing.assert_allclose(result.as_numpy("mean"), [1.0])


def test_loading_a_broken_new_version_fails_and_the_old_one_serves(client, repo):
    broken = repo / TOY_MODEL / "2"
    shutil.copytree(repo / TOY_MODEL / "1", broken)
    (broken / CARD_FILENAME).write_text((broken / CARD_FILENAME).read_text().replace('"version": 1', '"version": 2'))
    (broken / MODEL_FILENAME).write_bytes(b"not an onnx graph")
    try:
        with pytest.raises(triton.InferenceServerException) as error:
            client.load_model(TOY_MODEL)
        assert _status(error.value) == "StatusCode.FAILED_PRECONDITION"
        assert "version 2" in error.value.message()
        state, reason = _index(client)[(TOY_MODEL, "2")]
        assert state == "UNAVAILABLE" and "failed to load" in reason
        assert client.is_model_ready(TOY_MODEL, "1") and not client.is_model_ready(TOY_MODEL, "2")
    finally:
        shutil.rmtree(broken)
    client.load_model(TOY_MODEL)
    assert (TOY_MODEL, "2") not in _index(client)


def test_repository_requests_that_cannot_be_honoured(client):
    for call in (client.load_model, client.unload_model):
        with pytest.raises(triton.InferenceServerException) as error:
            call("gg_qq")
        assert _status(error.value) == "StatusCode.NOT_FOUND"
    with pytest.raises(triton.InferenceServerException) as error:
        client.load_model(TOY_MODEL, config='{"max_batch_size": 8}')
    assert _status(error.value) == "StatusCode.UNIMPLEMENTED" and "repository folder" in error.value.message()
    assert client.is_model_ready(TOY_MODEL)


# -- what does not apply --


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda c: c.get_system_shared_memory_status(), "shared-memory"),
        (lambda c: c.register_system_shared_memory("region", "/key", 64), "shared-memory"),
        (lambda c: c.unregister_system_shared_memory(), "shared-memory"),
        (lambda c: c.get_cuda_shared_memory_status(), "shared-memory"),
        (lambda c: c.unregister_cuda_shared_memory(), "shared-memory"),
        (lambda c: c.get_trace_settings(), "trace extension"),
        (lambda c: c.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}), "trace extension"),
        (lambda c: c.get_log_settings(), "logging extension"),
        (lambda c: c.update_log_settings(settings={"log_verbose_level": 1}), "logging extension"),
    ],
)
def test_rpcs_that_do_not_apply_are_unimplemented_with_a_reason(client, call, reason):
    with pytest.raises(triton.InferenceServerException) as error:
        call(client)
    assert _status(error.value) == "StatusCode.UNIMPLEMENTED"
    assert reason in error.value.message()

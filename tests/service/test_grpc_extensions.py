"""ModelConfig built from a configuration: the branches a CPU-only test server never takes (GPU, batching
off, other version policies), checked by parsing with tritonclient's own descriptors."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as triton_config

from calsurr.service.batcher import BatchingPolicy
from calsurr.service.dataplane import ModelConfiguration
from calsurr.service.grpc_extensions import encode_model_config
from calsurr.service.repository import VersionPolicy
from tests.service.toy_model import toy_card


def _config(**changes) -> triton_config.ModelConfig:
    card = toy_card()
    fields = dict(
        name=card.name,
        version=1,
        platform="onnxruntime_onnx",
        backend="onnxruntime",
        model_filename="model.onnx",
        inputs=card.inputs,
        outputs=card.outputs,
        policy=BatchingPolicy(),
        version_policy=VersionPolicy(),
        provider="CUDAExecutionProvider",
        gpu_id=1,
        parameters={"execution_provider": "CUDAExecutionProvider"},
    )
    message = encode_model_config(ModelConfiguration(**{**fields, **changes}))
    return triton_config.ModelConfig.FromString(message.SerializeToString())


def test_a_gpu_session_is_a_gpu_instance_group_on_its_device():
    (group,) = _config(policy=BatchingPolicy(instances=3)).instance_group
    assert (group.kind, group.count, list(group.gpus)) == (triton_config.ModelInstanceGroup.KIND_GPU, 3, [1])
    (group,) = _config(provider="CPUExecutionProvider", gpu_id=None).instance_group
    assert (group.kind, list(group.gpus)) == (triton_config.ModelInstanceGroup.KIND_CPU, [])


def test_batching_off_has_no_dynamic_batcher_and_the_limit_stays():
    config = _config(policy=BatchingPolicy(enabled=False, max_batch_size=128))
    assert config.WhichOneof("scheduling_choice") is None and config.max_batch_size == 128


def test_dims_leave_out_the_batch_dimension():
    config = _config()
    assert [(t.name, list(t.dims), t.HasField("reshape")) for t in config.input] == [("x", [3], False)]
    members = {t.name: list(t.dims) for t in config.output if t.name.startswith("member_")}
    assert members == {"member_mean": [3], "member_sigma": [3]}


def test_version_policies():
    assert _config(version_policy=VersionPolicy(kind="all")).version_policy.WhichOneof("policy_choice") == "all"
    specific = _config(version_policy=VersionPolicy(kind="specific", versions=(1, 3))).version_policy
    assert list(specific.specific.versions) == [1, 3]
    assert _config(version_policy=VersionPolicy(num_versions=2)).version_policy.latest.num_versions == 2

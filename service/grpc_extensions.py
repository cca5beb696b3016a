"""The protocol extensions' messages: model configuration, statistics and repository index, built from what
the data plane decides, and protocol parameters turned into plain Python values.

Conversion only; nothing here chooses what a model's configuration or statistics are.
"""

from __future__ import annotations

from collections.abc import Mapping

from calsurr.service.card import TensorSpec
from calsurr.service.dataplane import ModelConfiguration
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import model_config_pb2 as mc
from calsurr.service.repository import IndexEntry, VersionPolicy
from calsurr.service.statistics import Duration, VersionStatistics

DATATYPE_TO_CONFIG = {"FP32": mc.TYPE_FP32, "FP64": mc.TYPE_FP64}
INT32_MAX = 2**31 - 1  # ModelConfig.max_batch_size is an int32


def decode_parameters(parameters: Mapping[str, pb.InferParameter]) -> dict[str, object]:
    """Request parameters as Python values (bool, int, str, float); a parameter with no value set is None."""
    return {key: _value(param) for key, param in parameters.items()}


def _value(param) -> object:
    choice = param.WhichOneof("parameter_choice")
    return None if choice is None else getattr(param, choice)


def _dims(spec: TensorSpec) -> tuple[list[int], list[int] | None]:
    """Triton's dims leave out the batch dimension and may not be empty: a tensor that is only its batch,
    shape [batch], is dims [1] with reshape [] (what the model really takes)."""
    dims = list(spec.shape[1:])
    return (dims, None) if dims else ([1], [])


def _config_tensor(message_type: type, spec: TensorSpec):
    """A ModelInput or ModelOutput (same fields) for one card tensor."""
    dims, reshape = _dims(spec)
    tensor = message_type(name=spec.name, data_type=DATATYPE_TO_CONFIG[spec.datatype], dims=dims)
    if reshape is not None:
        tensor.reshape.SetInParent()
    return tensor


def _version_policy(policy: VersionPolicy) -> mc.ModelVersionPolicy:
    if policy.kind == "latest":
        return mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=policy.num_versions))
    if policy.kind == "specific":
        return mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(versions=policy.versions))
    return mc.ModelVersionPolicy(all=mc.ModelVersionPolicy.All())


def encode_model_config(config: ModelConfiguration) -> mc.ModelConfig:
    batching = config.policy
    message = mc.ModelConfig(
        name=config.name,
        platform=config.platform,
        backend=config.backend,
        version_policy=_version_policy(config.version_policy),
        max_batch_size=min(batching.max_batch_size, INT32_MAX),
        input=[_config_tensor(mc.ModelInput, s) for s in config.inputs],
        output=[_config_tensor(mc.ModelOutput, s) for s in config.outputs],
        default_model_filename=config.model_filename,
    )
    if batching.enabled:
        message.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
        message.dynamic_batching.preferred_batch_size.append(min(batching.preferred_batch_size, INT32_MAX))
        queue = message.dynamic_batching.default_queue_policy
        queue.max_queue_size = batching.max_queue_size
        queue.allow_timeout_override = True  # the request parameter `timeout`
    on_gpu = config.gpu_id is not None
    message.instance_group.add(
        name=f"{config.name}_0",
        kind=mc.ModelInstanceGroup.KIND_GPU if on_gpu else mc.ModelInstanceGroup.KIND_CPU,
        count=batching.instances,
        gpus=[config.gpu_id] if on_gpu else [],
    )
    for key, value in config.parameters.items():
        message.parameters[key].string_value = value
    return message


def _duration(duration: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=duration.count, ns=duration.ns)


def encode_statistics(stats: VersionStatistics) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=stats.name,
        version=stats.version,
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute.input),
            compute_infer=_duration(stats.compute.infer),
            compute_output=_duration(stats.compute.output),
        ),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=rows,
                compute_input=_duration(runs.input),
                compute_infer=_duration(runs.infer),
                compute_output=_duration(runs.output),
            )
            for rows, runs in stats.batches.items()
        ],
    )


def encode_index(rows: list[IndexEntry]) -> pb.RepositoryIndexResponse:
    return pb.RepositoryIndexResponse(
        models=[
            pb.RepositoryIndexResponse.ModelIndex(name=r.name, version=r.version, state=r.state, reason=r.reason)
            for r in rows
        ]
    )

"""What the server does, free of any transport: health, metadata and inference on numpy arrays.

The gRPC servicer only converts messages and calls this; requests are checked against the model's card here,
so a bad request fails with a message naming what the model expects, before it reaches onnxruntime.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from calsurr.service import __version__
from calsurr.service.batcher import BatchingPolicy, DynamicBatcher
from calsurr.service.card import MODEL_FILENAME, ModelCard, TensorSpec
from calsurr.service.errors import CalsurrError, InvalidInput, ModelNotFound, Unimplemented
from calsurr.service.logs import REQUEST_ID
from calsurr.service.metrics import ServerMetrics
from calsurr.service.repository import IndexEntry, ModelRepository, RepositoryChange, VersionPolicy
from calsurr.service.request_options import MICROSECONDS, parse_parameters, select_outputs
from calsurr.service.runtime import DATATYPE_TO_NUMPY, OnnxModel
from calsurr.service.statistics import VersionStatistics

log = logging.getLogger(__name__)

SERVER_NAME = "calsurr"
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
# Protocol extensions implemented, by the names the specification gives them; "calsurr_card" is our own
# (the calsurr.v1.ModelCardService beside the standard service).
EXTENSIONS = ("model_configuration", "model_repository", "statistics", "parameters", "calsurr_card")
Inputs = Mapping[str, np.ndarray]
# Refusals worth an info line: the client sent something wrong and its author will want to find out why.
CLIENT_MISTAKES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND"})
INFER_METHODS = frozenset({"ModelInfer", "ModelStreamInfer"})  # RPCs counted in calsurr_requests_total


@dataclass(frozen=True)
class InferenceResult:
    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    card: ModelCard


@dataclass(frozen=True)
class ModelConfiguration:
    """A model version as Triton's model configuration describes it: what it takes and how it is served."""

    name: str
    version: int
    platform: str
    backend: str
    model_filename: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    policy: BatchingPolicy
    version_policy: VersionPolicy
    provider: str
    gpu_id: int | None  # None: runs on the CPU
    parameters: dict[str, str] = field(default_factory=dict)


def validate_inputs(card: ModelCard, inputs: Inputs) -> None:
    """Names, datatypes, shapes and values of a request against the card; one shared batch size >= 1."""
    expected = {spec.name: spec for spec in card.inputs}
    if set(inputs) != set(expected):
        raise InvalidInput(f"model '{card.name}' expects inputs {sorted(expected)}, got {sorted(inputs)}")
    batch_sizes = set()
    for name, array in inputs.items():
        spec = expected[name]
        if array.dtype != DATATYPE_TO_NUMPY[spec.datatype]:
            raise InvalidInput(f"input '{name}' expects datatype {spec.datatype}, got {array.dtype.name}")
        if array.ndim != len(spec.shape) or any(s not in (-1, a) for s, a in zip(spec.shape, array.shape)):
            raise InvalidInput(f"input '{name}' expects shape {list(spec.shape)}, got {list(array.shape)}")
        batch_sizes.add(array.shape[0])
        if not np.isfinite(array).all():
            raise InvalidInput(f"input '{name}' holds NaN or infinite values")
    if len(batch_sizes) != 1:
        raise InvalidInput(f"inputs disagree on the batch size: {sorted(batch_sizes)}")
    if batch_sizes.pop() == 0:
        raise InvalidInput("empty batch: inputs have 0 rows")


class DataPlane:
    """Health, metadata and inference over a repository; inference goes through one batcher per model version."""

    def __init__(
        self,
        repository: ModelRepository,
        policy: BatchingPolicy | None = None,
        metrics: ServerMetrics | None = None,
    ):
        self.repository = repository
        self.policy = policy or BatchingPolicy()
        self.metrics = metrics or ServerMetrics()
        self._batchers: dict[tuple[str, int], tuple[OnnxModel, DynamicBatcher]] = {}
        self._retiring: set[asyncio.Task] = set()
        # Per (model, version, code): the request counter, duration histogram and statistics recorder.
        self._series: dict[tuple[str, str, str], tuple] = {}
        repository.subscribe(self._on_repository_change)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once every model in the repository has a ready version."""
        return all(self.repository.is_ready(name) for name in self.repository.names())

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.repository.is_ready(name, version)

    def server_metadata(self) -> tuple[str, str, list[str]]:
        """Name, version, and the protocol extensions implemented."""
        return SERVER_NAME, __version__, list(EXTENSIONS)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self.repository.get(name, version)
        entry = self.repository.entry(name)
        return ModelMetadata(
            name=name,
            versions=[str(v) for v in sorted(entry.ready)],
            platform=PLATFORM,
            inputs=model.card.inputs,
            outputs=model.card.outputs,
            card=model.card,
        )

    def card(self, name: str, version: str = "") -> ModelCard:
        return self.repository.get(name, version).card

    def model_config(self, name: str, version: str = "") -> ModelConfiguration:
        """Triton-style configuration of a model version: its card's tensors and this server's settings."""
        model = self.repository.get(name, version)
        card = model.card
        return ModelConfiguration(
            name=name,
            version=card.version,
            platform=PLATFORM,
            backend=BACKEND,
            model_filename=MODEL_FILENAME,
            inputs=card.inputs,
            outputs=card.outputs,
            policy=self.policy,
            version_policy=self.repository.entry(name).policy,
            provider=model.provider,
            gpu_id=model.gpu_id,
            # Triton-only clients read the card here: units, domain and calibration.
            parameters={"execution_provider": model.provider, "calsurr_card": card.model_dump_json()},
        )

    def statistics(self, name: str = "", version: str = "") -> list[VersionStatistics]:
        """Counters of every ready version of one model (or of every model), or of one version."""
        if not name:
            if version:
                raise InvalidInput(f"statistics of version '{version}' need a model name")
            names = self.repository.names()
        else:
            if version:
                self.repository.get(name, version)  # NOT_FOUND for a version that is not ready
                return [self.metrics.statistics.snapshot(name, str(int(version)))]
            names = [name]
        found = []
        for model_name in names:
            try:
                versions = sorted(self.repository.entry(model_name).ready)
            except ModelNotFound:
                if name:
                    raise
                continue  # unloaded meanwhile
            found += [self.metrics.statistics.snapshot(model_name, str(v)) for v in versions]
        return found

    def check_repository_name(self, repository_name: str) -> None:
        """The repository RPCs may name a repository: calsurr serves one, named by its folder."""
        if repository_name not in ("", self.repository.root.name):
            raise ModelNotFound(
                f"unknown repository '{repository_name}'; this server serves one, '{self.repository.root.name}' "
                "(or leave repository_name empty)"
            )

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every model version on disk or served, with its state and why (RepositoryIndex)."""
        return [row for row in self.repository.index() if row.state == "READY" or not ready_only]

    async def load_model(self, name: str, parameters: Mapping[str, object] | None = None) -> None:
        """Load, or reload, a model by name; raises ModelLoadFailed when a version failed (the others serve).

        Triton's override parameters (`config`, `file:<path>`) would load a model that is not in the
        repository; calsurr serves only what export published there, with its card, so they are refused.
        """
        overrides = sorted(k for k in parameters or {} if k == "config" or k.startswith("file:"))
        if overrides:
            raise Unimplemented(
                f"load parameters {overrides}: calsurr loads models only from its repository folder, with their "
                "cards; publish the model there (calsurr export) and load it by name"
            )
        if parameters:
            raise InvalidInput(f"unknown load parameters {sorted(parameters)}; RepositoryModelLoad takes none")
        await self.repository.load_model(name)

    async def unload_model(self, name: str, parameters: Mapping[str, object] | None = None) -> None:
        """Stop serving a model; its queued requests are answered first (see `_on_repository_change`).
        `unload_dependents` is accepted and changes nothing: no calsurr model depends on another."""
        unknown = sorted(set(parameters or {}) - {"unload_dependents"})
        if unknown:
            raise InvalidInput(
                f"unknown unload parameters {unknown}; RepositoryModelUnload knows ['unload_dependents']"
            )
        await self.repository.unload_model(name)

    async def _on_repository_change(self, change: RepositoryChange) -> None:
        """Versions that stopped serving: their batchers finish what they hold, then stop."""
        await asyncio.gather(*(self.release(name, version) for name, version in change.removed))

    def refuse_unparsed(self, method: str, error: InvalidInput) -> InvalidInput:
        """Account for a request message that did not parse (the transport says which RPC and why): counted, an
        inference one in calsurr_requests_total too, under no model, and logged in one line at info."""
        self.metrics.undecodable.labels(method).inc()
        if method in INFER_METHODS:
            self._account(("", ""), error.status_code.name, time.perf_counter(), 0, error)
        else:
            log.info("%s refused: %s", method, error, extra={"code": error.status_code.name})
        return error

    async def infer(
        self,
        name: str,
        version: str,
        inputs: Inputs | Callable[[], Inputs],
        outputs: list[str] | None = None,
        *,
        parameters: Mapping[str, object] | None = None,
        deadline: float | None = None,
        request_id: str = "",
    ) -> InferenceResult:
        """Check a request against the card, queue it in its model's batcher, and account for it.

        `inputs` may be a callable that decodes them, so that a malformed message is counted and logged with
        its request id like any other failure. `parameters` are the request's (REQUEST_PARAMETERS in
        request_options). `deadline` is in `time.monotonic()` seconds.
        """
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        labels = ("", "")  # metric labels; a client's made-up model names must not create label sets
        rows = 0
        self.metrics.inflight.inc()
        try:
            model = self.repository.get(name, version)
            card = model.card
            labels = (name, str(card.version))
            options = parse_parameters(parameters)
            if options.timeout_us is not None:
                timeout_at = time.monotonic() + options.timeout_us * MICROSECONDS
                deadline = timeout_at if deadline is None else min(deadline, timeout_at)
            arrays = inputs() if callable(inputs) else inputs
            validate_inputs(card, arrays)
            rows = len(next(iter(arrays.values())))
            selected = select_outputs(card, outputs, options.members)
            result = await self._batcher(model).submit(arrays, selected, deadline)
        except BaseException as exc:
            if labels[0] == "" and name in self.repository.names():  # known model, unknown version
                labels = (name, "")
            self._account(labels, _status_of(exc, deadline), started, rows, exc)
            raise
        else:
            self._account(labels, "OK", started, rows)
            return InferenceResult(name, str(card.version), result)
        finally:
            self.metrics.inflight.dec()
            REQUEST_ID.reset(token)

    def _account(
        self, labels: tuple[str, str], code: str, started: float, rows: int, exc: BaseException | None = None
    ) -> None:
        seconds = time.perf_counter() - started
        key = (*labels, code)
        series = self._series.get(key)
        if series is None:  # label lookups take a lock each: done once per model, version and code
            series = self._series[key] = (
                self.metrics.requests.labels(*key),
                self.metrics.request_seconds.labels(*labels) if code == "OK" else None,
                self.metrics.statistics.recorder(*labels) if labels[1] else None,  # known version: statistics
            )
        requests, request_seconds, recorder = series
        requests.inc()
        if request_seconds is not None:
            request_seconds.observe(seconds)
        if recorder is not None:
            recorder.record_request(code == "OK", rows, seconds)
        if code == "OK" and not log.isEnabledFor(logging.DEBUG):
            return
        fields = {"model": labels[0], "version": labels[1], "code": code, "rows": rows, "seconds": round(seconds, 6)}
        if code == "INTERNAL":
            log.error("infer failed: %s", exc, extra=fields, exc_info=exc)
        elif code in CLIENT_MISTAKES:
            log.info("infer refused: %s", exc, extra=fields)
        else:  # answered, or turned away under load: metrics count these, a log line each would flood
            log.debug("infer %s%s", code.lower(), f": {exc}" if exc is not None and str(exc) else "", extra=fields)

    def _batcher(self, model: OnnxModel) -> DynamicBatcher:
        """The batcher of this model object; a reloaded version gets a new one and the old one drains."""
        key = (model.card.name, model.card.version)
        current = self._batchers.get(key)
        if current is not None and current[0] is model:
            return current[1]
        if current is not None:
            self._retire(current[1])
        metrics = self.metrics.for_model(
            key[0], str(key[1]), model.card.out_of_domain_relative_sigma, self.policy.max_queue_size
        )
        batcher = DynamicBatcher(model, self.policy, metrics, name=f"{key[0]}:{key[1]}")
        self._batchers[key] = (model, batcher)
        return batcher

    def _retire(self, batcher: DynamicBatcher) -> None:
        task = asyncio.get_running_loop().create_task(batcher.close())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def release(self, name: str, version: int) -> None:
        """For an unloaded version: its batcher finishes what it holds, then its runner threads end."""
        current = self._batchers.pop((name, version), None)
        if current is not None:
            await current[1].close()

    async def close(self) -> None:
        """Let every batcher finish what it holds, then stop its runners."""
        batchers = [b for _, b in self._batchers.values()]
        self._batchers.clear()
        await asyncio.gather(*(b.close() for b in batchers), *self._retiring)


def _status_of(exc: BaseException, deadline: float | None) -> str:
    """The gRPC status name a failed request ends with, for metrics and logs."""
    if isinstance(exc, CalsurrError):
        return exc.status_code.name
    if isinstance(exc, asyncio.CancelledError):
        # gRPC cancels the handler when the client's deadline passes, as when the client cancels.
        expired = deadline is not None and time.monotonic() >= deadline
        return "DEADLINE_EXCEEDED" if expired else "CANCELLED"
    return "INTERNAL"

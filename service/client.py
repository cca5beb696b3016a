"""Python client for calsurr (and any Open Inference Protocol server): numpy in, numpy out.

with InferenceClient("127.0.0.1:8001") as client:
    result = client.predict("gg_gg", momenta)      # momenta: (N, 4, 4) float64, GeV
    result.mean, result.sigma_stat, result.sigma_syst, result.sigma_tot

async with AsyncInferenceClient("127.0.0.1:8001") as client:   # the same on grpc.aio
    result = await client.predict("gg_gg", momenta, timeout=2.0)

for result in client.stream_predict("gg_gg", batches):   # one ModelStreamInfer call for a generator loop
    ...
client.card("gg_gg").calibration                         # the model card: units, domain, calibration

Every call has a deadline (`timeout` seconds, per call or the client's default) that bounds all its attempts.
A call that fails with UNAVAILABLE (server restarting, connection lost, model shutting down) is retried
with exponential backoff and jitter, at most `RetryPolicy.max_attempts` times and never past the deadline;
no other status is retried: INVALID_ARGUMENT, NOT_FOUND and the like would fail the same way again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np

from calsurr.service.card import ModelCard
from calsurr.service.config import DEFAULT_MAX_MESSAGE_BYTES
from calsurr.service.grpc_codec import decode_outputs, encode_inputs
from calsurr.service.protocol import calsurr_card_pb2 as card_pb
from calsurr.service.protocol import calsurr_card_pb2_grpc as card_pb_grpc
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
Response = TypeVar("Response")
Parameter = bool | int | float | str


@dataclass(frozen=True)
class Prediction:
    """A surrogate's answer in physical units: the mean and its two uncertainties (one sigma)."""

    mean: np.ndarray
    sigma_stat: np.ndarray
    sigma_syst: np.ndarray
    sigma_tot: np.ndarray
    model_version: str

    def __len__(self) -> int:
        return len(self.mean)

    def __getitem__(self, index) -> Prediction:
        """The predictions of some points: `prediction[:10]`, `prediction[mask]`."""
        return Prediction(
            self.mean[index],
            self.sigma_stat[index],
            self.sigma_syst[index],
            self.sigma_tot[index],
            self.model_version,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of calls that end UNAVAILABLE, with exponential backoff in seconds.

    The defaults ride out a server restart or a model swap of a few seconds: waits of about 0.1, 0.2, 0.4,
    0.8 s between 5 attempts. `jitter` spreads each wait by +-20 % so that a grid of clients does not come
    back in lockstep. `RetryPolicy(max_attempts=1)` turns retries off.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError(f"retry policy needs max_attempts >= 1 and 0 <= initial <= max backoff, got {self}")
        if self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"retry policy needs multiplier >= 1 and 0 <= jitter < 1, got {self}")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return base * (1 + self.jitter * (2 * random.random() - 1))

    def channel_options(self) -> list[tuple[str, int]]:
        """gRPC re-dials a lost server on its own backoff (1 s growing to 120 s by default); matched to ours,
        so that a retry finds the channel dialling again instead of failing fast on the old failure."""
        return [
            ("grpc.initial_reconnect_backoff_ms", max(1, round(self.initial_backoff * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, round(self.max_backoff * 1000))),
        ]


@dataclass(frozen=True)
class Credentials:
    """What a client presents to a secured server. TLS when `root_certificates` (PEM of the CA that signed the
    server's certificate) is set; mutual TLS with `certificate_chain` and `private_key` (PEM) too; `token` is
    sent on every call as `authorization: Bearer <token>` (over plaintext too, where a site network allows)."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    token: str | None = None

    @classmethod
    def from_files(
        cls, ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None, **kwargs
    ) -> Credentials:
        """PEM files by path (CA, client certificate, client key); `token=` as in the constructor."""
        read = lambda path: None if path is None else Path(path).read_bytes()  # noqa: E731
        return cls(read(ca), read(cert), read(key), **kwargs)

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        if self.certificate_chain is not None and self.root_certificates is None:
            raise ValueError("a client certificate (mutual TLS) needs root_certificates to trust the server")

    @property
    def tls(self) -> bool:
        return self.root_certificates is not None

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def _channel_options(retry: RetryPolicy) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        *retry.channel_options(),
    ]


def infer_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    version: str = "",
    outputs: list[str] | None = None,
    parameters: Mapping[str, Parameter] | None = None,
) -> pb.ModelInferRequest:
    """A ModelInfer request with the inputs as raw contents (no per-element protobuf)."""
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    encode_inputs(request, dict(inputs))
    for name in outputs or []:
        request.outputs.add(name=name)
    for key, value in (parameters or {}).items():
        _set_parameter(request.parameters[key], key, value)
    return request


def _set_parameter(parameter: pb.InferParameter, key: str, value: Parameter) -> None:
    if isinstance(value, bool):  # before int: bool is an int to Python
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    elif isinstance(value, str):
        parameter.string_param = value
    else:
        raise TypeError(f"parameter '{key}': expected bool, int, float or str, got {type(value).__name__}")


def prediction(outputs: Mapping[str, np.ndarray], model_version: str) -> Prediction:
    return Prediction(
        outputs["mean"], outputs["sigma_stat"], outputs["sigma_syst"], outputs["sigma_tot"], model_version
    )


class StreamError(RuntimeError):
    """A request on an inference stream failed. The server answers it with an error message and goes on;
    the client ends the stream, since the batches after it may depend on the one that failed.

    `code` is the gRPC status the same request would have got as a unary call, `index` the failed batch
    (0 for the first sent).
    """

    def __init__(self, index: int, message: str):
        name, _, details = message.partition(": ")
        self.code: grpc.StatusCode | None = grpc.StatusCode.__members__.get(name)
        self.index = index
        self.details = details if self.code is not None else message
        super().__init__(f"batch {index} of the stream failed: {message}")


def _stream_request(model: str, x: np.ndarray, name: str, version: str, index: int) -> pb.ModelInferRequest:
    request = infer_request(model, {name: x}, version)
    request.id = str(index)  # the server echoes it; the stream answers in order anyway
    return request


def _stream_prediction(index: int, response: pb.ModelStreamInferResponse) -> Prediction:
    if response.error_message:
        raise StreamError(index, response.error_message)
    return prediction(decode_outputs(response.infer_response), response.infer_response.model_version)


def _card(response: card_pb.ModelCardResponse) -> ModelCard:
    return ModelCard.model_validate_json(response.card_json)


class _Attempts:
    """The bookkeeping of one call's attempts: its deadline, and whether an error is worth another try."""

    def __init__(self, retry: RetryPolicy, timeout: float | None, what: str):
        self.retry, self.what = retry, what
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.attempt = 0

    def remaining(self) -> float | None:
        self.attempt += 1
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def pause_after(self, error: grpc.RpcError) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise `error`."""
        if error.code() not in RETRYABLE or self.attempt >= self.retry.max_attempts:
            return None
        pause = self.retry.backoff(self.attempt)
        if self.deadline is not None and time.monotonic() + pause >= self.deadline:
            return None
        log.debug(
            "%s: %s (%s); attempt %d in %.3f s", self.what, error.code().name, error.details(), self.attempt + 1, pause
        )
        return pause


class InferenceClient:
    """Blocking client. `timeout`: default deadline of each call in seconds (None: no deadline);
    `retry`: how calls that end UNAVAILABLE are retried. `retries` counts the retries made so far."""

    def __init__(
        self,
        address: str,
        timeout: float | None = 30.0,
        retry: RetryPolicy | None = None,
        credentials: Credentials | None = None,
    ):
        self.retry = retry or RetryPolicy()
        credentials = credentials or Credentials()
        self._metadata = credentials.metadata()
        options = _channel_options(self.retry)
        if credentials.tls:
            self._channel = grpc.secure_channel(address, credentials.channel_credentials(), options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        self._cards = card_pb_grpc.ModelCardServiceStub(self._channel)
        self.timeout = timeout
        self.retries = 0
        self._input_names: dict[tuple[str, str], str] = {}

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., Response], request, timeout: float | None) -> Response:
        """One RPC with the call's deadline over all attempts, retried on UNAVAILABLE."""
        attempts = _Attempts(self.retry, self.timeout if timeout is None else timeout, type(request).__name__)
        while True:
            try:
                return method(request, timeout=attempts.remaining(), metadata=self._metadata)
            except grpc.RpcError as error:
                pause = attempts.pause_after(error)
                if pause is None:
                    raise
            self.retries += 1
            time.sleep(pause)

    def is_live(self, timeout: float | None = None) -> bool:
        return self._call(self._stub.ServerLive, pb.ServerLiveRequest(), timeout).live

    def is_ready(self, timeout: float | None = None) -> bool:
        return self._call(self._stub.ServerReady, pb.ServerReadyRequest(), timeout).ready

    def is_model_ready(self, model: str, version: str = "", timeout: float | None = None) -> bool:
        return self._call(self._stub.ModelReady, pb.ModelReadyRequest(name=model, version=version), timeout).ready

    def model_metadata(self, model: str, version: str = "", timeout: float | None = None) -> pb.ModelMetadataResponse:
        return self._call(self._stub.ModelMetadata, pb.ModelMetadataRequest(name=model, version=version), timeout)

    def card(self, model: str, version: str = "", timeout: float | None = None) -> ModelCard:
        """The model card (calsurr.v1.ModelCardService): units, training domain and calibration, to read
        before trusting a number. Empty version: the newest ready one."""
        request = card_pb.ModelCardRequest(name=model, version=version)
        return _card(self._call(self._cards.ModelCard, request, timeout))

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        version: str = "",
        outputs: list[str] | None = None,
        *,
        parameters: Mapping[str, Parameter] | None = None,
        timeout: float | None = None,
    ) -> tuple[dict[str, np.ndarray], str]:
        """Any model: named arrays in, named arrays and the version that answered out."""
        request = infer_request(model, inputs, version, outputs, parameters)
        response = self._call(self._stub.ModelInfer, request, timeout)
        return decode_outputs(response), response.model_version

    def _input_name(self, model: str, version: str, timeout: float | None) -> str:
        key = (model, version)
        if key not in self._input_names:
            self._input_names[key] = self.model_metadata(model, version, timeout).inputs[0].name
        return self._input_names[key]

    def predict(
        self,
        model: str,
        x: np.ndarray,
        version: str = "",
        input_name: str | None = None,
        *,
        timeout: float | None = None,
    ) -> Prediction:
        """A surrogate with one input: its prediction with both uncertainties."""
        name = input_name or self._input_name(model, version, timeout)
        out, served = self.infer(model, {name: x}, version, timeout=timeout)
        return prediction(out, served)

    def stream_predict(
        self,
        model: str,
        batches: Iterable[np.ndarray],
        version: str = "",
        input_name: str | None = None,
        *,
        timeout: float | None = None,
    ) -> Iterator[Prediction]:
        """Predictions for a stream of batches over one bidirectional ModelStreamInfer call, in the order sent.

        For a generator loop: batches go out as `batches` yields them, while earlier ones are computed, and the
        server batches them as it would concurrent calls. `timeout` bounds the whole stream (default: none,
        a stream lasts as long as its loop). A batch the server refuses raises StreamError and ends the
        stream; no retries, since the batches already answered must not be sent twice.
        """
        name = input_name or self._input_name(model, version, timeout)
        requests = (_stream_request(model, x, name, version, i) for i, x in enumerate(batches))
        responses = self._stub.ModelStreamInfer(requests, timeout=timeout, metadata=self._metadata)
        try:
            for index, response in enumerate(responses):
                yield _stream_prediction(index, response)
        finally:
            responses.cancel()  # a no-op once the stream has ended


class AsyncInferenceClient:
    """The asyncio client on grpc.aio, with the methods of InferenceClient as coroutines. Create it inside
    the event loop that uses it (`async with AsyncInferenceClient(address) as client:`)."""

    def __init__(
        self,
        address: str,
        timeout: float | None = 30.0,
        retry: RetryPolicy | None = None,
        credentials: Credentials | None = None,
    ):
        self.retry = retry or RetryPolicy()
        credentials = credentials or Credentials()
        self._metadata = credentials.metadata()
        options = _channel_options(self.retry)
        if credentials.tls:
            self._channel = grpc.aio.secure_channel(address, credentials.channel_credentials(), options=options)
        else:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        self._cards = card_pb_grpc.ModelCardServiceStub(self._channel)
        self.timeout = timeout
        self.retries = 0
        self._input_names: dict[tuple[str, str], str] = {}

    async def __aenter__(self) -> AsyncInferenceClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[Response]], request, timeout: float | None) -> Response:
        attempts = _Attempts(self.retry, self.timeout if timeout is None else timeout, type(request).__name__)
        while True:
            try:
                return await method(request, timeout=attempts.remaining(), metadata=self._metadata)
            except grpc.RpcError as error:
                pause = attempts.pause_after(error)
                if pause is None:
                    raise
            self.retries += 1
            await asyncio.sleep(pause)

    async def is_live(self, timeout: float | None = None) -> bool:
        return (await self._call(self._stub.ServerLive, pb.ServerLiveRequest(), timeout)).live

    async def is_ready(self, timeout: float | None = None) -> bool:
        return (await self._call(self._stub.ServerReady, pb.ServerReadyRequest(), timeout)).ready

    async def is_model_ready(self, model: str, version: str = "", timeout: float | None = None) -> bool:
        request = pb.ModelReadyRequest(name=model, version=version)
        return (await self._call(self._stub.ModelReady, request, timeout)).ready

    async def model_metadata(
        self, model: str, version: str = "", timeout: float | None = None
    ) -> pb.ModelMetadataResponse:
        return await self._call(self._stub.ModelMetadata, pb.ModelMetadataRequest(name=model, version=version), timeout)

    async def card(self, model: str, version: str = "", timeout: float | None = None) -> ModelCard:
        """The model card (calsurr.v1.ModelCardService), as InferenceClient.card."""
        request = card_pb.ModelCardRequest(name=model, version=version)
        return _card(await self._call(self._cards.ModelCard, request, timeout))

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        version: str = "",
        outputs: list[str] | None = None,
        *,
        parameters: Mapping[str, Parameter] | None = None,
        timeout: float | None = None,
    ) -> tuple[dict[str, np.ndarray], str]:
        """Any model: named arrays in, named arrays and the version that answered out."""
        request = infer_request(model, inputs, version, outputs, parameters)
        response = await self._call(self._stub.ModelInfer, request, timeout)
        return decode_outputs(response), response.model_version

    async def predict(
        self,
        model: str,
        x: np.ndarray,
        version: str = "",
        input_name: str | None = None,
        *,
        timeout: float | None = None,
    ) -> Prediction:
        """A surrogate with one input: its prediction with both uncertainties."""
        key = (model, version)
        if input_name is None and key not in self._input_names:
            self._input_names[key] = (await self.model_metadata(model, version, timeout)).inputs[0].name
        name = input_name or self._input_names[key]
        out, served = await self.infer(model, {name: x}, version, timeout=timeout)
        return prediction(out, served)

    async def stream_predict(
        self,
        model: str,
        batches: AsyncIterable[np.ndarray] | Iterable[np.ndarray],
        version: str = "",
        input_name: str | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[Prediction]:
        """As InferenceClient.stream_predict, for batches from an iterable or an async iterable."""
        key = (model, version)
        if input_name is None and key not in self._input_names:
            self._input_names[key] = (await self.model_metadata(model, version, timeout)).inputs[0].name
        name = input_name or self._input_names[key]

        async def requests() -> AsyncIterator[pb.ModelInferRequest]:
            if isinstance(batches, AsyncIterable):
                index = 0
                async for x in batches:
                    yield _stream_request(model, x, name, version, index)
                    index += 1
            else:
                for index, x in enumerate(batches):
                    yield _stream_request(model, x, name, version, index)

        call = self._stub.ModelStreamInfer(requests(), timeout=timeout, metadata=self._metadata)
        try:
            index = 0
            async for response in call:
                yield _stream_prediction(index, response)
                index += 1
        finally:
            call.cancel()

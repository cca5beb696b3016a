"""The gRPC server: the inference service, health checking and reflection on one `grpc.aio` server, and the
Prometheus metrics endpoint on a port of its own."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from calsurr.service.auth import AuthInterceptor, TokenBook
from calsurr.service.config import ServerSettings
from calsurr.service.dataplane import DataPlane
from calsurr.service.grpc_servicer import InferenceServicer, ModelCardServicer, add_servicer
from calsurr.service.metrics import MetricsEndpoint, ServerMetrics
from calsurr.service.protocol import calsurr_card_pb2 as card_pb
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import model_config_pb2 as model_config_pb
from calsurr.service.repository import ModelRepository, RepositoryChange
from calsurr.service.tls import RotatingServerCredentials

log = logging.getLogger(__name__)
INFERENCE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
CARD_DESCRIPTOR = card_pb.DESCRIPTOR.services_by_name["ModelCardService"]
INFERENCE_SERVICE = INFERENCE_DESCRIPTOR.full_name
CARD_SERVICE = CARD_DESCRIPTOR.full_name


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    """Our protocol lives in a private descriptor pool (see scripts/generate_protos.py); reflection needs one
    pool that also holds the health and reflection services."""
    pool = descriptor_pool.DescriptorPool()
    files = (
        model_config_pb.DESCRIPTOR,
        pb.DESCRIPTOR,
        card_pb.DESCRIPTOR,
        health_pb2.DESCRIPTOR,
        reflection_pb2.DESCRIPTOR,
    )
    for file in files:  # dependencies first
        pool.AddSerializedFile(file.serialized_pb)
    return pool


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    dataplane: DataPlane
    metrics: ServerMetrics
    metrics_endpoint: MetricsEndpoint | None = None
    poller: asyncio.Task | None = None  # the repository poll, with repository_poll_seconds > 0

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_endpoint.port if self.metrics_endpoint else None

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting; requests already accepted (queued in a batcher too) get `grace` seconds to finish."""
        if self.poller is not None:
            self.poller.cancel()
            await asyncio.gather(self.poller, return_exceptions=True)
        await self.server.stop(grace)
        await self.dataplane.close()
        if self.metrics_endpoint is not None:
            await asyncio.to_thread(self.metrics_endpoint.close)


async def start_server(settings: ServerSettings) -> RunningServer:
    """Load the repository and start serving; returns once the ports are bound (port 0 picks a free one)."""
    metrics = ServerMetrics()
    repository = ModelRepository(settings.repo, settings.runtime_options(), settings.version_policy)
    repository.load_all()
    metrics.watch_repository(repository)
    metrics.record_load_failures(repository)

    async def count_load_failures(change: RepositoryChange) -> None:
        metrics.record_load_failures(repository)

    repository.subscribe(count_load_failures)
    dataplane = DataPlane(repository, settings.batching_policy(), metrics)
    tls = settings.tls_files if settings.metrics_tls else None
    endpoint = MetricsEndpoint(metrics, settings.host, settings.metrics_port, tls) if settings.metrics else None
    try:
        server, port = await _start_grpc(settings, dataplane)
    except BaseException:
        if endpoint is not None:
            endpoint.close()
        raise
    log.info(
        "serving %s on %s:%d",
        repository.names(),
        settings.host,
        port,
        extra={"metrics_port": endpoint.port if endpoint else None, "batching": settings.batching},
    )
    poll = settings.repository_poll_seconds
    poller = asyncio.get_running_loop().create_task(repository.poll(poll), name="calsurr-poll") if poll else None
    return RunningServer(server, port, dataplane, metrics, endpoint, poller)


async def _start_grpc(settings: ServerSettings, dataplane: DataPlane) -> tuple[grpc.aio.Server, int]:
    repository = dataplane.repository
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    interceptors = []
    if settings.auth_tokens is not None:
        book = TokenBook(settings.auth_tokens)
        interceptors.append(AuthInterceptor(book, lambda reason: dataplane.metrics.auth_failures.labels(reason).inc()))
        log.info("token auth on: %d tokens in %s", len(book.grants()), settings.auth_tokens)
    server = grpc.aio.server(options=options, interceptors=interceptors)
    add_servicer(InferenceServicer(dataplane), INFERENCE_DESCRIPTOR, server)
    add_servicer(ModelCardServicer(dataplane), CARD_DESCRIPTOR, server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    serving = health_pb2.HealthCheckResponse.SERVING
    await health_servicer.set("", serving)
    await health_servicer.set(INFERENCE_SERVICE, serving)
    await health_servicer.set(CARD_SERVICE, serving)

    async def follow_models(change: RepositoryChange) -> None:
        """Per-model health follows loads, unloads, polls: NOT_SERVING while a model has no ready version."""
        for name in change.models:
            status = serving if repository.is_ready(name) else health_pb2.HealthCheckResponse.NOT_SERVING
            await health_servicer.set(name, status)

    await follow_models(RepositoryChange(models=tuple(repository.names())))
    repository.subscribe(follow_models)

    reflection.enable_server_reflection(
        [INFERENCE_SERVICE, CARD_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server, pool=_reflection_pool()
    )
    address = f"{settings.host}:{settings.port}"
    if settings.tls_files is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, RotatingServerCredentials(settings.tls_files).credentials())
        mutual = " with client certificates (mTLS)" if settings.tls_client_ca else ""
        log.info("gRPC over TLS%s, certificate %s", mutual, settings.tls_cert)
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    await server.start()
    return server, port


def new_event_loop(kind: str = "uvloop") -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's (libuv, a fraction of asyncio's CPU per request) or asyncio's own."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_server(settings: ServerSettings) -> None:
    """`serve_forever` on the event loop the settings name, until SIGTERM or SIGINT."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(settings.event_loop)) as runner:
        runner.run(serve_forever(settings))


async def serve_forever(settings: ServerSettings) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and finish accepted requests within the grace."""
    running = await start_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheme = "https" if settings.metrics_tls else "http"
    metrics = f"; metrics on {scheme}://{settings.host}:{running.metrics_port}/metrics" if running.metrics_port else ""
    names = running.dataplane.repository.names()
    print(f"calsurr serving {names} on {settings.host}:{running.port}{metrics}", flush=True)
    await stop.wait()
    log.info("shutting down, grace %.1f s", settings.grace_seconds)
    await running.stop(settings.grace_seconds)
    log.info("stopped")


class BackgroundServer:
    """The server on its own event loop in a daemon thread, for the demo, notebooks and tests.

    with BackgroundServer(ServerSettings(repo=path, port=0, metrics_port=0)) as server:
        InferenceClient(server.address)...      # and server.metrics_url
    """

    def __init__(self, settings: ServerSettings, start_timeout: float = 30.0):
        self.settings = settings
        self.start_timeout = start_timeout
        self._loop = new_event_loop(settings.event_loop)
        self._running: RunningServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="calsurr-server", daemon=True)

    @property
    def running(self) -> RunningServer:
        if self._running is None:
            raise RuntimeError("server not started")
        return self._running

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.running.port}"

    @property
    def metrics_url(self) -> str | None:
        """`http://host:port/metrics`, or None with metrics off."""
        port = self.running.metrics_port
        return None if port is None else f"http://{self.settings.host}:{port}/metrics"

    def call(self, coroutine, timeout: float | None = None):
        """Run a coroutine on the server's event loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        try:
            self._running = self.call(start_server(self.settings), self.start_timeout)
        except BaseException:
            self._shut_loop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._running is not None:
            self.call(self._running.stop(self.settings.grace_seconds))
        self._shut_loop()

    def _shut_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

"""Faults of the server process and its surroundings, with `calsurr serve` as a real process: stopped and
resumed, killed and restarted on the same port, flooded with ten times its queue, serving a read-only
repository, and a model folder removed and restored under load."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from calsurr.service.card import MODEL_FILENAME
from calsurr.service.client import AsyncInferenceClient, InferenceClient, RetryPolicy
from calsurr.service.config import ServerSettings
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow
CALSURR = Path(sys.executable).with_name("calsurr")
OUTPUTS = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
START_SECONDS = 60.0
RTOL = 1e-12  # batching may merge requests differently from the in-process run: last-bit differences only


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """`calsurr serve` on a fixed port (so that it can be restarted there), its log in a file."""

    def __init__(self, repo: Path, port: int, log: Path, *options: str, user: list[str] | None = None):
        self.repo, self.port, self.log = repo, port, log
        self.command = [*(user or []), str(CALSURR), "serve", "--repo", str(repo), "--port", str(port)]
        self.command += ["--metrics-port", "0", "--log-level", "info", *options]
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Served:
        with self.log.open("a") as output:
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": tempfile.gettempdir()}
            self.process = subprocess.Popen(self.command, stdout=output, stderr=subprocess.STDOUT, env=env)
        give_up = time.monotonic() + START_SECONDS
        with InferenceClient(self.address, timeout=1.0, retry=RetryPolicy(max_attempts=1)) as client:
            while True:
                assert self.process.poll() is None, f"calsurr serve exited: {self.log.read_text()[-3000:]}"
                try:
                    if client.is_model_ready(TINY_MODEL):
                        return self
                except grpc.RpcError:
                    pass
                assert time.monotonic() < give_up, f"calsurr serve never became ready: {self.log.read_text()[-3000:]}"
                time.sleep(0.1)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def repo(tiny_repository, tmp_path) -> Path:
    copy = tmp_path / "repository"
    shutil.copytree(tiny_repository, copy)
    return copy


@pytest.fixture(scope="module")
def momenta(tiny_run) -> np.ndarray:
    return np.ascontiguousarray(tiny_run.test.momenta[:64])


@pytest.fixture(scope="module")
def reference(tiny_repository, momenta) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(tiny_repository / TINY_MODEL / "1" / MODEL_FILENAME))
    return dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"momenta": momenta}), strict=True))


def _check(prediction, reference, start: int, rows: int) -> bool:
    return all(
        np.allclose(getattr(prediction, name), reference[name][start : start + rows], rtol=RTOL, atol=0)
        for name in OUTPUTS
    )


def test_a_stopped_server_lets_deadlines_fire_and_answers_once_resumed(repo, tmp_path, momenta, reference):
    server = Served(repo, _free_port(), tmp_path / "serve.log").start()
    try:
        patient_result: dict = {}
        with InferenceClient(server.address, timeout=30, retry=RetryPolicy(max_attempts=1)) as client:
            assert _check(client.predict(TINY_MODEL, momenta[:8]), reference, 0, 8)
            server.signal(signal.SIGSTOP)

            def patient() -> None:  # a call with a long deadline, sent while the server is stopped
                patient_result["prediction"] = client.predict(TINY_MODEL, momenta[8:16], timeout=30)

            waiting = threading.Thread(target=patient)
            waiting.start()
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as error:
                client.predict(TINY_MODEL, momenta[:4], timeout=0.5)
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 5
            time.sleep(1.0)
            server.signal(signal.SIGCONT)
            waiting.join(30)
            assert _check(patient_result["prediction"], reference, 8, 8)  # answered after the resume
            assert _check(client.predict(TINY_MODEL, momenta[:8], timeout=10), reference, 0, 8)
    finally:
        server.stop()


def test_a_killed_server_restarted_on_its_port_is_found_again_by_retrying_clients(repo, tmp_path, momenta, reference):
    server = Served(repo, _free_port(), tmp_path / "serve.log").start()
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    wrong: list[str] = []
    after_restart = threading.Event()
    lock = threading.Lock()
    retry = RetryPolicy(max_attempts=30, initial_backoff=0.05, max_backoff=0.5)

    def loop(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with InferenceClient(server.address, timeout=60, retry=retry) as client:
            while not stop.is_set():
                start, rows = int(rng.integers(0, 56)), int(rng.integers(1, 9))
                try:
                    prediction = client.predict(TINY_MODEL, momenta[start : start + rows])
                except grpc.RpcError as error:
                    with lock:
                        outcomes[error.code().name] += 1
                    continue
                with lock:
                    if _check(prediction, reference, start, rows):
                        outcomes["OK"] += 1
                        if restarted.is_set():
                            after_restart.set()
                    else:
                        wrong.append(f"rows {start}:{start + rows}")

    restarted = threading.Event()
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        served_before = outcomes["OK"]
        server.signal(signal.SIGKILL)
        server.process.wait(10)
        time.sleep(0.5)  # clients meet a closed port meanwhile, and retry
        server.start()
        restarted.set()
        assert after_restart.wait(30), f"no answer after the restart: {dict(outcomes)}"
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.stop()
    print(f"\nkill and restart: {dict(outcomes)}, served before the kill {served_before}")
    assert not wrong, wrong[:5]
    assert served_before > 0 and outcomes["OK"] > served_before
    assert set(outcomes) <= {"OK", "UNAVAILABLE"}, dict(outcomes)  # a failure is only a retry budget spent


def test_ten_times_the_queue_at_once_is_refused_quickly_with_memory_bounded(repo, tmp_path, tiny_run):
    queue = 8
    server = Served(repo, _free_port(), tmp_path / "serve.log", "--max-queue-size", str(queue)).start()
    rows = 16_384  # 2 MiB of momenta per request
    x = np.ascontiguousarray(np.resize(tiny_run.test.momenta, (rows, 4, 4)))
    try:
        loaded = server.peak_rss_mb()

        async def flood():
            async with AsyncInferenceClient(server.address, timeout=120, retry=RetryPolicy(max_attempts=1)) as client:
                return await asyncio.gather(
                    *(client.predict(TINY_MODEL, x) for _ in range(10 * queue)), return_exceptions=True
                )

        outcomes = asyncio.run(flood())
        codes = Counter("OK" if not isinstance(o, Exception) else o.code().name for o in outcomes)
        peak = server.peak_rss_mb()
        with InferenceClient(server.address, timeout=30) as client:  # and it serves on
            assert len(client.predict(TINY_MODEL, x[:10])) == 10
    finally:
        server.stop()
    flood = f"{10 * queue} requests of {rows} rows at a queue of {queue}"
    print(f"\n{flood}: {dict(codes)}; RSS {loaded:.0f} -> {peak:.0f} MB")
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"} and codes["RESOURCE_EXHAUSTED"] > 0 and codes["OK"] >= queue
    assert all(len(o) == rows for o in outcomes if not isinstance(o, Exception))
    # bounded: what the queue and one run may hold (the inputs, every member's activations), not 80 requests
    assert peak - loaded < 600, (loaded, peak)


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = 0o555 if path.is_dir() else 0o444
        path.chmod(mode)


def test_a_read_only_repository_is_served_and_polled(tiny_repository, momenta, reference):
    """As a volume mounted read-only; as root the server runs as `nobody`, for whom the modes apply."""
    top = Path(tempfile.mkdtemp(prefix="calsurr-ro-"))
    top.chmod(0o755)
    try:
        repo = top / "repository"
        shutil.copytree(tiny_repository, repo)
        _read_only(repo)
        user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else None
        if user is not None:  # the mode bits stop nobody, who cannot write there
            probe = subprocess.run([*user, "touch", str(repo / "probe")], capture_output=True)
            assert probe.returncode != 0
        log = top / "serve.log"
        log.touch()
        log.chmod(0o666)
        server = Served(repo, _free_port(), log, "--repository-poll-seconds", "0.2", user=user).start()
        try:
            with InferenceClient(server.address, timeout=30) as client:
                assert _check(client.predict(TINY_MODEL, momenta[:8]), reference, 0, 8)
                (repo / TINY_MODEL).chmod(0o755)  # the operator (root) publishes version 2 the export way
                staging = repo / TINY_MODEL / ".2.staging"
                shutil.copytree(tiny_repository / TINY_MODEL / "1", staging)
                _read_only(staging)
                staging.rename(repo / TINY_MODEL / "2")
                (repo / TINY_MODEL).chmod(0o555)
                give_up = time.monotonic() + 30
                while client.predict(TINY_MODEL, momenta[:2]).model_version != "2":
                    assert time.monotonic() < give_up, log.read_text()[-2000:]
                    time.sleep(0.1)
            assert "Traceback" not in log.read_text()
        finally:
            server.stop()
    finally:
        for path in [top, *top.rglob("*")]:
            path.chmod(stat.S_IRWXU | (path.stat().st_mode & 0o777))
        shutil.rmtree(top)


def test_a_model_folder_removed_and_restored_under_load(repo, momenta, reference):
    settings = ServerSettings(repo=repo, port=0, metrics_port=0, repository_poll_seconds=0.05)
    backup = repo.parent / "backup"
    shutil.copytree(repo / TINY_MODEL, backup)
    codes: Counter[str] = Counter()
    wrong: list[str] = []
    stop = threading.Event()
    with BackgroundServer(settings) as server:

        def loop() -> None:
            with InferenceClient(server.address, timeout=30, retry=RetryPolicy(max_attempts=1)) as client:
                while not stop.is_set():
                    try:
                        prediction = client.predict(TINY_MODEL, momenta[:8], input_name="momenta")
                    except grpc.RpcError as error:
                        codes[error.code().name] += 1
                        continue
                    codes["OK"] += 1
                    if not _check(prediction, reference, 0, 8):
                        wrong.append(prediction.model_version)

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        shutil.rmtree(repo / TINY_MODEL)
        give_up = time.monotonic() + 30
        while codes["NOT_FOUND"] == 0:
            assert time.monotonic() < give_up, dict(codes)
            time.sleep(0.02)
        ok_while_gone = codes["OK"]
        shutil.copytree(backup, repo / TINY_MODEL)
        while codes["OK"] < ok_while_gone + 200:
            assert time.monotonic() < give_up, dict(codes)
            time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join(30)
    print(f"\nmodel folder removed and restored under load: {dict(codes)}")
    assert not wrong and set(codes) <= {"OK", "NOT_FOUND"}, (wrong[:5], dict(codes))


def test_the_log_names_the_listening_port(repo, tmp_path):
    """The restart test relies on the port being reusable at once after a kill (SO_REUSEADDR in gRPC)."""
    port = _free_port()
    server = Served(repo, port, tmp_path / "serve.log").start()
    try:
        server.signal(signal.SIGKILL)
        server.process.wait(10)
        server.start()
        assert re.search(rf"on 127\.0\.0\.1:{port}\b", (tmp_path / "serve.log").read_text())
    finally:
        server.stop()

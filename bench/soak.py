"""The soak run: hours of a generator grid's traffic compressed into minutes, while the repository changes.

    .venv/bin/python bench/soak.py --model repository/gg_ggg/1                  # 10 minutes
    .venv/bin/python bench/soak.py --model repository/gg_ggg/1 --duration 60 --version-every 10 --broken-every 30

`calsurr serve` runs as a subprocess on a copy of the model's folder (polling the repository every second).
Load, from asyncio in this process: `--unary` workers each sending unary requests of 1 to 4096 rows, one
bidirectional stream of small batches, and `--malformed` of all requests wrong on purpose (a shape the model
does not take, or bytes that are not a message), which must come back INVALID_ARGUMENT. Every `--version-every`
seconds a new version is published (the current folder copied in under the next number, staged then renamed,
as `calsurr export` does); every `--broken-every` seconds a broken one (its graph corrupt) is offered, which
must never serve. Every `--sample-every` seconds the server's RSS and open file descriptors are read from
/proc. The report: requests served, errors by code split into expected (the malformed ones) and unexpected
(must be 0), RSS and descriptors with their slope over the run, p50/p99 per minute; results.json,
results.md and soak.png under `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serving import ServerProcess, _calsurr_command, _free_port, _inputs  # noqa: E402

from calsurr.service.card import MODEL_FILENAME, ModelCard  # noqa: E402
from calsurr.service.client import AsyncInferenceClient, RetryPolicy, StreamError  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "soak"
BATCHES = (1, 1, 1, 16, 16, 256, 4096)  # drawn per request: mostly small, as a generator's calls are
STREAM_BATCH = 8
STREAM_WINDOW = 8  # batches in flight on the stream, as a generator's pipeline keeps
MALFORMED_ROWS = 3


@dataclass
class Sample:
    seconds: float
    rss_mb: float
    open_fds: int


@dataclass
class Soak:
    settings: dict
    served: int = 0
    rows: int = 0
    served_by_version: dict[str, int] = field(default_factory=dict)
    expected_errors: dict[str, int] = field(default_factory=dict)
    unexpected_errors: dict[str, int] = field(default_factory=dict)
    unexpected_examples: list[str] = field(default_factory=list)
    malformed_sent: int = 0
    versions_published: list[int] = field(default_factory=list)
    broken_offered: list[int] = field(default_factory=list)
    broken_served: int = 0
    samples: list[Sample] = field(default_factory=list)
    per_minute: list[dict] = field(default_factory=list)
    slopes: dict[str, dict] = field(default_factory=dict)


class Traffic:
    """The load and its bookkeeping: answers by version, errors by code, latencies by minute."""

    def __init__(self, soak: Soak, model: str, input_name: str, x: np.ndarray, malformed: float, started: float):
        self.soak, self.model, self.name, self.x = soak, model, input_name, x
        self.malformed, self.started = malformed, started
        self.latencies: dict[tuple[str, int], list[float]] = defaultdict(list)  # (unary|stream, minute)
        self.broken: set[str] = set()
        self.rng = random.Random(7)

    def answered(self, version: str, rows: int, seconds: float, kind: str = "unary") -> None:
        self.soak.served += 1
        self.soak.rows += rows
        self.soak.served_by_version[version] = self.soak.served_by_version.get(version, 0) + 1
        if version in self.broken:
            self.soak.broken_served += 1
        self.latencies[(kind, int((time.monotonic() - self.started) // 60))].append(seconds)

    def failed(self, code: str, malformed: bool, detail: str) -> None:
        book = self.soak.expected_errors if malformed and code == "INVALID_ARGUMENT" else self.soak.unexpected_errors
        book[code] = book.get(code, 0) + 1
        if book is self.soak.unexpected_errors and len(self.soak.unexpected_examples) < 10:
            self.soak.unexpected_examples.append(f"{code}: {detail}"[:300])

    async def unary_worker(self, client: AsyncInferenceClient, channel: grpc.aio.Channel, stop: float) -> None:
        garbage = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        while time.monotonic() < stop:
            if self.rng.random() < self.malformed:
                await self._malformed(client, garbage)
                continue
            rows = self.rng.choice(BATCHES)
            t0 = time.perf_counter()
            try:
                outputs, version = await client.infer(self.model, {self.name: self.x[:rows]}, timeout=60)
            except grpc.RpcError as error:
                self.failed(error.code().name, False, error.details() or "")
                continue
            if len(outputs["mean"]) != rows or not np.isfinite(outputs["sigma_tot"]).all():
                self.failed("WRONG_ANSWER", False, f"{rows} rows asked, {len(outputs['mean'])} answered")
                continue
            self.answered(version, rows, time.perf_counter() - t0)

    async def _malformed(self, client: AsyncInferenceClient, garbage) -> None:
        self.soak.malformed_sent += 1
        try:
            if self.rng.random() < 0.5:  # a shape the model does not take
                wrong = np.zeros((MALFORMED_ROWS, self.x.shape[1] + 1, 4), dtype=self.x.dtype)
                await client.infer(self.model, {self.name: wrong}, timeout=60)
            else:  # bytes that are not a message
                await garbage(b"\x00\xff\xff\xff\xff\xff", timeout=60)
            self.failed("OK", True, "a malformed request was answered")
        except grpc.RpcError as error:
            self.failed(error.code().name, True, error.details() or "")

    async def stream_worker(self, client: AsyncInferenceClient, stop: float) -> None:
        while time.monotonic() < stop:  # a stream broken by a failure is reopened, as a generator would
            window = asyncio.Semaphore(STREAM_WINDOW)
            sent: deque[float] = deque()

            async def batches(window: asyncio.Semaphore = window, sent: deque[float] = sent):
                while True:
                    await window.acquire()
                    if time.monotonic() >= stop:
                        return
                    sent.append(time.perf_counter())
                    yield self.x[:STREAM_BATCH]

            try:
                async for prediction in client.stream_predict(self.model, batches(), input_name=self.name):
                    seconds = time.perf_counter() - sent.popleft()
                    self.answered(prediction.model_version, len(prediction), seconds, kind="stream")
                    window.release()
            except StreamError as error:
                self.failed(error.code.name if error.code else "UNKNOWN", False, str(error))
            except grpc.RpcError as error:
                self.failed(error.code().name, False, error.details() or "")


def _publish(repo: Path, model: str, source: Path, version: int, broken: bool) -> None:
    """Copy `source` in as `version` the way export does (staged in a hidden folder, then renamed)."""
    staging = repo / model / f".{version}.staging"
    shutil.copytree(source, staging)
    if broken:
        (staging / MODEL_FILENAME).write_bytes(b"\x08\x07 not an onnx graph")
    staging.rename(repo / model / str(version))


async def _repository_changes(soak: Soak, traffic: Traffic, repo: Path, model: str, source: Path, args, stop: float):
    version = 1
    started = time.monotonic()
    next_version, next_broken = started + args.version_every, started + args.broken_every
    while time.monotonic() < stop:
        await asyncio.sleep(0.2)
        now = time.monotonic()
        if now >= next_broken:
            version += 1
            _publish(repo, model, source, version, broken=True)
            traffic.broken.add(str(version))
            soak.broken_offered.append(version)
            next_broken += args.broken_every
        if now >= next_version:
            version += 1
            _publish(repo, model, source, version, broken=False)
            soak.versions_published.append(version)
            next_version += args.version_every


def _read_proc(pid: int) -> tuple[float, int]:
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def _sampler(soak: Soak, pid: int, every: float, stop: float, started: float) -> None:
    while True:
        rss, fds = _read_proc(pid)
        soak.samples.append(Sample(round(time.monotonic() - started, 2), round(rss, 2), fds))
        if time.monotonic() + every > stop:
            return
        await asyncio.sleep(every)


def _slope(samples: list[Sample], attribute: str) -> dict:
    """Least-squares slope per minute over the second half of the run (after warm-up and the first loads)
    and its standard error; `flat` when it is within three standard errors of zero or below 1 % of the mean
    per minute."""
    half = samples[len(samples) // 2 :]
    if len(half) < 3:
        return {"per_minute": None, "stderr": None, "flat": None}
    t = np.array([s.seconds / 60 for s in half])
    y = np.array([getattr(s, attribute) for s in half], dtype=float)
    slope, intercept = np.polyfit(t, y, 1)
    dof = max(len(t) - 2, 1)
    stderr = float(np.sqrt(((y - slope * t - intercept) ** 2).sum() / dof / max(((t - t.mean()) ** 2).sum(), 1e-12)))
    flat = abs(slope) <= 3 * stderr or abs(slope) <= 0.01 * max(abs(y.mean()), 1e-12)
    return {"per_minute": round(float(slope), 4), "stderr": round(stderr, 4), "flat": bool(flat)}


async def _run(args, soak: Soak, repo: Path, model: str, source: Path, server: ServerProcess, card: ModelCard):
    started = time.monotonic()
    stop = started + args.duration
    x = _inputs(card, max(BATCHES))
    traffic = Traffic(soak, model, card.inputs[0].name, x, args.malformed, started)
    retry = RetryPolicy(max_attempts=5)
    async with AsyncInferenceClient(server.address, timeout=60, retry=retry) as client:
        channel = grpc.aio.insecure_channel(server.address)
        tasks = [traffic.unary_worker(client, channel, stop) for _ in range(args.unary)]
        tasks += [traffic.stream_worker(client, stop)]
        tasks += [_repository_changes(soak, traffic, repo, model, source, args, stop)]
        tasks += [_sampler(soak, server.process.pid, args.sample_every, stop, started)]
        await asyncio.gather(*tasks)
        await channel.close()
    for (kind, minute), latencies in sorted(traffic.latencies.items(), key=lambda item: (item[0][1], item[0][0])):
        ms = np.asarray(latencies) * 1e3
        soak.per_minute.append(
            {"minute": minute, "kind": kind, "requests": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3),
             "p99_ms": round(float(np.percentile(ms, 99)), 3)}
        )  # fmt: skip
    soak.slopes = {"rss_mb": _slope(soak.samples, "rss_mb"), "open_fds": _slope(soak.samples, "open_fds")}


def markdown(soak: Soak) -> str:
    s = soak.settings
    lines = [
        "# Soak run",
        "",
        f"Model `{s['model']}` ({s['members']} members); {s['duration']} s, {s['unary']} unary workers and one "
        f"stream, {100 * s['malformed']:g} % malformed, a new version every {s['version_every']} s, a broken one "
        f"every {s['broken_every']} s; client and server share {os.cpu_count()} CPUs.",
        "",
        f"- requests served: {soak.served} ({soak.rows} rows); by version {soak.served_by_version}",
        f"- malformed sent: {soak.malformed_sent}; answered as expected: {soak.expected_errors}",
        f"- unexpected errors: {soak.unexpected_errors or 0}",
        f"- versions published: {soak.versions_published}; broken offered: {soak.broken_offered}, served by a "
        f"broken one: {soak.broken_served}",
        f"- RSS slope {soak.slopes['rss_mb']} MB/min, open-descriptor slope {soak.slopes['open_fds']} per minute "
        "(second half of the run)",
        "",
        "| minute | traffic | requests | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|",
        *(
            f"| {m['minute']} | {m['kind']} | {m['requests']} | {m['p50_ms']} | {m['p99_ms']} |"
            for m in soak.per_minute
        ),
        "",
        "| t s | RSS MB | open fds |",
        "|---:|---:|---:|",
        *(f"| {x.seconds:.0f} | {x.rss_mb:.1f} | {x.open_fds} |" for x in soak.samples),
    ]
    return "\n".join(lines) + "\n"


def plot(soak: Soak, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    t = [s.seconds for s in soak.samples]
    left.plot(t, [s.rss_mb for s in soak.samples], "o-", label="RSS MB")
    twin = left.twinx()
    twin.plot(t, [s.open_fds for s in soak.samples], "s--", color="C1", label="open fds")
    left.set(xlabel="seconds", ylabel="RSS MB", title="server memory and descriptors")
    twin.set_ylabel("open file descriptors")
    for colour, kind in (("C0", "unary"), ("C2", "stream")):
        rows = [m for m in soak.per_minute if m["kind"] == kind]
        minutes = [m["minute"] for m in rows]
        right.plot(minutes, [m["p50_ms"] for m in rows], "o-", color=colour, label=f"{kind} p50")
        right.plot(minutes, [m["p99_ms"] for m in rows], "x:", color=colour, label=f"{kind} p99")
    right.set(xlabel="minute", ylabel="latency ms", yscale="log", title="latency per minute")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="exported model folder <repo>/<name>/<version>")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--unary", type=int, default=6, help="unary workers (each one request in flight)")
    parser.add_argument("--malformed", type=float, default=0.01, help="fraction of requests malformed on purpose")
    parser.add_argument("--version-every", type=float, default=30.0, help="seconds between new versions")
    parser.add_argument("--broken-every", type=float, default=90.0, help="seconds between broken versions")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS/fd samples")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    if not (args.model / MODEL_FILENAME).is_file():
        parser.error(f"--model {args.model} holds no {MODEL_FILENAME}: give an exported <repo>/<name>/<version>")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    card = ModelCard.read(args.model / "card.json")
    model = card.name
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "model": model,
        "members": card.uncertainty.members,
        "duration": args.duration,
        "unary": args.unary,
        "malformed": args.malformed,
        "version_every": args.version_every,
        "broken_every": args.broken_every,
        "sample_every": args.sample_every,
    }
    soak = Soak(settings)
    with tempfile.TemporaryDirectory(prefix="calsurr-soak-") as tmp:
        repo = Path(tmp) / "repository"
        source = Path(tmp) / "source"
        shutil.copytree(args.model, source)
        (repo / model).mkdir(parents=True)
        shutil.copytree(source, repo / model / "1")
        port = _free_port()
        command = _calsurr_command(repo, port, 0, ["CPUExecutionProvider"], True, ("--repository-poll-seconds", "1"))
        with ServerProcess(command, port, model, Path(tmp) / "serve.log", env={"PYTHONPATH": str(ROOT)}) as server:
            print(f"soak: {args.duration:g} s on {model} at {server.address}", flush=True)
            asyncio.run(_run(args, soak, repo, model, source, server, card))
        shutil.copy(Path(tmp) / "serve.log", out / "serve.log")
    (out / "results.json").write_text(json.dumps(asdict(soak), indent=2) + "\n")
    table = markdown(soak)
    (out / "results.md").write_text(table)
    plot(soak, out / "soak.png")
    print(table)
    print(f"wrote {out / 'results.json'}, results.md and soak.png", flush=True)
    return 0 if not soak.unexpected_errors and not soak.broken_served else 1


if __name__ == "__main__":
    sys.exit(main())

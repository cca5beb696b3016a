"""The serving benchmark: calsurr against the in-process limit and MLServer, side by side on one exported model.

    .venv/bin/python bench/serving.py                           # builds a gg -> ggg K = 8 demo model, full grid
    .venv/bin/python bench/serving.py --model repo/gg_ggg/1     # an exported model: <repo>/<name>/<version>
    .venv/bin/python bench/serving.py --quick                   # the harness in seconds (CI; no MLServer)
    .venv/bin/python bench/serving.py --device cuda             # CUDA execution provider, where available

Systems, all on the same `model.onnx` with the same onnxruntime threads:
- `limit`: in-process onnxruntime (calsurr.service.runtime.OnnxModel), no network, sequential calls;
- `calsurr_unary`: `calsurr serve` (a subprocess), unary ModelInfer with raw contents via AsyncInferenceClient;
- `calsurr_stream`: the same server, one bidirectional ModelStreamInfer with `concurrency` requests in flight;
- `calsurr_triton`: the same server through the unmodified tritonclient (grpc.aio);
- `calsurr_perfanalyzer`, `calsurr_perfanalyzer_stream`: the same server driven by Triton's own C++ load
  generator, perf_analyzer (.venv/bin/perf_analyzer, scripts/install_perf_analyzer.sh), in its sync mode
  (`concurrency` threads, one blocking ModelInfer each) and its streaming mode: the fastest client a user has
  today, with none of Python's cost on the client side;
- `calsurr_nobatch`: a second `calsurr serve --no-batching`, unary as above;
- `mlserver`: MLServer (its own venv, bench/.venv-mlserver, made on demand) with bench/mlserver_runtime.py,
  its default settings (parallel_workers = 1), unary via the same AsyncInferenceClient.
Load comes from asyncio in this process (`concurrency` requests in flight), so client and server share the
machine's cores; the load generator's own CPU time is reported beside the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calsurr.service.card import MODEL_FILENAME, ModelCard  # noqa: E402
from calsurr.service.client import AsyncInferenceClient, InferenceClient, RetryPolicy  # noqa: E402
from calsurr.service.runtime import OnnxModel, RuntimeOptions  # noqa: E402

BATCH_SIZES = (1, 16, 256, 4096)
CONCURRENCIES = (1, 8, 64)
QUICK_BATCH_SIZES = (1, 16)
QUICK_CONCURRENCIES = (1, 8)
CELL_SECONDS, QUICK_CELL_SECONDS = 3.0, 0.3
WARMUP_FRACTION = 0.2  # of a cell's time, run first and not counted
MAX_REQUESTS_PER_CELL = 200_000
SERVER_START_SECONDS = 120.0
RESULTS = ROOT / "bench" / "results" / "serving"
MLSERVER_VENV = ROOT / "bench" / ".venv-mlserver"
# mlserver 1.7.1's parallel workers call asyncio.get_event_loop() in a fresh process, which uvloop >= 0.22
# refuses ("There is no current event loop"): the inference pool dies at start. uvloop < 0.22 keeps its defaults.
MLSERVER_PACKAGES = ("mlserver", "onnxruntime", "uvloop<0.22")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PERF_ANALYZER = Path(sys.executable).with_name("perf_analyzer")
PERF_ANALYZER_MAX_WINDOWS = 8
PERF_ANALYZER_MODES = {"calsurr_perfanalyzer": "--sync", "calsurr_perfanalyzer_stream": "--streaming"}
CALSURR_SYSTEMS = ("calsurr_unary", "calsurr_stream", "calsurr_triton", *PERF_ANALYZER_MODES, "calsurr_nobatch")
SERVER_SYSTEMS = (*CALSURR_SYSTEMS, "mlserver")
ALL_SYSTEMS = ("limit", *SERVER_SYSTEMS)

# Targets of issue 5 (performance) not written as ratios in compute_ratios.
RSS_TARGET_MB = 250.0
P50_OVERHEAD_TARGET_US = 400.0


@dataclass
class Cell:
    """One system at one batch size and concurrency. Latencies in ms, CPU in s, RSS in MB."""

    system: str
    batch: int
    concurrency: int
    requests: int
    rows: int
    seconds: float
    rows_per_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float | None
    server_cpu_s_per_mrows: float | None
    server_peak_rss_mb: float | None
    loadgen_cpu_s: float
    loadgen_cores: float  # load generator CPU seconds per wall second
    errors: int = 0


@dataclass
class Ratio:
    name: str
    value: float | None
    target: str
    met: bool | None
    cells: str
    note: str = ""


@dataclass
class Report:
    machine: dict
    model: dict
    settings: dict
    cells: list[Cell] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    servers: dict[str, dict] = field(default_factory=dict)  # per server process: RSS once loaded, MB
    ratios: list[Ratio] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- processes


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (MLServer runs inference in worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes (fields 14 and 15 of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def _peak_rss_mb(pids: list[int]) -> float:
    """Sum of the processes' peak resident set sizes (VmHWM), MB."""
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server subprocess on loopback, ready once the model answers ModelReady; its log goes to `log_path`."""

    def __init__(self, command: list[str], port: int, model: str, log_path: Path, env: dict | None = None):
        self.command, self.port, self.model, self.log_path = command, port, model, log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen | None = None
        self.loaded_rss_mb: float | None = None  # peak RSS once the model is ready, before any load

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + SERVER_START_SECONDS
        with InferenceClient(self.address, timeout=1.0, retry=RetryPolicy(max_attempts=1)) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(Exception):
                    if client.is_model_ready(self.model):
                        self.loaded_rss_mb = _peak_rss_mb(self.tree())
                        return self
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"{self.command[0]} did not become ready; log {self.log_path}:\n{self._tail()}")

    def _tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                for pid in reversed(_process_tree(self.process.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
                self.process.wait()
        self._log.close()

    def tree(self) -> list[int]:
        assert self.process is not None
        return _process_tree(self.process.pid)


# ----------------------------------------------------------------------------------------------- load


@dataclass
class Timing:
    latencies: list[float]
    seconds: float
    errors: int


async def _closed_loop(call: Callable[[], Awaitable[object]], concurrency: int, seconds: float) -> Timing:
    """`concurrency` workers, each sending its next request when the last one answered, for `seconds`."""
    latencies: list[float] = []
    errors = 0
    budget = MAX_REQUESTS_PER_CELL
    started = time.perf_counter()
    stop_at = started + seconds

    async def worker() -> None:
        nonlocal errors, budget
        while time.perf_counter() < stop_at and budget > 0:
            budget -= 1
            t0 = time.perf_counter()
            try:
                await call()
            except Exception:  # counted, not fatal: a benchmark reports what failed
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Timing(latencies, time.perf_counter() - started, errors)


async def _stream_loop(
    client: AsyncInferenceClient, model: str, name: str, x: np.ndarray, concurrency: int, seconds: float
) -> Timing:
    """One bidirectional stream with `concurrency` batches in flight: a generator loop's pipeline."""
    window = asyncio.Semaphore(concurrency)
    sent: deque[float] = deque()
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()

    async def batches():
        for _ in range(MAX_REQUESTS_PER_CELL):
            await window.acquire()
            if time.perf_counter() >= stop_at:
                return
            sent.append(time.perf_counter())
            yield x

    errors = 0
    try:
        async for _ in client.stream_predict(model, batches(), input_name=name, timeout=seconds + 60):
            latencies.append(time.perf_counter() - sent.popleft())
            window.release()
    except Exception:
        errors += 1
    return Timing(latencies, time.perf_counter() - started, errors)


def _cell(
    system: str, batch: int, concurrency: int, timing: Timing, cpu: float, loadgen_cpu: float, rss: float | None
) -> Cell:
    lat = np.asarray(timing.latencies) * 1e3 if timing.latencies else np.asarray([np.nan])
    requests = len(timing.latencies)
    rows = requests * batch
    return Cell(
        system=system,
        batch=batch,
        concurrency=concurrency,
        requests=requests,
        rows=rows,
        seconds=timing.seconds,
        rows_per_s=rows / timing.seconds,
        requests_per_s=requests / timing.seconds,
        p50_ms=float(np.percentile(lat, 50)),
        p99_ms=float(np.percentile(lat, 99)),
        server_cpu_s=None if rss is None else cpu,
        server_cpu_s_per_mrows=None if rss is None or rows == 0 else cpu / rows * 1e6,
        server_peak_rss_mb=rss,
        loadgen_cpu_s=loadgen_cpu,
        loadgen_cores=loadgen_cpu / timing.seconds,
        errors=timing.errors,
    )


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _inputs(card: ModelCard, rows: int, seed: int = 0) -> np.ndarray:
    """`rows` valid input rows: the card's example rows repeated (valid physics, no training code needed)."""
    spec = card.inputs[0]
    dtype = np.float64 if spec.datatype == "FP64" else np.float32
    if card.example_inputs and spec.name in card.example_inputs:
        examples = np.asarray(card.example_inputs[spec.name], dtype=dtype)
    else:
        shape = [d if d > 0 else 1 for d in spec.shape[1:]]
        examples = np.random.default_rng(seed).uniform(1.0, 2.0, size=(16, *shape)).astype(dtype)
    reps = -(-rows // len(examples))
    return np.ascontiguousarray(np.concatenate([examples] * reps)[:rows])


# ----------------------------------------------------------------------------------------------- systems


def run_limit(model_dir: Path, card: ModelCard, options: RuntimeOptions, grid: Grid, report: Report) -> None:
    """In-process onnxruntime, sequential calls, same threads as the servers: the cost of the model itself."""
    model = OnnxModel(model_dir / MODEL_FILENAME, card, options)
    report.model["limit_provider"] = model.provider
    name = card.inputs[0].name
    for batch in grid.batches:
        x = _inputs(card, batch)
        for seconds, keep in ((grid.seconds * WARMUP_FRACTION, False), (grid.seconds, True)):
            latencies: list[float] = []
            cpu0 = _own_cpu()
            started = time.perf_counter()
            while time.perf_counter() - started < seconds and len(latencies) < MAX_REQUESTS_PER_CELL:
                t0 = time.perf_counter()
                model.run({name: x})
                latencies.append(time.perf_counter() - t0)
            timing = Timing(latencies, time.perf_counter() - started, 0)
            if keep:
                cpu = _own_cpu() - cpu0
                cell = _cell("limit", batch, 1, timing, cpu, cpu, None)
                cell.server_cpu_s, cell.server_cpu_s_per_mrows = cpu, cpu / max(cell.rows, 1) * 1e6
                report.cells.append(cell)
                _progress(cell)


def _unary_call(client: AsyncInferenceClient, model: str, name: str, x: np.ndarray) -> Callable[[], Awaitable]:
    """ModelInfer with raw contents through our client, outputs decoded to numpy."""

    async def call() -> None:
        await client.infer(model, {name: x})

    return call


def _triton_call(triton, triton_aio, model: str, name: str, datatype: str, x: np.ndarray) -> Callable[[], Awaitable]:
    """ModelInfer through the unmodified tritonclient (grpc.aio), the mean read back as numpy."""
    triton_input = triton_aio.InferInput(name, list(x.shape), datatype)
    triton_input.set_data_from_numpy(x)

    async def call() -> None:
        result = await triton.infer(model, [triton_input])
        result.as_numpy("mean")

    return call


async def _drive(
    system: str, server: ServerProcess, card: ModelCard, grid: Grid, report: Report, kind: str = "unary"
) -> None:
    """Every (batch, concurrency) cell of one system against one running server."""
    import tritonclient.grpc.aio as triton_aio

    name = card.inputs[0].name
    datatype = card.inputs[0].datatype
    client = AsyncInferenceClient(server.address, timeout=120.0, retry=RetryPolicy(max_attempts=1))
    triton = triton_aio.InferenceServerClient(server.address) if kind == "triton" else None
    try:
        for batch in grid.batches:
            x = _inputs(card, batch)
            if triton is not None:
                call = _triton_call(triton, triton_aio, card.name, name, datatype, x)
            else:
                call = _unary_call(client, card.name, name, x)
            for concurrency in grid.concurrencies:
                for seconds, keep in ((grid.seconds * WARMUP_FRACTION, False), (grid.seconds, True)):
                    pids = server.tree()
                    cpu0, own0 = _cpu_seconds(pids), _own_cpu()
                    if kind == "stream":
                        timing = await _stream_loop(client, card.name, name, x, concurrency, seconds)
                    else:
                        timing = await _closed_loop(call, concurrency, seconds)
                    if keep:
                        cpu, own = _cpu_seconds(pids) - cpu0, _own_cpu() - own0
                        cell = _cell(system, batch, concurrency, timing, cpu, own, _peak_rss_mb(server.tree()))
                        report.cells.append(cell)
                        _progress(cell)
    finally:
        await client.close()
        if triton is not None:
            await triton.close()


def _perf_analyzer_input(card: ModelCard, path: Path) -> Path:
    """perf_analyzer's --input-data: the rows `_inputs` gives every system (it batches copies of each)."""
    rows = _inputs(card, 16)
    name = card.inputs[0].name
    entries = [{name: {"content": row.ravel().tolist(), "shape": list(row.shape)}} for row in rows]
    path.write_text(json.dumps({"data": entries}))
    return path


def run_perf_analyzer(system: str, server: ServerProcess, card: ModelCard, grid: Grid, report: Report, workdir: Path):
    """Every (batch, concurrency) cell through perf_analyzer: windows of `grid.seconds / 3` each at one
    concurrency; it reports the average of the first three in a row whose throughput and latency lie within
    100 % of each other, after three windows on a quiet machine, up to PERF_ANALYZER_MAX_WINDOWS on a loaded
    one (where a window's latency can double)."""
    data = _perf_analyzer_input(card, workdir / "perf_analyzer_data.json")
    window_ms = max(100, round(grid.seconds * 1000 / 3))
    for batch in grid.batches:
        for concurrency in grid.concurrencies:
            csv = workdir / f"{system}-b{batch}-c{concurrency}.csv"
            command = [str(PERF_ANALYZER), "-m", card.name, "-u", server.address, "-i", "grpc", "-b", str(batch)]
            command += [PERF_ANALYZER_MODES[system], "--concurrency-range", f"{concurrency}:{concurrency}"]
            command += ["--input-data", str(data), "--shared-memory", "none", "--measurement-interval", str(window_ms)]
            command += ["--stability-percentage", "100", "--max-trials", str(PERF_ANALYZER_MAX_WINDOWS)]
            command += ["-f", str(csv)]
            pids = server.tree()
            cpu0, children0 = _cpu_seconds(pids), _children_cpu()
            run = subprocess.run(command, capture_output=True, text=True, timeout=60 + 20 * grid.seconds)
            cpu, loadgen = _cpu_seconds(pids) - cpu0, _children_cpu() - children0
            if run.returncode != 0 or not csv.exists():
                report.unavailable[system] = _reason(RuntimeError(run.stdout + run.stderr))
                print(f"{system} failed: {report.unavailable[system]}", flush=True)
                return
            row = dict(zip(*[line.split(",") for line in csv.read_text().splitlines()[:2]], strict=True))
            rows_per_s = float(row["Inferences/Second"])
            seconds = 3 * window_ms / 1000
            requests = round(rows_per_s / batch * seconds)
            cell = Cell(
                system=system,
                batch=batch,
                concurrency=concurrency,
                requests=requests,
                rows=requests * batch,
                seconds=seconds,
                rows_per_s=rows_per_s,
                requests_per_s=rows_per_s / batch,
                p50_ms=float(row["p50 latency"]) / 1e3,  # perf_analyzer writes microseconds
                p99_ms=float(row["p99 latency"]) / 1e3,
                server_cpu_s=cpu,
                server_cpu_s_per_mrows=cpu / max(requests * batch, 1) * 1e6,
                server_peak_rss_mb=_peak_rss_mb(server.tree()),
                loadgen_cpu_s=loadgen,
                loadgen_cores=loadgen / seconds,
                errors=0,
            )
            report.cells.append(cell)
            _progress(cell)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _calsurr_command(
    repo: Path, port: int, threads: int, providers: list[str], batching: bool, extra: tuple[str, ...] = ()
) -> list[str]:
    """`calsurr serve` with this interpreter, on its own gRPC and metrics ports; `extra`: more options."""
    command = [sys.executable, "-c", "from calsurr.cli import main; main()", "serve", "--repo", str(repo)]
    command += ["--port", str(port)]
    command += ["--metrics-port", str(_free_port()), "--threads", str(threads), "--log-level", "warning"]
    command += [arg for p in providers for arg in ("--provider", p)]
    return [*command, "--batching" if batching else "--no-batching", *extra]


def run_calsurr(
    repo: Path,
    card: ModelCard,
    grid: Grid,
    report: Report,
    workdir: Path,
    threads: int,
    providers: list[str],
    wanted: set[str],
    extra: tuple[str, ...] = (),
) -> None:
    """One server with batching for unary, stream and tritonclient; a second without, for unary."""
    for batching, all_systems in (
        (True, ("calsurr_unary", "calsurr_stream", "calsurr_triton", *PERF_ANALYZER_MODES)),
        (False, ("calsurr_nobatch",)),
    ):
        systems = [s for s in all_systems if s in wanted]
        if not systems:
            continue
        port = _free_port()
        command = _calsurr_command(repo, port, threads, providers, batching, extra)
        log = workdir / f"calsurr-{'batching' if batching else 'nobatch'}.log"
        with ServerProcess(command, port, card.name, log, env={"PYTHONPATH": str(ROOT)}) as server:
            report.servers["calsurr" if batching else "calsurr_nobatch"] = {"loaded_rss_mb": server.loaded_rss_mb}
            for system in systems:
                if system in PERF_ANALYZER_MODES:
                    run_perf_analyzer(system, server, card, grid, report, workdir)
                    continue
                kind = system.removeprefix("calsurr_")
                asyncio.run(_drive(system, server, card, grid, report, kind=kind))


def ensure_mlserver_venv() -> Path:
    """bench/.venv-mlserver/bin/mlserver, created on demand (MLServer pins its own protobuf and grpcio)."""
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if mlserver.exists():
        return mlserver
    print(f"creating {MLSERVER_VENV} and installing {' '.join(MLSERVER_PACKAGES)} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True, capture_output=True, text=True)
    pip = [str(MLSERVER_VENV / "bin" / "python"), "-m", "pip", "install", "-q", *MLSERVER_PACKAGES]
    result = subprocess.run(pip, capture_output=True, text=True)
    if result.returncode != 0 or not mlserver.exists():
        shutil.rmtree(MLSERVER_VENV, ignore_errors=True)
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"pip install {' '.join(MLSERVER_PACKAGES)} failed: {' | '.join(tail)}")
    return mlserver


def run_mlserver(
    model_dir: Path, card: ModelCard, grid: Grid, report: Report, workdir: Path, threads: int, providers: list[str]
) -> None:
    """MLServer with its defaults and our runtime, driven by the same client over the same protocol."""
    mlserver = ensure_mlserver_venv()
    folder = workdir / "mlserver"
    (folder / card.name).mkdir(parents=True, exist_ok=True)
    port = _free_port()
    settings = {"grpc_port": port, "http_port": _free_port(), "metrics_port": _free_port(), "debug": False}
    settings["host"] = "127.0.0.1"
    (folder / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": card.name,
        "implementation": "mlserver_runtime.OnnxSurrogate",
        "parameters": {
            "uri": str((model_dir / MODEL_FILENAME).resolve()),
            "version": str(card.version),
            "extra": {"intra_op_threads": threads, "providers": providers},
        },
    }
    (folder / card.name / "model-settings.json").write_text(json.dumps(model_settings))
    version = subprocess.run([str(mlserver), "--version"], capture_output=True, text=True).stdout.strip()
    report.settings["mlserver"] = {"version": version, "parallel_workers": "default (1)", "adaptive_batching": "off"}
    env = {"PYTHONPATH": str(ROOT / "bench")}
    with ServerProcess([str(mlserver), "start", str(folder)], port, card.name, workdir / "mlserver.log", env) as server:
        report.servers["mlserver"] = {"loaded_rss_mb": server.loaded_rss_mb}
        asyncio.run(_drive("mlserver", server, card, grid, report))


# ----------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Grid:
    batches: tuple[int, ...]
    concurrencies: tuple[int, ...]
    seconds: float


def _find(cells: list[Cell], system: str, batch: int, concurrency: int | None = None) -> Cell | None:
    """The cell, or with `concurrency` None the system's best rows/s at that batch size."""
    found = [c for c in cells if c.system == system and c.batch == batch and c.requests > 0]
    if concurrency is not None:
        found = [c for c in found if c.concurrency == concurrency]
    return max(found, key=lambda c: c.rows_per_s, default=None)


def _ratio(name: str, a: Cell | None, b: Cell | None, attr: str, target: float, what: str) -> Ratio:
    if a is None or b is None:
        return Ratio(name, None, f">= {target:g}", None, what, "not measured")
    value = getattr(a, attr) / getattr(b, attr)
    cells = f"{a.system} b{a.batch} c{a.concurrency} / {b.system} b{b.batch} c{b.concurrency}"
    return Ratio(name, value, f">= {target:g}", value >= target, cells)


def compute_ratios(report: Report, grid: Grid) -> list[Ratio]:
    """The targets of issue 5, on the cells they name (or the nearest this grid has, said in `cells`)."""
    cells = report.cells
    big = max(grid.batches)
    mid = 256 if 256 in grid.batches else big
    one = min(grid.batches)
    conc = max(grid.concurrencies)
    ratios = [
        _ratio(
            f"calsurr / limit rows/s at batch {batch} (calsurr's best concurrency)",
            _find(cells, "calsurr_unary", batch),
            _find(cells, "limit", batch),
            "rows_per_s",
            target,
            "",
        )
        for batch, target in {big: 0.9 if big >= 1024 else 0.75, mid: 0.75}.items()
    ]
    for name, a, b, target in (
        ("calsurr / MLServer requests/s", "calsurr_unary", "mlserver", 3.0),
        ("stream / unary requests/s", "calsurr_stream", "calsurr_unary", 1.5),
        ("batching / no batching requests/s", "calsurr_unary", "calsurr_nobatch", 1.3),
    ):
        ratios.append(
            _ratio(
                f"{name} at batch {one}, concurrency {conc}",
                _find(cells, a, one, conc),
                _find(cells, b, one, conc),
                "requests_per_s",
                target,
                "",
            )
        )
    served, inproc = _find(cells, "calsurr_unary", one, 1), _find(cells, "limit", one, 1)
    if served and inproc:
        overhead = (served.p50_ms - inproc.p50_ms) * 1e3
        ratios.append(
            Ratio(
                f"batch {one} concurrency 1 p50 latency minus in-process call (us)",
                overhead,
                f"<= {P50_OVERHEAD_TARGET_US:g}",
                overhead <= P50_OVERHEAD_TARGET_US,
                f"{served.p50_ms * 1e3:.0f} us - {inproc.p50_ms * 1e3:.0f} us",
            )
        )
    loaded = report.servers.get("calsurr", {}).get("loaded_rss_mb")
    if loaded:
        peak = max((c.server_peak_rss_mb or 0) for c in cells if c.system.startswith("calsurr"))
        ratios.append(
            Ratio(
                "calsurr server RSS with the model loaded (MB)",
                loaded,
                f"<= {RSS_TARGET_MB:g}",
                loaded <= RSS_TARGET_MB,
                f"VmHWM when ready; peak under this grid's load {peak:.0f} MB",
            )
        )
    for ratio in ratios:
        if ratio.value is None:
            ratio.note = "not measured (system unavailable or cell not in the grid)"
    return ratios


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "nan"
    return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:.3e}"


def markdown(report: Report) -> str:
    m, s = report.machine, report.settings
    lines = [
        "# Serving benchmark",
        "",
        f"Model `{report.model['name']}` v{report.model['version']} ({report.model['process']}, "
        f"K = {report.model['members']}, {report.model['path']}); provider {report.model.get('limit_provider', '?')}, "
        f"intra-op threads {s['threads']}.",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), load average at start {m['load_average']}. "
        "**Client (load generator) and server share this machine's cores**, the same for every system.",
        f"Each cell: {s['cell_seconds']} s after {s['cell_seconds'] * WARMUP_FRACTION:.2g} s warm-up; "
        f"{'quick mode: the harness check, not a measurement. ' if s['quick'] else ''}"
        "limit = in-process onnxruntime, sequential calls (its CPU is the model's own).",
        "",
        "| system | batch | conc | rows/s | req/s | p50 ms | p99 ms | server CPU s / 1e6 rows | server peak RSS MB "
        "| load-gen CPU s (cores) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report.cells:
        lines.append(
            f"| {c.system} | {c.batch} | {c.concurrency} | {_fmt(c.rows_per_s)} | {_fmt(c.requests_per_s)} | "
            f"{_fmt(c.p50_ms)} | {_fmt(c.p99_ms)} | {_fmt(c.server_cpu_s_per_mrows)} | "
            f"{_fmt(c.server_peak_rss_mb)} | {_fmt(c.loadgen_cpu_s)} ({c.loadgen_cores:.2f}) | {c.errors} |"
        )
    for server, figures in report.servers.items():
        lines.append(f"\n{server}: RSS with the model loaded, before load: {_fmt(figures['loaded_rss_mb'])} MB")
    for system, reason in report.unavailable.items():
        lines.append(f"\n{system}: unavailable ({reason})")
    lines += ["", "## Targets", "", "| target | figure | wanted | status | cells |", "|---|---:|---|---|---|"]
    for r in report.ratios:
        status = "not measured" if r.met is None else ("met" if r.met else "missed")
        lines.append(f"| {r.name} | {_fmt(r.value)} | {r.target} | {status} | {r.cells or r.note} |")
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrencies = sorted({c.concurrency for c in report.cells if c.system != "limit"}) or [1]
    fig, axes = plt.subplots(2, len(concurrencies), figsize=(4.5 * len(concurrencies), 7), squeeze=False)
    systems = [s for s in ALL_SYSTEMS if any(c.system == s for c in report.cells)]
    colours = {s: f"C{i}" for i, s in enumerate(ALL_SYSTEMS)}
    for j, conc in enumerate(concurrencies):
        top, bottom = axes[0][j], axes[1][j]
        for system in systems:
            cells = sorted(
                (c for c in report.cells if c.system == system and (c.concurrency == conc or system == "limit")),
                key=lambda c: c.batch,
            )
            if not cells:
                continue
            batches = [c.batch for c in cells]
            style = "--" if system == "limit" else "-"
            top.plot(batches, [c.rows_per_s for c in cells], style, marker="o", color=colours[system], label=system)
            bottom.plot(batches, [c.p50_ms for c in cells], style, marker="o", color=colours[system], label=system)
            bottom.plot(batches, [c.p99_ms for c in cells], ":", marker="x", color=colours[system])
        top.set(xscale="log", yscale="log", title=f"concurrency {conc}", xlabel="batch size", ylabel="rows/s")
        bottom.set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency ms (p50 o, p99 x)")
        top.grid(True, which="both", alpha=0.3)
        bottom.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{report.model['name']}: client and server share {report.machine['cpus']} CPUs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- model


def build_demo_model(repo: Path, quick: bool, member_dtype: str = "float64") -> Path:
    """Train and export a demo model (accuracy beside the point: serving cost depends on the architecture).

    Quick: a 3-member 2x16 gg -> gg ensemble (seconds). Otherwise the issue's shape: a K = 8, 4x128 gg -> ggg
    deep ensemble (SiLU, the network the science configs had before the levers), trained briefly. Members in
    float64, as the README's serving and client tables were measured (`calsurr export`'s default is float32,
    several times faster at large batches: bench/member_precision.py), unless `member_dtype` says otherwise.
    """
    from calsurr.training.export import export_to_repository
    from calsurr.training.fit import FitConfig
    from calsurr.training.pipeline import TrainingConfig, train_surrogate

    if quick:
        config = TrainingConfig(
            process="gg_gg", n_events=2_000, members=3, hidden=16, layers=2, fit=FitConfig(epochs=3, seed=1), seed=1
        )
    else:
        fit = FitConfig(epochs=5, batch_size=1024, seed=1)
        config = TrainingConfig(process="gg_ggg", n_events=20_000, members=8, hidden=128, layers=4, fit=fit, seed=1)
    print(f"building a demo model: {config.process}, K = {config.members}, {config.layers}x{config.hidden}", flush=True)
    run = train_surrogate(config, show_progress=False)
    return export_to_repository(run, repo, config.process, version=1, member_dtype=member_dtype)


def _machine() -> dict:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "client_and_server_share_machine": True,
    }


def _reason(exc: Exception) -> str:
    """One line for the table: the error, and the last line of the server log it carries, if any."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return (lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}")[:400]


def _progress(cell: Cell) -> None:
    print(
        f"  {cell.system:16s} b{cell.batch:<5d} c{cell.concurrency:<3d} {cell.rows_per_s:12.0f} rows/s "
        f"{cell.requests_per_s:9.0f} req/s  p50 {cell.p50_ms:8.3f} ms  p99 {cell.p99_ms:8.3f} ms"
        + (f"  errors {cell.errors}" if cell.errors else ""),
        flush=True,
    )


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="exported model folder <repo>/<name>/<version> [default: build one]")
    parser.add_argument("--out", type=Path, help="results folder [default: bench/results/serving/, cuda/ in it]")
    parser.add_argument("--quick", action="store_true", help="tiny grid, a fraction of a second per cell")
    parser.add_argument("--with-mlserver", action="store_true", help="run MLServer in --quick mode too")
    parser.add_argument("--without-mlserver", action="store_true", help="skip MLServer")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads, every system (0: auto)")
    parser.add_argument("--seconds", type=float, help="measured seconds per cell")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (repeat) [default: the grid]")
    parser.add_argument("--concurrency", type=int, action="append", help="concurrencies (repeat)")
    parser.add_argument("--only", action="append", choices=ALL_SYSTEMS, help="systems to run (repeat) [all]")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra `calsurr serve` option, e.g. --serve-arg=--spinning"
    )
    parser.add_argument(
        "--member-dtype",
        choices=("float64", "float32"),
        default="float64",
        help="members of the model built when --model is not given [float64, as the README's tables]",
    )
    return parser.parse_args(argv)


def _model_folder(args: argparse.Namespace, workdir: Path) -> Path:
    if args.model is not None:
        return args.model.resolve()
    return build_demo_model(workdir / "repository", args.quick, args.member_dtype)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    providers = ["CPUExecutionProvider"]
    if args.device == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            print(f"CUDA unavailable: onnxruntime has {ort.get_available_providers()}; nothing measured", flush=True)
            return 0
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    grid = Grid(
        tuple(args.batch or (QUICK_BATCH_SIZES if args.quick else BATCH_SIZES)),
        tuple(args.concurrency or (QUICK_CONCURRENCIES if args.quick else CONCURRENCIES)),
        args.seconds or (QUICK_CELL_SECONDS if args.quick else CELL_SECONDS),
    )
    systems = set(args.only or ALL_SYSTEMS)
    if args.without_mlserver or (args.quick and not args.with_mlserver):
        systems.discard("mlserver")
    out = (args.out or RESULTS / ("cuda" if args.device == "cuda" else "")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="calsurr-bench-") as tmp:
        workdir = Path(tmp)
        model_dir = _model_folder(args, workdir)
        card = ModelCard.read(model_dir / "card.json")
        repo = model_dir.parents[1]
        report = Report(
            machine=_machine(),
            model={
                "name": card.name,
                "version": card.version,
                "process": card.process,
                "members": card.uncertainty.members,
                "path": str(model_dir),
            },
            settings={
                "quick": args.quick,
                "device": args.device,
                "providers": providers,
                "threads": args.threads,
                "serve_args": args.serve_arg,
                "cell_seconds": grid.seconds,
                "batches": grid.batches,
                "concurrencies": grid.concurrencies,
                "load_generator": "asyncio in the benchmark process (grpc.aio), closed loop; perf_analyzer "
                "(C++, its own process) for the calsurr_perfanalyzer systems",
                "systems": [s for s in ALL_SYSTEMS if s in systems],
            },
        )
        print(f"serving benchmark on {model_dir}; client and server share {os.cpu_count()} CPUs", flush=True)
        options = RuntimeOptions(providers=tuple(providers), intra_op_threads=args.threads)
        if "limit" in systems:
            run_limit(model_dir, card, options, grid, report)
        if systems & set(PERF_ANALYZER_MODES) and not PERF_ANALYZER.exists():
            for system in PERF_ANALYZER_MODES:
                if system in systems:
                    report.unavailable[system] = f"{PERF_ANALYZER} missing: run scripts/install_perf_analyzer.sh"
            systems -= set(PERF_ANALYZER_MODES)
        calsurr_systems = systems & set(CALSURR_SYSTEMS)
        if calsurr_systems:
            serve_args = tuple(args.serve_arg)
            run_calsurr(repo, card, grid, report, workdir, args.threads, providers, calsurr_systems, serve_args)
        if "mlserver" in systems:
            try:
                run_mlserver(model_dir, card, grid, report, workdir, args.threads, providers)
            except Exception as exc:  # reported, not fatal: the rest of the table stands
                report.unavailable["mlserver"] = _reason(exc)
                print(f"MLServer unavailable: {report.unavailable['mlserver']}", flush=True)
                for log in workdir.glob("mlserver*.log"):
                    shutil.copy(log, out / log.name)
        else:
            report.unavailable["mlserver"] = "skipped (--quick without --with-mlserver, --without-mlserver or --only)"
        report.ratios = compute_ratios(report, grid)

    (out / "results.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    table = markdown(report)
    (out / "results.md").write_text(table)
    plot(report, out / "serving.png")
    print(table)
    print(f"wrote {out / 'results.json'}, results.md and serving.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

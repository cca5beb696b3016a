"""The clients benchmark (issue 10): the C++ client against in-process onnxruntime, perf_analyzer, the Python
client and a bare server, side by side in one run on one exported model.

    .venv/bin/python bench/clients.py                           # builds the K = 8 gg -> ggg demo model; ~3 min
    .venv/bin/python bench/clients.py --model repo/gg_ggg/1     # an exported model: <repo>/<name>/<version>
    .venv/bin/python bench/clients.py --quick                   # the harness in seconds (CI; nothing measured)
    .venv/bin/python bench/clients.py --serve-arg=--inline-max-rows=0   # A/B a server setting

Rows of the table (client -> server), all on the same `model.onnx`:
- `inprocess`: onnxruntime in this process (calsurr.service.runtime.OnnxModel), sequential calls: the limit. At
  batch 1 with the server's threads and single-threaded, hot and after a 1 ms gap (the cache a server's run meets),
  and at the larger batches the targets compare with.
- `cpp_sync`: the C++ client (bench/cpp/clients_bench.cpp, built against the installed package), one thread,
  predict_into one row at a time, coalescer off: the synchronous call.
- `cpp_coalescer`: T threads each asking for one point in a loop, through the coalescer (default options);
  `cpp_coalescer_if1` the same from 64 threads with max_in_flight 1; `cpp_unary` the same with the coalescer off
  (one request per point, what Triton's client does).
- `cpp_array`: one predict() of 10^6 points: chunks of the server's preferred batch size, 4 in flight.
- `perf_analyzer`: Triton's C++ load generator (sync mode, `concurrency` threads) at the matching cells.
- `python`: calsurr's AsyncInferenceClient (grpc.aio), `concurrency` requests in flight, at the matching cells.
Servers: `calsurr serve` (default settings plus --serve-arg) and bench/bare_server.py (decode, onnxruntime on the
event loop thread, encode), both running through the whole benchmark; the batch-1 pair the p50 target compares
runs in alternating rounds, so that a change of load on the shared machine falls on both alike.

Client CPU is the load generator's own (getrusage: its self-report for the C++ program, RUSAGE_CHILDREN for
perf_analyzer, this process for the Python client); server CPU is read from /proc around each cell, as cores
busy over the cell's wall time. Client and servers share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import client_build  # noqa: E402
from serving import (  # noqa: E402
    PERF_ANALYZER,
    ServerProcess,
    _calsurr_command,
    _children_cpu,
    _closed_loop,
    _cpu_seconds,
    _free_port,
    _inputs,
    _machine,
    _own_cpu,
    _perf_analyzer_input,
    _unary_call,
    build_demo_model,
)

from calsurr.service.card import MODEL_FILENAME, ModelCard  # noqa: E402
from calsurr.service.client import AsyncInferenceClient, RetryPolicy  # noqa: E402
from calsurr.service.runtime import OnnxModel, RuntimeOptions  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "clients"
BENCH_CPP = ROOT / "bench" / "cpp"
BENCH_PROGRAM = "calsurr_client_bench"
BARE_SERVER = ROOT / "bench" / "bare_server.py"
CELL_SECONDS, QUICK_CELL_SECONDS = 5.0, 0.3
WARMUP_SECONDS, QUICK_WARMUP_SECONDS = 1.0, 0.1
ARRAY_ROWS, QUICK_ARRAY_ROWS = 1_000_000, 20_000
PAIR_ROUNDS = 4  # alternating rounds of the batch-1 pair (calsurr, bare) the p50 target compares
COALESCER_THREADS = (1, 8, 64)
INPROCESS_BATCHES = (1, 64, 256, 1024, 4096)
GAP_SECONDS = 1e-3  # the idle gap before each run of the cold in-process row
PIPELINE_IN_FLIGHT = 4  # the C++ client's max_in_flight default: the Python and perf_analyzer cells match it
PROGRAM_TIMEOUT_SECONDS = 600
PERF_ANALYZER_ATTEMPTS = 2

# Targets of issue 10, as ratios measured in the same run.
ARRAY_TARGET = 0.9  # 10^6 points through predict / in-process rows/s at its best batch size
COALESCER_TARGET = 0.5  # 64 threads x one point through the coalescer / in-process rows/s at batch 1024
COALESCER_REFERENCE_BATCH = 1024
P50_MARGIN_MS = 0.3  # C++ client batch 1 p50 on calsurr <= bare server's + this


@dataclass
class Row:
    """One client against one server (or in-process) at one batch size and concurrency (threads or in flight).
    Latencies per call in ms; CPU in seconds and in cores (CPU seconds per wall second)."""

    client: str
    server: str
    batch: int
    concurrency: int
    calls: int
    rows: int
    seconds: float
    rows_per_s: float | None
    p50_ms: float
    p99_ms: float
    client_cpu_s: float
    client_cores: float
    server_cores: float | None = None
    server_cpu_s_per_mrows: float | None = None
    errors: int = 0
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.client} -> {self.server} b{self.batch} c{self.concurrency}"


@dataclass
class Target:
    name: str
    value: float | None
    wanted: str
    met: bool | None
    figures: str


@dataclass
class Report:
    machine: dict
    model: dict
    settings: dict
    rows: list[Row] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def find(self, client: str, server: str, batch: int | None = None, concurrency: int | None = None) -> Row | None:
        found = [
            r
            for r in self.rows
            if r.client == client
            and r.server == server
            and (batch is None or r.batch == batch)
            and (concurrency is None or r.concurrency == concurrency)
        ]
        return found[0] if found else None


def _progress(row: Row) -> None:
    rate = "-" if row.rows_per_s is None else f"{row.rows_per_s:10.0f}"
    server = "" if row.server_cores is None else f"  server {row.server_cores:.2f} cores"
    errors = f"  errors {row.errors}" if row.errors else ""
    print(
        f"  {row.key:42s} {rate:>10s} rows/s  p50 {row.p50_ms:9.3f} ms  p99 {row.p99_ms:9.3f} ms  "
        f"client {row.client_cores:.2f} cores{server}{errors}",
        flush=True,
    )


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if not latencies:
        return float("nan"), float("nan")
    ms = np.asarray(latencies) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


# ----------------------------------------------------------------------------------------------- in-process


def run_inprocess(model_dir: Path, card: ModelCard, seconds: float, report: Report) -> None:
    """OnnxModel in this process, sequential calls: batch 1 with the server's threads and with one thread, hot and
    after a 1 ms gap before each run, then the larger batches."""
    name = card.inputs[0].name
    threads = report.settings["threads"]
    models = {
        threads: OnnxModel(model_dir / MODEL_FILENAME, card, RuntimeOptions(intra_op_threads=threads)),
        1: OnnxModel(model_dir / MODEL_FILENAME, card, RuntimeOptions(intra_op_threads=1)),
    }
    report.model["provider"] = models[threads].provider
    cells = [(threads, 1, 0.0), (1, 1, 0.0), (threads, 1, GAP_SECONDS), (1, 1, GAP_SECONDS)]
    cells += [(threads, batch, 0.0) for batch in INPROCESS_BATCHES if batch > 1]
    for intra, batch, gap in cells:
        model, x = models[intra], _inputs(card, batch)
        for _ in range(3):
            model.run({name: x})
        latencies: list[float] = []
        cpu0, started = _own_cpu(), time.perf_counter()
        while time.perf_counter() - started < seconds and (batch > 1 or len(latencies) < 200_000):
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter()
            model.run({name: x})
            latencies.append(time.perf_counter() - t0)
        wall, cpu = time.perf_counter() - started, _own_cpu() - cpu0
        p50, p99 = _percentiles(latencies)
        label = f"intra-op threads {intra or 'auto'}" + (f", {gap * 1e3:g} ms idle before each run" if gap else "")
        row = Row(
            client="inprocess" if not gap else "inprocess_gap",
            server=f"threads{intra}",
            batch=batch,
            concurrency=1,
            calls=len(latencies),
            rows=len(latencies) * batch,
            seconds=wall,
            rows_per_s=None if gap else len(latencies) * batch / wall,
            p50_ms=p50,
            p99_ms=p99,
            client_cpu_s=cpu,
            client_cores=cpu / wall,
            note=label + ("; latency of the run alone" if gap else ""),
        )
        report.rows.append(row)
        _progress(row)


# ----------------------------------------------------------------------------------------------- C++ client


def build_bench_program(report: Report) -> Path | None:
    """The clients built and installed (bench/client_build.py, shared with the tests), then bench/cpp against that
    install with find_package(calsurr_client); None, with the reason in `report.unavailable`, if either fails."""
    missing = client_build.missing_toolchain()
    if missing:
        report.unavailable["cpp"] = f"C++ toolchain missing ({', '.join(missing)}): {client_build.DEBIAN_PACKAGES}"
        return None
    try:
        build = client_build.build_clients()
        digest = hashlib.sha256()
        client_build.tree_digest(digest, (BENCH_CPP,))
        folder = build.root / f"bench-{digest.hexdigest()[:12]}"
        program = folder / BENCH_PROGRAM
        timings: dict[str, float] = {}
        if not program.exists():
            folder.mkdir(parents=True, exist_ok=True)
            log = folder / "build.log"
            configure = ["cmake", "-S", str(BENCH_CPP), "-B", str(folder), f"-DCMAKE_PREFIX_PATH={build.prefix}"]
            client_build.run_step("configure", configure, log, timings)
            client_build.run_step(
                "build", ["cmake", "--build", str(folder), f"-j{client_build.BUILD_JOBS}"], log, timings
            )
    except (client_build.BuildFailed, subprocess.SubprocessError, OSError) as exc:
        report.unavailable["cpp"] = str(exc).splitlines()[0]
        return None
    report.build = {
        "clients_hash": build.root.name,
        "clients_reused": build.reused,
        "clients_seconds": build.seconds,
        "ctest": build.ctest.get("summary", ""),
        "bench_program_seconds": timings or "reused",
        "prefix": str(build.prefix),
    }
    return program


class CppBench:
    """Runs the C++ bench program against one server and reads its JSON line back."""

    def __init__(self, program: Path, card: ModelCard, rows_file: Path, quick: bool):
        self.program, self.card, self.rows_file, self.quick = program, card, rows_file, quick
        self.n_particles = card.inputs[0].shape[1]

    def run(self, mode: str, server: ServerProcess, *flags: str) -> tuple[dict, float, float]:
        """The program's report, the server's CPU seconds over the run and the run's wall seconds."""
        command = [str(self.program), mode, server.address, self.card.name, str(self.n_particles), str(self.rows_file)]
        pids = server.tree()
        cpu0, t0 = _cpu_seconds(pids), time.perf_counter()
        result = subprocess.run([*command, *flags], capture_output=True, text=True, timeout=PROGRAM_TIMEOUT_SECONDS)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds(pids) - cpu0
        lines = result.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(
                f"{self.program.name} {mode} printed nothing (exit {result.returncode}): {result.stderr}"
            )
        return json.loads(lines[-1]), cpu, wall


def _cpp_row(client: str, server: str, out: dict, server_cpu: float, wall: float, concurrency: int, note="") -> Row:
    cores = server_cpu / wall if wall > 0 else None
    rate = out.get("rows_per_s") or None
    return Row(
        client=client,
        server=server,
        batch=out.get("batch", 0),
        concurrency=concurrency,
        calls=out.get("calls", 0),
        rows=out.get("rows", 0),
        seconds=out.get("seconds", 0.0),
        rows_per_s=rate,
        p50_ms=out.get("p50_ms", float("nan")),
        p99_ms=out.get("p99_ms", float("nan")),
        client_cpu_s=out.get("cpu_s", 0.0),
        client_cores=out.get("cpu_s", 0.0) / max(out.get("seconds", 0.0), 1e-9),
        server_cores=cores,
        server_cpu_s_per_mrows=None if not rate or cores is None else cores / rate * 1e6,
        errors=out.get("errors", 1),
        note=(note + (f"; first error: {out['first_error']}" if out.get("first_error") else "")).strip("; "),
        extra={
            k: out[k] for k in ("infer_requests", "coalesced_calls", "coalesced_requests", "chunk_rows") if k in out
        },
    )


def _merged_rounds(rounds: list[tuple[dict, float, float]], latency_files: list[Path]) -> tuple[dict, float, float]:
    """Alternating rounds of one cell as one: calls, rows, seconds and CPU added, percentiles over all calls."""
    latencies = np.concatenate([np.fromfile(path, dtype=np.float64) for path in latency_files])
    out = dict(rounds[0][0])
    for key in ("calls", "rows", "seconds", "cpu_s", "errors", "infer_requests"):
        out[key] = sum(r[0].get(key, 0) for r in rounds)
    out["rows_per_s"] = out["rows"] / out["seconds"] if out["seconds"] else 0.0
    out["p50_ms"], out["p99_ms"] = (float(np.percentile(latencies * 1e3, q)) for q in (50, 99))
    out["first_error"] = next((r[0]["first_error"] for r in rounds if r[0].get("first_error")), "")
    return out, sum(r[1] for r in rounds), sum(r[2] for r in rounds)


def run_cpp(
    bench: CppBench,
    calsurr: ServerProcess,
    bare: ServerProcess,
    seconds: float,
    warmup: float,
    array_rows: int,
    workdir: Path,
    report: Report,
) -> None:
    """The C++ client's cells: the batch-1 pair (calsurr and bare, alternating rounds), the coalescer from 1, 8
    and 64 threads, per-point unary from 64 threads, and the large array."""
    timing = ["--seconds", f"{seconds / PAIR_ROUNDS:g}", "--warmup", f"{warmup:g}"]
    pair: dict[str, list] = {"calsurr": [], "bare": []}
    files: dict[str, list[Path]] = {"calsurr": [], "bare": []}
    for round_ in range(PAIR_ROUNDS):
        for name, server in (("calsurr", calsurr), ("bare", bare)):
            path = workdir / f"latencies-{name}-{round_}.bin"
            pair[name].append(
                bench.run(
                    "loop",
                    server,
                    "--threads",
                    "1",
                    "--batch",
                    "1",
                    "--window-us",
                    "0",
                    "--latencies",
                    str(path),
                    *timing,
                )
            )
            files[name].append(path)
    for name in ("calsurr", "bare"):
        out, cpu, wall = _merged_rounds(pair[name], files[name])
        row = _cpp_row(
            "cpp_sync",
            name,
            out,
            cpu,
            wall,
            1,
            f"coalescer off; {PAIR_ROUNDS} rounds alternating with "
            f"the {'bare' if name == 'calsurr' else 'calsurr'} server",
        )
        report.rows.append(row)
        _progress(row)
    timing = ["--seconds", f"{seconds:g}", "--warmup", f"{warmup:g}"]
    for threads in COALESCER_THREADS:
        out, cpu, wall = bench.run("loop", calsurr, "--threads", str(threads), "--batch", "1", *timing)
        merged = out.get("coalesced_calls", 0) / max(out.get("infer_requests", 0), 1)
        row = _cpp_row(
            "cpp_coalescer",
            "calsurr",
            out,
            cpu,
            wall,
            threads,
            f"{threads} threads, one point per call; {merged:.1f} calls per request",
        )
        report.rows.append(row)
        _progress(row)
    threads = max(COALESCER_THREADS)
    out, cpu, wall = bench.run("loop", calsurr, "--threads", str(threads), "--batch", "1", "--in-flight", "1", *timing)
    merged = out.get("coalesced_calls", 0) / max(out.get("infer_requests", 0), 1)
    row = _cpp_row(
        "cpp_coalescer_if1",
        "calsurr",
        out,
        cpu,
        wall,
        threads,
        f"{threads} threads, max_in_flight 1 (default 4); {merged:.1f} calls per request",
    )
    report.rows.append(row)
    _progress(row)
    out, cpu, wall = bench.run("loop", calsurr, "--threads", str(threads), "--batch", "1", "--window-us", "0", *timing)
    row = _cpp_row("cpp_unary", "calsurr", out, cpu, wall, threads, f"{threads} threads, coalescer off")
    report.rows.append(row)
    _progress(row)
    out, cpu, wall = bench.run("array", calsurr, "--rows", str(array_rows))
    row = _cpp_row(
        "cpp_array",
        "calsurr",
        out,
        cpu,
        wall,
        out.get("max_in_flight", PIPELINE_IN_FLIGHT),
        f"one predict() of {array_rows} points in chunks of {out.get('chunk_rows', '?')}",
    )
    report.rows.append(row)
    _progress(row)


# ----------------------------------------------------------------------------------------------- other clients


def run_perf_analyzer(
    server: ServerProcess,
    name: str,
    card: ModelCard,
    batch: int,
    concurrency: int,
    seconds: float,
    workdir: Path,
    report: Report,
) -> None:
    """perf_analyzer --sync at one cell: three windows of seconds / 3, its CSV read back."""
    data = workdir / "perf_analyzer_data.json"
    if not data.exists():
        _perf_analyzer_input(card, data)
    window_ms = max(100, round(seconds * 1000 / 3))
    csv = workdir / f"pa-{name}-b{batch}-c{concurrency}.csv"
    command = [str(PERF_ANALYZER), "-m", card.name, "-u", server.address, "-i", "grpc", "-b", str(batch), "--sync"]
    command += ["--concurrency-range", f"{concurrency}:{concurrency}", "--input-data", str(data)]
    command += ["--shared-memory", "none", "--measurement-interval", str(window_ms)]
    command += ["--stability-percentage", "100", "--max-trials", "3", "-f", str(csv)]
    pids = server.tree()
    for attempt in range(PERF_ANALYZER_ATTEMPTS):  # on a busy host it may call three windows unstable
        csv.unlink(missing_ok=True)
        cpu0, children0, t0 = _cpu_seconds(pids), _children_cpu(), time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True, timeout=60 + 20 * seconds)
        wall, cpu, own = time.perf_counter() - t0, _cpu_seconds(pids) - cpu0, _children_cpu() - children0
        if run.returncode == 0 and csv.exists():
            break
        print(f"  perf_analyzer -> {name} b{batch} c{concurrency} failed (attempt {attempt + 1})", flush=True)
    else:
        report.unavailable[f"perf_analyzer -> {name} b{batch} c{concurrency}"] = (run.stdout + run.stderr)[-300:]
        return
    values = dict(zip(*[line.split(",") for line in csv.read_text().splitlines()[:2]], strict=True))
    rate = float(values["Inferences/Second"])
    measured = 3 * window_ms / 1000
    row = Row(
        client="perf_analyzer",
        server=name,
        batch=batch,
        concurrency=concurrency,
        calls=round(rate / batch * measured),
        rows=round(rate * measured),
        seconds=measured,
        rows_per_s=rate,
        p50_ms=float(values["p50 latency"]) / 1e3,  # microseconds in its CSV
        p99_ms=float(values["p99 latency"]) / 1e3,
        client_cpu_s=own,
        client_cores=own / wall,
        server_cores=cpu / wall,
        server_cpu_s_per_mrows=cpu / wall / rate * 1e6 if rate else None,
        note="--sync, concurrency threads; CPU over its whole run (start-up included)",
    )
    report.rows.append(row)
    _progress(row)


def run_python(
    server: ServerProcess,
    name: str,
    card: ModelCard,
    batch: int,
    concurrency: int,
    seconds: float,
    warmup: float,
    report: Report,
) -> None:
    """calsurr's AsyncInferenceClient: `concurrency` requests of `batch` rows in flight (asyncio, closed loop)."""

    async def drive():
        client = AsyncInferenceClient(server.address, timeout=120.0, retry=RetryPolicy(max_attempts=1))
        try:
            call = _unary_call(client, card.name, card.inputs[0].name, _inputs(card, batch))
            await _closed_loop(call, concurrency, warmup)
            pids = server.tree()
            cpu0, own0 = _cpu_seconds(pids), _own_cpu()
            timing = await _closed_loop(call, concurrency, seconds)
            return timing, _cpu_seconds(pids) - cpu0, _own_cpu() - own0
        finally:
            await client.close()

    timing, cpu, own = asyncio.run(drive())
    p50, p99 = _percentiles(timing.latencies)
    rate = len(timing.latencies) * batch / timing.seconds
    row = Row(
        client="python",
        server=name,
        batch=batch,
        concurrency=concurrency,
        calls=len(timing.latencies),
        rows=len(timing.latencies) * batch,
        seconds=timing.seconds,
        rows_per_s=rate,
        p50_ms=p50,
        p99_ms=p99,
        client_cpu_s=own,
        client_cores=own / timing.seconds,
        server_cores=cpu / timing.seconds,
        server_cpu_s_per_mrows=cpu / timing.seconds / rate * 1e6 if rate else None,
        errors=timing.errors,
        note="AsyncInferenceClient, raw contents, asyncio closed loop",
    )
    report.rows.append(row)
    _progress(row)


# ----------------------------------------------------------------------------------------------- report


def compute_targets(report: Report) -> list[Target]:
    targets = []
    best = max(
        (r for r in report.rows if r.client == "inprocess" and r.server == f"threads{report.settings['threads']}"),
        key=lambda r: r.rows_per_s or 0,
        default=None,
    )
    array = report.find("cpp_array", "calsurr")
    if array and best and array.rows_per_s:
        value = array.rows_per_s / best.rows_per_s
        figures = f"{array.rows_per_s:,.0f} / {best.rows_per_s:,.0f} (in-process at its best, batch {best.batch})"
        targets.append(
            Target(
                f"{array.batch:,} points through predict / in-process rows/s",
                value,
                f">= {ARRAY_TARGET}",
                value >= ARRAY_TARGET,
                figures,
            )
        )
    else:
        targets.append(Target("large array through predict / in-process rows/s", None, f">= {ARRAY_TARGET}", None, ""))
    reference = report.find("inprocess", f"threads{report.settings['threads']}", COALESCER_REFERENCE_BATCH)
    coalesced = report.find("cpp_coalescer", "calsurr", 1, max(COALESCER_THREADS))
    if reference and coalesced and coalesced.rows_per_s:
        value = coalesced.rows_per_s / reference.rows_per_s
        figures = f"{coalesced.rows_per_s:,.0f} / {reference.rows_per_s:,.0f}"
        unary = report.find("cpp_unary", "calsurr")
        if unary and unary.rows_per_s:
            figures += f" (coalescer off: {unary.rows_per_s / reference.rows_per_s:.3f})"
        targets.append(
            Target(
                f"{max(COALESCER_THREADS)} threads x one point, coalescer / in-process at batch "
                f"{COALESCER_REFERENCE_BATCH}",
                value,
                f">= {COALESCER_TARGET}",
                value >= COALESCER_TARGET,
                figures,
            )
        )
    else:
        targets.append(Target("coalescer / in-process", None, f">= {COALESCER_TARGET}", None, ""))
    ours, bare = report.find("cpp_sync", "calsurr"), report.find("cpp_sync", "bare")
    if ours and bare and ours.calls and bare.calls:
        value = ours.p50_ms - bare.p50_ms
        targets.append(
            Target(
                "batch 1, concurrency 1, C++ client: p50 calsurr - p50 bare server (ms)",
                value,
                f"<= {P50_MARGIN_MS}",
                value <= P50_MARGIN_MS,
                f"{ours.p50_ms:.3f} - {bare.p50_ms:.3f} ms",
            )
        )
    else:
        targets.append(Target("batch 1 p50 calsurr - bare (ms)", None, f"<= {P50_MARGIN_MS}", None, ""))
    return targets


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value != value:
        return "nan"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def markdown(report: Report) -> str:
    m, s = report.machine, report.settings
    lines = [
        "# Clients benchmark",
        "",
        f"Model `{report.model['name']}` v{report.model['version']} ({report.model['process']}, K = "
        f"{report.model['members']}, {report.model['path']}); onnxruntime {report.model.get('provider', '?')}, "
        f"intra-op threads {s['threads'] or 'auto'} (servers and in-process alike).",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}); load average at start {m['load_average']}, at the end "
        f"{m.get('load_average_end', '?')}. **Clients and servers share these cores.** "
        f"{s['cell_seconds']} s per cell. "
        + ("Quick mode: the harness check, not a measurement. " if s["quick"] else "")
        + (f"calsurr serve {' '.join(s['serve_args'])}." if s["serve_args"] else ""),
        "",
        "| client | server | batch | conc | rows/s | p50 ms | p99 ms | client cores | server cores "
        "| server CPU s / 1e6 rows | errors | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.client} | {r.server} | {r.batch} | {r.concurrency} | {_fmt(r.rows_per_s)} | {_fmt(r.p50_ms)} | "
            f"{_fmt(r.p99_ms)} | {r.client_cores:.2f} | {_fmt(r.server_cores, 2)} | "
            f"{_fmt(r.server_cpu_s_per_mrows)} | {r.errors} | {r.note} |"
        )
    for what, reason in report.unavailable.items():
        lines.append(f"\n{what}: unavailable ({reason})")
    if report.build:
        lines.append(f"\nC++ build: {json.dumps(report.build)}")
    lines += ["", "## Targets", "", "| target | figure | wanted | status | figures |", "|---|---:|---|---|---|"]
    for t in report.targets:
        status = "not measured" if t.met is None else ("met" if t.met else "missed")
        lines.append(f"| {t.name} | {_fmt(t.value)} | {t.wanted} | {status} | {t.figures} |")
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.rows_per_s]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.32 * len(rows) + 1.5), sharey=True)
    labels = [r.key for r in rows]
    clients = sorted({r.client for r in rows})
    colours = [f"C{clients.index(r.client)}" for r in rows]
    y = np.arange(len(rows))
    left.barh(y, [r.rows_per_s for r in rows], color=colours)
    left.set(xscale="log", xlabel="rows/s", yticks=y, yticklabels=labels)
    right.barh(y, [r.p50_ms for r in rows], color=colours)
    right.scatter([r.p99_ms for r in rows], y, marker="|", color="k", label="p99")
    right.set(xscale="log", xlabel="latency per call, ms (bar p50, | p99)")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(True, which="both", axis="x", alpha=0.3)
        axis.invert_yaxis()
    fig.suptitle(f"{report.model['name']}: clients and servers share {report.machine['cpus']} CPUs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="exported model folder <repo>/<name>/<version> [default: build one]")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder [bench/results/clients/]")
    parser.add_argument("--quick", action="store_true", help="a tiny model and a fraction of a second per cell")
    parser.add_argument("--seconds", type=float, help="measured seconds per cell")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads, everywhere (0: auto)")
    parser.add_argument("--array-rows", type=int, help=f"rows of the large array [{ARRAY_ROWS}]")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra `calsurr serve` option, e.g. --serve-arg=--spinning"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = args.seconds or (QUICK_CELL_SECONDS if args.quick else CELL_SECONDS)
    warmup = QUICK_WARMUP_SECONDS if args.quick else WARMUP_SECONDS
    array_rows = args.array_rows or (QUICK_ARRAY_ROWS if args.quick else ARRAY_ROWS)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="calsurr-bench-clients-") as tmp:
        workdir = Path(tmp)
        model_dir = args.model.resolve() if args.model else build_demo_model(workdir / "repository", args.quick)
        card = ModelCard.read(model_dir / "card.json")
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
                "threads": args.threads,
                "cell_seconds": seconds,
                "array_rows": array_rows,
                "serve_args": args.serve_arg,
                "pair_rounds": PAIR_ROUNDS,
            },
        )
        print(
            f"clients benchmark on {model_dir}; {os.cpu_count()} CPUs, load {report.machine['load_average']}",
            flush=True,
        )
        program = build_bench_program(report)
        run_inprocess(model_dir, card, seconds, report)
        rows_file = workdir / "rows.bin"
        _inputs(card, 16).tofile(rows_file)
        repo = model_dir.parents[1]
        port, bare_port = _free_port(), _free_port()
        command = _calsurr_command(repo, port, args.threads, ["CPUExecutionProvider"], True, tuple(args.serve_arg))
        bare_command = [sys.executable, str(BARE_SERVER), "--model", str(model_dir), "--port", str(bare_port)]
        bare_command += ["--threads", str(args.threads)]
        env = {"PYTHONPATH": str(ROOT)}
        with (
            ServerProcess(command, port, card.name, workdir / "calsurr.log", env=env) as calsurr,
            ServerProcess(bare_command, bare_port, card.name, workdir / "bare.log", env=env) as bare,
        ):
            servers = {"calsurr": calsurr, "bare": bare}
            if program is not None:
                run_cpp(
                    CppBench(program, card, rows_file, args.quick),
                    calsurr,
                    bare,
                    seconds,
                    warmup,
                    array_rows,
                    workdir,
                    report,
                )
            if PERF_ANALYZER.exists():
                cells = [("bare", 1, 1), ("calsurr", 1, 1)]
                cells += [("calsurr", 1, t) for t in COALESCER_THREADS if t > 1]
                cells += [("calsurr", 4096 if not args.quick else 256, PIPELINE_IN_FLIGHT)]
                for name, batch, concurrency in cells:
                    run_perf_analyzer(servers[name], name, card, batch, concurrency, seconds, workdir, report)
            else:
                report.unavailable["perf_analyzer"] = f"{PERF_ANALYZER} missing: run scripts/install_perf_analyzer.sh"
            cells = [("bare", 1, 1), ("calsurr", 1, 1)]
            cells += [("calsurr", 1, t) for t in COALESCER_THREADS if t > 1]
            cells += [("calsurr", 4096 if not args.quick else 256, PIPELINE_IN_FLIGHT)]
            for name, batch, concurrency in cells:
                run_python(servers[name], name, card, batch, concurrency, seconds, warmup, report)
        report.machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
        report.settings["wall_seconds"] = round(time.monotonic() - started, 1)
        report.targets = compute_targets(report)
    (out / "results.json").write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    table = markdown(report)
    (out / "results.md").write_text(table)
    with contextlib.suppress(ImportError):
        plot(report, out / "clients.png")
    print(table)
    print(f"wrote {out / 'results.json'}, results.md and clients.png ({report.settings['wall_seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

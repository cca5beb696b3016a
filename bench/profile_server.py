"""Where a calsurr server spends its CPU under one load cell: py-spy on `calsurr serve`, top functions printed.

    .venv/bin/python bench/profile_server.py --model repo/gg_ggg/1                  # batch 1, concurrency 64, unary
    .venv/bin/python bench/profile_server.py --model repo/gg_ggg/1 --kind stream --batch 1 --concurrency 64

Runs the server (as bench/serving.py does) under `py-spy record`, drives it with the same load generator,
then writes the collapsed stacks (`profile.txt`, for flamegraph tools), a flame graph (`profile.svg`) and a
table of the functions with the most samples, self and inclusive, under `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serving import (  # noqa: E402
    ServerProcess,
    _calsurr_command,
    _closed_loop,
    _free_port,
    _inputs,
    _stream_loop,
    _unary_call,
)

from calsurr.service.card import ModelCard  # noqa: E402
from calsurr.service.client import AsyncInferenceClient, RetryPolicy  # noqa: E402

SAMPLING_RATE = 250  # per second: py-spy's own CPU stays small beside the server's
TOP = 25


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def _frame(frame: str) -> str:
    """'function (path/file.py:line)' -> 'function (file.py)': lines vary within a function."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


def top_functions(collapsed: Path, top: int = TOP) -> tuple[int, list[tuple[str, int, int]]]:
    """Total samples, and (function, self samples, inclusive samples) for the busiest functions."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_frame(f) for f in stack.split(";")]  # outermost first, as py-spy's raw format writes them
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
    names = sorted(inclusive, key=lambda n: (own[n], inclusive[n]), reverse=True)[:top]
    return total, [(name, own[name], inclusive[name]) for name in names]


async def _load(address: str, card: ModelCard, kind: str, batch: int, concurrency: int, seconds: float) -> int:
    client = AsyncInferenceClient(address, timeout=120.0, retry=RetryPolicy(max_attempts=1))
    name = card.inputs[0].name
    x = _inputs(card, batch)
    try:
        if kind == "stream":
            timing = await _stream_loop(client, card.name, name, x, concurrency, seconds)
        else:
            timing = await _closed_loop(_unary_call(client, card.name, name, x), concurrency, seconds)
    finally:
        await client.close()
    return len(timing.latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="exported model folder <repo>/<name>/<version>")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile")
    parser.add_argument("--kind", choices=("unary", "stream"), default="unary")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-batching", action="store_true")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra `calsurr serve` option, e.g. --serve-arg=--spinning"
    )
    args = parser.parse_args(argv)

    model_dir = args.model.resolve()
    card = ModelCard.read(model_dir / "card.json")
    args.out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    providers = ["CPUExecutionProvider"]
    command = _calsurr_command(model_dir.parents[1], port, 0, providers, not args.no_batching, tuple(args.serve_arg))
    with tempfile.TemporaryDirectory(prefix="calsurr-profile-") as tmp:
        log = Path(tmp) / "server.log"
        with ServerProcess(command, port, card.name, log, env={"PYTHONPATH": str(ROOT)}) as server:
            asyncio.run(_load(server.address, card, args.kind, args.batch, args.concurrency, 1.0))  # warm up
            record = [_py_spy(), "record", "--pid", str(server.process.pid), "--rate", str(SAMPLING_RATE)]
            # --nonblocking: sampling never pauses the server (py-spy's --native would, and slows it tenfold)
            record += ["--duration", str(int(args.seconds) + 1), "--nonblocking"]
            collapsed, svg = args.out / "profile.txt", args.out / "profile.svg"
            spies = [
                subprocess.Popen([*record, "--format", "raw", "--output", str(collapsed)], stdout=subprocess.DEVNULL),
                subprocess.Popen([*record, "--format", "flamegraph", "--output", str(svg)], stdout=subprocess.DEVNULL),
            ]
            time.sleep(0.5)
            requests = asyncio.run(_load(server.address, card, args.kind, args.batch, args.concurrency, args.seconds))
            for spy in spies:
                spy.wait(60)
    total, rows = top_functions(collapsed)
    lines = [
        f"# Server profile: {args.kind}, batch {args.batch}, concurrency {args.concurrency}, "
        f"{'no batching' if args.no_batching else 'batching'} {' '.join(args.serve_arg)}; "
        f"{requests} requests in {args.seconds:g} s "
        f"({requests / args.seconds:.0f}/s), {total} samples at {SAMPLING_RATE}/s",
        "",
        "| function | self % | inclusive % |",
        "|---|---:|---:|",
        *[f"| `{name}` | {100 * own / total:.1f} | {100 * inc / total:.1f} |" for name, own, inc in rows],
    ]
    table = "\n".join(lines) + "\n"
    (args.out / "profile.md").write_text(table)
    print(table)
    print(f"wrote {args.out}/profile.md, profile.txt (collapsed stacks) and profile.svg", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

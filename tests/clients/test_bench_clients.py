"""The clients benchmark's harness runs (bench/clients.py --quick: a fraction of a second per cell; no timing is
asserted, only that every row is measured and every target computed, so that it does not rot)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.client_build import ROOT

pytestmark = pytest.mark.slow

CLIENTS_BENCH = ROOT / "bench" / "clients.py"
PERF_ANALYZER = Path(sys.executable).with_name("perf_analyzer")  # scripts/install_perf_analyzer.sh
EXPECTED = {
    ("inprocess", "threads0", 1, 1),
    ("inprocess", "threads1", 1, 1),
    ("inprocess", "threads0", 1024, 1),
    ("cpp_sync", "calsurr", 1, 1),
    ("cpp_sync", "bare", 1, 1),
    ("cpp_coalescer", "calsurr", 1, 1),
    ("cpp_coalescer", "calsurr", 1, 8),
    ("cpp_coalescer", "calsurr", 1, 64),
    ("cpp_unary", "calsurr", 1, 64),
    ("python", "calsurr", 1, 1),
    ("python", "bare", 1, 1),
    ("python", "calsurr", 1, 64),
}


def test_quick_clients_benchmark_fills_every_row(client_build, tmp_path):
    result = subprocess.run(
        [sys.executable, str(CLIENTS_BENCH), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["build"]["prefix"] == str(client_build.prefix)  # the tests' build, reused
    rows = {(r["client"], r["server"], r["batch"], r["concurrency"]): r for r in report["rows"]}
    assert set(rows) >= EXPECTED, sorted(EXPECTED - set(rows))
    arrays = [r for r in report["rows"] if r["client"] == "cpp_array"]
    assert len(arrays) == 1 and arrays[0]["rows"] == report["settings"]["array_rows"], arrays
    if PERF_ANALYZER.exists():
        wanted = {("perf_analyzer", "bare", 1, 1), ("perf_analyzer", "calsurr", 1, 64)}
        assert set(rows) >= wanted, report["unavailable"]
    print((tmp_path / "results.md").read_text())  # shown when the test fails (-rA or a failure report)
    for row in report["rows"]:
        assert row["errors"] == 0, row
        assert row["calls"] > 0 and row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"], row
        if row["client"] != "inprocess_gap":
            assert row["rows_per_s"] > 0, row
        if row["client"] not in ("inprocess", "inprocess_gap"):
            assert row["server_cores"] is not None and row["client_cpu_s"] >= 0, row
    coalesced = rows[("cpp_coalescer", "calsurr", 1, 64)]["extra"]
    assert coalesced["coalesced_requests"] < coalesced["coalesced_calls"], coalesced  # calls were merged
    assert [t["met"] is not None for t in report["targets"]] == [True, True, True], report["targets"]
    markdown = (tmp_path / "results.md").read_text()
    assert "| cpp_coalescer | calsurr |" in markdown and "## Targets" in markdown and "share these cores" in markdown

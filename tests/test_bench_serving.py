"""The serving benchmark's harness runs (a fraction of a second per cell, no timing asserted: it must not rot)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVING = ROOT / "bench" / "serving.py"
QUICK_SYSTEMS = [
    "limit",
    "calsurr_unary",
    "calsurr_stream",
    "calsurr_triton",
    "calsurr_perfanalyzer",
    "calsurr_perfanalyzer_stream",
    "calsurr_nobatch",
]
POSITIVE = ("requests", "rows_per_s", "requests_per_s", "p50_ms", "p99_ms", "server_cpu_s_per_mrows", "loadgen_cpu_s")


@pytest.mark.slow
def test_quick_serving_benchmark_fills_every_cell(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SERVING), "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "results.json").read_text())
    settings = report["settings"]
    assert settings["systems"] == QUICK_SYSTEMS and report["machine"]["client_and_server_share_machine"]
    assert "mlserver" in report["unavailable"]  # skipped in --quick unless --with-mlserver
    cells = {(c["system"], c["batch"], c["concurrency"]): c for c in report["cells"]}
    for system in QUICK_SYSTEMS:
        concurrencies = [1] if system == "limit" else settings["concurrencies"]
        for batch in settings["batches"]:
            for concurrency in concurrencies:
                cell = cells[(system, batch, concurrency)]
                assert cell["errors"] == 0, cell
                assert all(cell[key] > 0 for key in POSITIVE), cell
                assert system == "limit" or cell["server_peak_rss_mb"] > 0, cell
    assert {r["name"].split(" at ")[0] for r in report["ratios"]} >= {"stream / unary requests/s"}
    markdown = (tmp_path / "results.md").read_text()
    assert "| calsurr_stream |" in markdown and "share this machine" in markdown
    assert (tmp_path / "serving.png").stat().st_size > 0


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU machine runs it for real")
def test_cuda_on_a_cpu_only_machine_stops_cleanly(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(SERVING), "--device", "cuda", "--quick", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CUDA unavailable" in result.stdout
    assert not (tmp_path / "results.json").exists()


def test_profile_table_counts_self_and_inclusive_samples_per_function(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from profile_server import top_functions

    collapsed = tmp_path / "profile.txt"
    collapsed.write_text(
        "main (a/x.py:3);infer (b/dataplane.py:10);run (c/runtime.py:5) 6\n"
        "main (a/x.py:4);infer (b/dataplane.py:12) 3\n"
        "worker (d/thread.py:9);run (c/runtime.py:7) 1\n"
    )
    total, rows = top_functions(collapsed)
    table = {name: (own, inclusive) for name, own, inclusive in rows}
    assert total == 10
    assert table["run (runtime.py)"] == (7, 7)  # two lines of one function, two threads
    assert table["infer (dataplane.py)"] == (3, 9)
    assert table["main (x.py)"] == (0, 9) and table["worker (thread.py)"] == (0, 1)
    assert [name for name, _, _ in rows][:2] == ["run (runtime.py)", "infer (dataplane.py)"]

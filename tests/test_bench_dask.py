"""bench/dask_predict.py --quick: the harness runs, checks every Dask row against the single-process run and
reports rows/s side by side. No timing is asserted (bench/dask_predict.py without --quick measures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[1] / "bench" / "dask_predict.py"


def test_the_quick_run_reports_both_modes_on_the_same_rows(tiny_repository, tmp_path):
    model = tiny_repository / "gg_gg" / "1"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--model", str(model), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(r["mode"], r["workers"]) for r in results["runs"]] == [("single process", 1), ("dask", 2)]
    assert results["rows"] == results["settings"]["events"]
    assert all(r["rows_per_second"] > 0 for r in results["runs"])
    assert "| dask | 2 |" in (tmp_path / "results.md").read_text()

"""bench/member_precision.py's harness runs (a tiny model, short cells; no timing asserted: it must not rot)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "member_precision.py"


@pytest.mark.slow
def test_quick_member_precision_fills_every_figure(tmp_path):
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["agreement_max_relative"]) == {"mean", "sigma_stat", "sigma_syst", "sigma_tot"}
    assert 0 < report["agreement_max_relative"]["mean"] < 1e-5
    assert len(report["in_process"]) == 4 and all(v > 0 for r in report["in_process"].values() for v in r.values())
    for cells in report["served"].values():
        assert all(c["rows_per_s"] > 0 and c["errors"] == 0 for c in cells.values())
    assert "float32 / float64" in (tmp_path / "results.md").read_text()

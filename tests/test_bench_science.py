"""The science benchmark's harness runs (tiny budgets, no targets asserted: it must not rot)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_quick_science_benchmark_writes_its_table(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "science.py"), "--quick", "--out", str(tmp_path)]
    command += ["--only", "gg_ggg_repulsive_ensemble", "--only", "calorimeter_bayesian"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in rows] == ["gg_ggg_repulsive_ensemble", "calorimeter_bayesian"]
    assert rows[1]["sigma_syst_ratio"] > 0 and "sigma_syst within 5 %" in rows[1]["checks"]
    assert {"pulls as learned", "factor 0.9-1.1"} <= set(rows[0]["checks"])
    assert set(rows[0]["conditional_coverage_68"]) == {"min s_ij / s", "mean", "sigma_tot / |mean|"}
    low, high = rows[0]["member_pull2_by_width"]
    assert 0 < low <= high  # each member's squared pulls in bins of its own width
    assert "68 % coverage 60-76 % in every bin of log_energy_em" in rows[1]["checks"]
    for name in ("pulls.png", "conditional_calibration.png"):
        assert (tmp_path / "gg_ggg_repulsive_ensemble" / name).is_file()
    assert "| gg_ggg_repulsive_ensemble |" in (tmp_path / "results.md").read_text()


def test_quick_lever_study_compares_each_lever_with_its_base(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "science.py"), "--quick", "--out", str(tmp_path)]
    command += ["--only", "levers_gg_gggg", "--lever", "parke_taylor+canonical", "--lever", "lgatr"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "levers_gg_gggg" / "results.json").read_text())
    assert [r["name"] for r in rows] == ["base", "lgatr", "parke_taylor+canonical"]
    assert rows[2]["lever"] == "both" and 0 <= rows[2]["within_1_percent"] <= 1
    table = (tmp_path / "levers_gg_gggg" / "results.md").read_text().splitlines()
    assert "| x base |" in table[0] and table[2].split(" | ")[4] == "1.00"  # the base against itself
    assert "trained within 20 min" in rows[0]["checks"]
    # each row's exported graph timed in-process: its serving cost beside its accuracy
    assert "| served rows/s | served batch-1 us |" in table[0]
    for row in rows:
        assert row["served_rows_per_second"] > 0 and row["served_batch1_us"] > 0, row["name"]
        assert row["served_member_dtype"] in ("float32", "float64")

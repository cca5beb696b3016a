"""bench/events.py --quick runs its whole harness (training, server, every cell, tables, plots); no timing or
closure assertion: tiny budgets say nothing about either."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_bench_events_quick(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "events.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    cells = {(c["process"], c["sampler"]) for c in results["cells"]}
    assert cells == {(p, s) for p in ("gg_ggg", "gg_gggg") for s in ("flat", "vegas")}
    for cell in results["cells"]:
        assert set(cell["methods"]) == {"standard", "two-stage", "gated"}
        assert "f_eff" in cell["methods"]["two-stage"] and "closure" in cell["methods"]["gated"]
    assert "| gg_gggg | vegas | gated |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "gain.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "gg_ggg_flat" / "min_delta_r.png").is_file()

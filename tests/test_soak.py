"""The soak run's short form (60 s): mixed unary and streaming traffic with 1 % malformed requests while new
versions and broken ones are published. Asserts on counts, never on time (bench/soak.py runs the long form)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow
SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
SECONDS = 60


def test_a_minute_of_soak_serves_every_request_and_never_a_broken_version(tiny_repository, tmp_path):
    command = [sys.executable, str(SOAK), "--model", str(tiny_repository / TINY_MODEL / "1"), "--out", str(tmp_path)]
    command += ["--duration", str(SECONDS), "--version-every", "10", "--broken-every", "25", "--sample-every", "5"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=SECONDS + 240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    soak = json.loads((tmp_path / "results.json").read_text())
    assert soak["unexpected_errors"] == {}, soak["unexpected_examples"]
    assert soak["malformed_sent"] > 0 and soak["expected_errors"] == {"INVALID_ARGUMENT": soak["malformed_sent"]}
    assert len(soak["versions_published"]) >= 4 and len(soak["broken_offered"]) >= 2
    assert soak["broken_served"] == 0
    served_by = {int(v) for v in soak["served_by_version"]}
    assert len(served_by) >= 4 and not served_by & set(soak["broken_offered"])
    assert max(served_by) >= max(soak["versions_published"][:-1])  # the last but one published took over
    assert soak["served"] > 1000 and len(soak["samples"]) >= SECONDS // 5
    fds = [s["open_fds"] for s in soak["samples"]]
    assert max(fds) - min(fds) <= 8, fds  # no descriptor leak across version swaps
    assert {m["kind"] for m in soak["per_minute"]} == {"unary", "stream"}
    assert (tmp_path / "soak.png").stat().st_size > 0

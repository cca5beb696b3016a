"""deploy/grafana: the dashboard JSON is what deploy/grafana/dashboard.py generates, well formed for Grafana, and
asks only for series a calsurr server exports (tests/deploy/test_live_prometheus.py evaluates every query)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.deploy.conftest import DEPLOY
from tests.deploy.metric_names import exported_series, metric_names

DASHBOARD = json.loads((DEPLOY / "grafana" / "calsurr-dashboard.json").read_text())
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}
REQUIRED_PANELS = (
    "Requests by status code",
    "Error ratio",
    "Latency p50 / p90 / p99",
    "Queue and compute time",
    "Rows per second",
    "Batch size (rows per run)",
    "Requests per batch",
    "Queue depth",
    "In flight",
    "Models loaded",
    "Load failures",
    "Execution provider",
    "Served relative uncertainty sigma_tot/|mean|: $model",
    "Out-of-domain rate",
)


def panels() -> list[dict]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def test_the_committed_json_is_what_the_code_generates():
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "grafana" / "dashboard.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_dashboard_has_the_panels_and_variables_operators_need():
    titles = [p["title"] for p in panels()]
    for title in REQUIRED_PANELS:
        assert title in titles
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert list(variables) == ["datasource", "instance", "model", "version"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    heatmap = next(p for p in panels() if p["type"] == "heatmap")
    assert heatmap["repeat"] == "model" and heatmap["targets"][0]["format"] == "heatmap"
    assert "calsurr_relative_uncertainty_ratio_bucket" in heatmap["targets"][0]["expr"]


def test_ids_grid_and_references_are_consistent():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in DASHBOARD["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']} overlaps another"
        cells |= mine
    defined = {v["name"] for v in DASHBOARD["templating"]["list"]} | GRAFANA_BUILTINS
    for p in panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"]
            used = set(re.findall(r"\$\{?(\w+)", t["expr"]))
            assert used <= defined, f"{p['title']}: undefined {used - defined}"


def test_every_query_asks_for_series_the_server_exports():
    queries = [t["expr"] for p in panels() for t in p["targets"]]
    queries += [v["definition"] for v in DASHBOARD["templating"]["list"] if v["type"] == "query"]
    for expr in queries:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported_series(), f"{expr}: {names - exported_series()}"

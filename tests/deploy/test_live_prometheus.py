"""The dashboard and the rules against a real Prometheus (Debian's package, bound to loopback, 1 s scrapes)
scraping a real `calsurr serve` under traffic: every panel query and variable returns data, every rule
evaluates without error and every recording rule has data, and the chart's KEDA query answers one number."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from calsurr.service.client import InferenceClient
from tests.conftest import TINY_MODEL
from tests.deploy.conftest import DEPLOY, NAMESPACE, RELEASE, find, render, require_tool

pytestmark = pytest.mark.slow
CALSURR = Path(sys.executable).with_name("calsurr")
RULES = DEPLOY / "prometheus" / "calsurr-rules.yaml"
DASHBOARD = json.loads((DEPLOY / "grafana" / "calsurr-dashboard.json").read_text())
SCRAPE_SECONDS = 1
# Grafana's built-ins as it would fill them at a 1 s scrape interval and a 5-minute range.
BUILTINS = {"$__rate_interval": "10s", "$__interval": "1s", "$__range": "5m"}
# The labels prometheus-operator puts on a ServiceMonitor's targets, which the chart's KEDA query selects by.
TARGET_LABELS = {"namespace": NAMESPACE, "service": RELEASE, "pod": f"{RELEASE}-0", "container": "calsurr"}
DEADLINE_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def repository(tiny_repository, tmp_path_factory):
    """The tiny model's version 1, and a broken version 2 (unreadable graph): served v1, one load failure."""
    repo = tmp_path_factory.mktemp("monitored") / "repository"
    shutil.copytree(tiny_repository, repo)
    broken = repo / TINY_MODEL / "2"
    broken.mkdir()
    shutil.copy(repo / TINY_MODEL / "1" / "card.json", broken / "card.json")
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    return repo


@pytest.fixture(scope="module")
def server(repository):
    process = subprocess.Popen(
        [str(CALSURR), "serve", "--repo", str(repository), "--port", "0", "--metrics-port", "0"]
        + ["--log-level", "error"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen, match = [], None
    while match is None and process.poll() is None and len(seen) < 50:
        seen.append(process.stdout.readline())  # the broken version's load error comes first
        match = re.search(r"on 127\.0\.0\.1:(\d+); metrics on http://127\.0\.0\.1:(\d+)/metrics", seen[-1])
    if not match:
        process.kill()
        pytest.fail(f"server did not start: {''.join(seen)}{process.stdout.read()}")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    yield {"address": f"127.0.0.1:{match.group(1)}", "metrics": f"127.0.0.1:{match.group(2)}"}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    binary = require_tool("prometheus", "prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "calsurr", "static_configs": [{"targets": [server["metrics"]], "labels": TARGET_LABELS}]}
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(folder / "prometheus.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}"]
        + [f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h", "--log.level=warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), f"Prometheus at {url} to be ready (log: {folder / 'prometheus.log'})")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(condition, what: str, timeout: float = DEADLINE_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def api(url: str, path: str, **params) -> dict:
    query = urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        pytest.fail(f"Prometheus refused {path} {params}: {exc.read().decode()}")
    assert body["status"] == "success", body
    return body["data"]


def instant(url: str, expr: str) -> list[dict]:
    data = api(url, "query", query=expr)
    assert data["resultType"] in ("vector", "scalar"), data
    return data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]


@pytest.fixture(scope="module")
def traffic(server, tiny_run):
    """Clients sending requests of 1 to 1000 rows (and a few a client gets wrong) until the module ends."""
    momenta = np.ascontiguousarray(tiny_run.test.momenta[:1000])
    stop = threading.Event()
    sent = {"ok": 0, "errors": 0}

    def send(sizes):
        with InferenceClient(server["address"]) as client:
            while not stop.is_set():
                for rows in sizes:
                    client.predict(TINY_MODEL, momenta[:rows])
                    sent["ok"] += 1
                for model, x in (("gg_qq", momenta[:1]), (TINY_MODEL, momenta[:4, :3])):  # NOT_FOUND, INVALID_ARGUMENT
                    try:
                        client.infer(model, {"momenta": x})
                    except grpc.RpcError:
                        sent["errors"] += 1
                time.sleep(0.02)

    threads = [threading.Thread(target=send, args=(sizes,), daemon=True) for sizes in ((1, 8, 1000), (100, 3, 500))]
    for thread in threads:
        thread.start()
    yield sent
    stop.set()
    for thread in threads:
        thread.join(timeout=30)


def substitute(expr: str, server) -> str:
    # As Grafana writes a variable into a PromQL regex: regex-escaped, then escaped again for the string.
    instance = re.escape(server["metrics"]).replace("\\", "\\\\")
    values = {"$model": TINY_MODEL, "$version": "1", "$instance": instance, **BUILTINS}
    for name in sorted(values, key=len, reverse=True):  # $__rate_interval before $__range ...
        expr = expr.replace("${" + name[1:] + "}", values[name]).replace(name, values[name])
    assert "$" not in expr, expr
    return expr


@pytest.fixture(scope="module")
def scraped(prometheus, server, traffic):
    """Prometheus holds enough samples for 10 s rate windows, and the rules have been evaluated."""
    wait_for(lambda: instant(prometheus, 'up{job="calsurr"} == 1'), "the calsurr target to be up")
    wait_for(
        lambda: (
            len(
                api(
                    prometheus,
                    "query_range",
                    query="calsurr_requests_total",
                    start=time.time() - 30,
                    end=time.time(),
                    step="1s",
                )["result"]
            )
            > 0
            and traffic["ok"] > 50
        ),
        "traffic to be scraped",
    )
    time.sleep(12 * SCRAPE_SECONDS)  # a full $__rate_interval of samples under traffic
    return prometheus


def dashboard_targets():
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            yield pytest.param(panel, target, id=f"{panel['title']} [{target['refId']}]")


@pytest.mark.parametrize(("panel", "target"), list(dashboard_targets()))
def test_every_panel_query_returns_data(scraped, server, panel, target):
    result = instant(scraped, substitute(target["expr"], server))
    assert result, f"no data for {panel['title']}: {substitute(target['expr'], server)}"
    values = [float(sample["value"][1]) for sample in result]
    assert all(not np.isnan(v) for v in values), (panel["title"], result)
    if panel["title"] == "Requests by status code":
        assert {"OK", "INVALID_ARGUMENT"} <= {s["metric"]["code"] for s in result}
    if panel["title"] == "Execution provider":
        assert {s["metric"]["provider"] for s in result} == {"CPUExecutionProvider"}
    if panel["title"] == "Load failures":
        assert values == [1.0], "the broken version 2 failed to load once"
    if panel["type"] == "heatmap":
        assert sum(values) > 0 and {"le"} == set().union(*(s["metric"] for s in result))


def test_every_variable_query_finds_the_served_values(scraped, server):
    expected = {"instance": server["metrics"], "model": TINY_MODEL, "version": "1"}
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
        selector, label = match.groups()
        values = api(scraped, f"label/{label}/values", **{"match[]": substitute(selector, server)}).copy()
        assert expected[variable["name"]] in values, (variable["name"], values)


def test_every_rule_evaluates_and_every_recording_rule_has_data(scraped):
    rules = yaml.safe_load(RULES.read_text())

    def evaluated():
        groups = api(scraped, "rules")["groups"]
        loaded = [r for g in groups for r in g["rules"]]
        return loaded if all(r.get("lastEvaluation", "").startswith("20") for r in loaded) else None

    loaded = wait_for(evaluated, "every rule to be evaluated")
    assert len(loaded) == sum(len(g["rules"]) for g in rules["groups"])
    for rule in loaded:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        result = instant(scraped, rule["expr"])  # alerts may be quiet; the expression must evaluate
        if "record" in rule:
            recorded = wait_for(lambda name=rule["record"]: instant(scraped, name), f"{rule['record']} to have data")
            assert recorded and result, rule["record"]
    firing = [a["labels"]["alertname"] for a in api(scraped, "alerts")["alerts"] if a["state"] == "firing"]
    assert "CalsurrModelLoadFailures" in firing  # the broken version 2; it has no `for`
    assert "CalsurrErrorBudgetBurnFast" not in firing  # client errors burn no budget


def test_the_charts_keda_query_returns_the_mean_queue_time(scraped):
    scaled = find(render("gpu"), "ScaledObject")
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    result = instant(scraped, query)
    assert len(result) == 1, result  # KEDA needs exactly one number
    seconds = float(result[0]["value"][1])
    assert 0 <= seconds < 1.0
    elsewhere = instant(scraped, query.replace(f'namespace="{NAMESPACE}"', 'namespace="elsewhere"'))
    assert [float(s["value"][1]) for s in elsewhere] == [0.0]  # no series: 0, not nothing

"""The Grafana dashboard of calsurr servers, as code: `python deploy/grafana/dashboard.py` writes
calsurr-dashboard.json beside this file (`--check` only compares, for the tests).

Variables: datasource (any Prometheus), instance, model, version (multi-value, "All" by default). Rows:
traffic, latency, batching, models, and the served uncertainty, the panels that no other inference server
has: sigma_tot/|mean| as a heatmap over time (one per model), its median, and the out-of-domain rate.
Every query is evaluated against a real Prometheus scraping a real server in tests/deploy/test_prometheus.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DASHBOARD_FILE = Path(__file__).with_name("calsurr-dashboard.json")
UID = "calsurr-serving"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The label selector every model-level query carries; Grafana writes a multi-value variable as a regex.
SELECTOR = 'model=~"$model", version=~"$version", instance=~"$instance"'
# gRPC codes that burn the availability budget (as in deploy/prometheus/calsurr-rules.yaml).
SERVER_ERROR_CODES = "INTERNAL|UNAVAILABLE|UNKNOWN|DATA_LOSS|RESOURCE_EXHAUSTED|DEADLINE_EXCEEDED"
CLIENT_ERROR_CODES = "INVALID_ARGUMENT|NOT_FOUND|CANCELLED|OUT_OF_RANGE|FAILED_PRECONDITION"
WIDTH = 24  # Grafana's grid is 24 columns wide


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, **extra}


def rate(metric: str, selector: str = SELECTOR, window: str = "$__rate_interval") -> str:
    return f"rate({metric}{{{selector}}}[{window}])"


def mean_of(histogram: str, by: str = "model, version") -> str:
    """Mean of a histogram's observations per `by` over the rate window (sum over count)."""
    return f"sum by ({by}) ({rate(histogram + '_sum')}) / sum by ({by}) ({rate(histogram + '_count')})"


def quantile(q: float, histogram: str, by: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(histogram + '_bucket')}))"


def panel(kind: str, title: str, description: str, targets: list[dict], unit: str = "short", **extra) -> dict:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        **extra,
    }


def timeseries(title: str, description: str, targets: list[dict], unit: str = "short", **extra) -> dict:
    options = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]}}
    return panel("timeseries", title, description, targets, unit, options=options, **extra)


def traffic() -> list[dict]:
    server_errors = f'code=~"{SERVER_ERROR_CODES}", {SELECTOR}'
    client_errors = f'code=~"{CLIENT_ERROR_CODES}", {SELECTOR}'
    total = f"sum({rate('calsurr_requests_total')})"
    return [
        timeseries(
            "Requests by status code",
            "Inference requests per second by gRPC status code (calsurr_requests_total).",
            [target(f"sum by (code) ({rate('calsurr_requests_total')})", "{{code}}")],
            "reqps",
        ),
        timeseries(
            "Error ratio",
            "Share of requests ending in a server-side error (the availability budget: INTERNAL, UNAVAILABLE, "
            "RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ...) and in a client error (INVALID_ARGUMENT, NOT_FOUND, "
            "CANCELLED). Alerts: CalsurrErrorBudgetBurnFast/Slow at 14.4x and 6x a 99.9 % objective.",
            [
                target(f"(sum({rate('calsurr_requests_total', server_errors)}) or vector(0)) / {total}", "server"),
                target(f"(sum({rate('calsurr_requests_total', client_errors)}) or vector(0)) / {total}", "client", "B"),
            ],
            "percentunit",
        ),
        timeseries(
            "Rows per second",
            "Events predicted per second (rows through onnxruntime, calsurr_batch_size_rows_sum).",
            [target(f"sum by (model, version) ({rate('calsurr_batch_size_rows_sum')})", "{{model}} v{{version}}")],
            "rowsps",
        ),
        timeseries(
            "In flight",
            "Inference requests being handled per pod (calsurr_inflight_requests).",
            [target('sum by (instance) (calsurr_inflight_requests{instance=~"$instance"})', "{{instance}}")],
        ),
    ]


def latency() -> list[dict]:
    by = "model, version"
    return [
        timeseries(
            "Latency p50 / p90 / p99",
            "Request latency in the server, queue and compute included (calsurr_request_duration_seconds). "
            "Alert: CalsurrLatencyP99High above 250 ms for 10 minutes.",
            [
                target(quantile(q, "calsurr_request_duration_seconds", by), f"p{round(q * 100)} {{{{model}}}}", ref)
                for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
            ],
            "s",
        ),
        timeseries(
            "Queue and compute time",
            "Mean time a request waits in its model's batcher queue (the autoscaling signal) and mean duration of "
            "one onnxruntime run; p99 of the queue time.",
            [
                target(mean_of("calsurr_queue_duration_seconds"), "queue mean {{model}}"),
                target(mean_of("calsurr_compute_duration_seconds"), "compute mean {{model}}", "B"),
                target(quantile(0.99, "calsurr_queue_duration_seconds", by), "queue p99 {{model}}", "C"),
            ],
            "s",
        ),
    ]


def batching() -> list[dict]:
    return [
        timeseries(
            "Batch size (rows per run)",
            "Rows merged into one onnxruntime run: mean and p90 (calsurr_batch_size_rows).",
            [
                target(mean_of("calsurr_batch_size_rows"), "mean {{model}}"),
                target(quantile(0.9, "calsurr_batch_size_rows", "model"), "p90 {{model}}", "B"),
            ],
        ),
        timeseries(
            "Requests per batch",
            "Requests merged into one run (calsurr_batch_requests): 1 on a quiet server, more under load.",
            [target(mean_of("calsurr_batch_requests"), "mean {{model}}")],
        ),
        timeseries(
            "Queue depth",
            "Requests waiting per pod and model (calsurr_queue_depth_requests) against the queue's capacity "
            "(calsurr_queue_capacity_requests, max_queue_size): beyond it requests get RESOURCE_EXHAUSTED. "
            "Alert: CalsurrQueueNearCapacity above 80 %.",
            [
                target(
                    f"max by (instance, model, version) (calsurr_queue_depth_requests{{{SELECTOR}}})",
                    "{{instance}} {{model}} v{{version}}",
                ),
                target(
                    f"max by (model, version) (calsurr_queue_capacity_requests{{{SELECTOR}}})",
                    "capacity {{model}} v{{version}}",
                    ref="B",
                ),
            ],
        ),
    ]


def models() -> list[dict]:
    instance_model = 'model=~"$model", instance=~"$instance"'
    return [
        timeseries(
            "Models loaded",
            "Ready versions of each model per pod (calsurr_models_loaded). Alert: CalsurrNoReadyVersion at 0.",
            [target(f"calsurr_models_loaded{{{instance_model}}}", "{{instance}} {{model}}")],
        ),
        panel(
            "stat",
            "Load failures",
            "Failed loads of versions since each pod started, summed over the pods seen in the range "
            "(calsurr_model_load_failures_total; a failure at start is never seen at 0, so no increase() here). "
            "The previous version keeps serving. Alert: CalsurrModelLoadFailures.",
            [
                target(
                    f"sum by (model) (max_over_time(calsurr_model_load_failures_total{{{instance_model}}}[$__range]))",
                    "{{model}}",
                    instant=True,
                )
            ],
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
        ),
        panel(
            "table",
            "Execution provider",
            "The onnxruntime execution provider each model version runs on, per pod (calsurr_execution_provider_info)"
            ": CUDAExecutionProvider on a GPU node, CPUExecutionProvider otherwise.",
            [target(f"calsurr_execution_provider_info{{{SELECTOR}}}", "", format="table", instant=True)],
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True},
                        "indexByName": {"instance": 0, "model": 1, "version": 2, "provider": 3},
                    },
                }
            ],
        ),
        panel(
            "table",
            "calsurr version",
            "The calsurr version each pod runs (calsurr_build_info); two rows during a rolling update.",
            [target('calsurr_build_info{instance=~"$instance"}', "", format="table", instant=True)],
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}
            ],
        ),
    ]


def uncertainty() -> list[dict]:
    heatmap = panel(
        "heatmap",
        "Served relative uncertainty sigma_tot/|mean|: $model",
        "How many predictions fell in each sigma_tot/|mean| bucket per interval "
        "(calsurr_relative_uncertainty_ratio). A calibrated surrogate in its domain sits around 0.1-10 %; mass "
        "moving right means the inputs are leaving the training domain. One heatmap per model.",
        [
            target(
                f"sum by (le) (increase(calsurr_relative_uncertainty_ratio_bucket{{{SELECTOR}}}[$__rate_interval]))",
                "{{le}}",
                format="heatmap",
            )
        ],
        "percentunit",
        repeat="model",
        repeatDirection="h",
        maxPerRow=2,
        options={
            "calculate": False,
            "yAxis": {"unit": "percentunit"},
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Viridis", "scale": "exponential", "exponent": 0.5},
            "rowsFrame": {"layout": "le"},
        },
    )
    return [
        heatmap,
        timeseries(
            "Median relative uncertainty",
            "Median and p95 of sigma_tot/|mean| served per model.",
            [
                target(quantile(0.5, "calsurr_relative_uncertainty_ratio", "model"), "median {{model}}"),
                target(quantile(0.95, "calsurr_relative_uncertainty_ratio", "model"), "p95 {{model}}", "B"),
            ],
            "percentunit",
        ),
        timeseries(
            "Out-of-domain rate",
            "Share of predictions whose sigma_tot/|mean| exceeds the card's out_of_domain_relative_sigma "
            "(calsurr_out_of_domain_predictions_total over calsurr_relative_uncertainty_ratio_count). "
            "Alert: CalsurrOutOfDomainSurge above 1 % for 10 minutes.",
            [
                target(
                    f"sum by (model, version) ({rate('calsurr_out_of_domain_predictions_total')})"
                    f" / sum by (model, version) ({rate('calsurr_relative_uncertainty_ratio_count')})",
                    "{{model}} v{{version}}",
                )
            ],
            "percentunit",
        ),
    ]


ROWS = (
    ("Traffic", traffic, 6),
    ("Latency", latency, 12),
    ("Batching", batching, 8),
    ("Models", models, 6),
    ("Served uncertainty", uncertainty, 12),
)
PANEL_HEIGHT = 8


def variables() -> list[dict]:
    def query(name: str, label: str, definition: str) -> dict:
        return {
            "type": "query",
            "name": name,
            "label": label,
            "datasource": DATASOURCE,
            "definition": definition,
            "query": {"query": definition, "refId": f"{name}-variable"},
            "refresh": 2,  # on time range change
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
        }

    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Prometheus",
            "query": "prometheus",
            "current": {},
            "refresh": 1,
        },
        query("instance", "Pod", "label_values(calsurr_build_info, instance)"),
        query("model", "Model", 'label_values(calsurr_models_loaded{instance=~"$instance"}, model)'),
        query(
            "version",
            "Version",
            'label_values(calsurr_execution_provider_info{model=~"$model", instance=~"$instance"}, version)',
        ),
    ]


def dashboard() -> dict:
    panels: list[dict] = []
    y = 0
    next_id = iter(range(1, 1000))
    for title, make, width in ROWS:
        panels.append(
            {"type": "row", "title": title, "id": next(next_id), "collapsed": False, "gridPos": grid(0, y, WIDTH, 1)}
        )
        y += 1
        x = 0
        for item in make():
            w = WIDTH if item.get("repeat") else width  # repeated per model: maxPerRow side by side
            if x + w > WIDTH:
                x, y = 0, y + PANEL_HEIGHT
            panels.append({"id": next(next_id), "gridPos": grid(x, y, w, PANEL_HEIGHT), **item})
            x += w
        y += PANEL_HEIGHT
    return {
        "uid": UID,
        "title": "calsurr: calibrated surrogates serving",
        "description": "Traffic, latency, batching, models and the served uncertainty of calsurr servers.",
        "tags": ["calsurr", "inference", "open-inference-protocol"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "utc",
        "templating": {"list": variables()},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def grid(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"x": x, "y": y, "w": w, "h": h}


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write (or --check) deploy/grafana/calsurr-dashboard.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from the code")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DASHBOARD_FILE.is_file() or DASHBOARD_FILE.read_text(encoding="utf-8") != text:
            print(f"{DASHBOARD_FILE} is stale: run python {Path(__file__).as_posix()}", file=sys.stderr)
            return 1
        return 0
    DASHBOARD_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {DASHBOARD_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

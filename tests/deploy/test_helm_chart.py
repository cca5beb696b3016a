"""deploy/helm/calsurr: lint and render through a real Helm for every values case, validate every object, and
check that the Deployment is what `calsurr serve` expects (ports, probes, config keys, drain on SIGTERM)."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from calsurr.service.config import ServerSettings
from calsurr.service.server import CARD_SERVICE, INFERENCE_SERVICE
from tests.deploy.conftest import (
    CHART,
    DEPLOY,
    NAMESPACE,
    RELEASE,
    ROOT,
    VALUES_CASES,
    find,
    helm,
    render,
    validate_object,
)

CASES = sorted(VALUES_CASES)
ENV_PREFIX = "CALSURR_"
# The settings the chart owns (values.yaml: config): set from modelRepository, service, tls and auth.
CHART_OWNED = {
    "repo",
    "host",
    "port",
    "metrics",
    "metrics_port",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "metrics_tls",
    "auth_tokens",
}
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def server_container(objects: list[dict]) -> dict:
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "calsurr")


def server_config(objects: list[dict]) -> dict:
    return yaml.safe_load(find(objects, "ConfigMap", RELEASE)["data"]["calsurr.yaml"])


@pytest.mark.parametrize("case", CASES)
def test_the_chart_lints_without_warnings(case):
    report = helm().lint(CHART, VALUES_CASES[case], strict=True, namespace=NAMESPACE, kube_version="v1.37.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


def test_the_values_schema_refuses_mistakes():
    h = helm()
    mistakes = {
        "a misspelt top-level key": {"replicas": 3},
        "a setting the chart owns": {"config": {"port": 9001}},
        "an unknown server setting": {"config": {"max_batch": 10}},
        "a setting out of range": {"config": {"max_queue_size": 0}},
        "an unknown repository source": {"modelRepository": {"source": "nfs"}},
        "a token line that is not a hash": {"auth": {"tokens": ["infer my-secret-token"]}},
    }
    with h.Chart.load(CHART) as chart:
        for what, values in mistakes.items():
            with pytest.raises(h.HelmValuesError):
                chart.validate_schema(chart.merge_values(values))
                pytest.fail(f"the schema accepted {what}: {values}")


def test_the_schema_allows_every_server_setting_but_those_the_chart_owns():
    """values.schema.json's `config` is ServerSettings less the chart's own settings: nothing more, nothing less."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    allowed = set(schema["properties"]["config"]["properties"])
    assert allowed == set(ServerSettings.model_fields) - CHART_OWNED
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults["config"]) <= allowed


@pytest.mark.parametrize("case", CASES)
def test_every_rendered_object_validates(case):
    objects = render(case)
    checked = {f"{o['kind']}/{o['metadata']['name']}": validate_object(o) for o in objects}
    assert {"Deployment", "Service", "ConfigMap"} <= {o["kind"] for o in objects}, checked
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in RECOMMENDED_LABELS if label not in labels]
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks {missing}"
        assert obj["metadata"].get("namespace", NAMESPACE) == NAMESPACE


def test_the_custom_kinds_are_rendered_and_checked_against_their_crd_schemas():
    kinds = {o["kind"]: validate_object(o) for case in CASES for o in render(case)}
    assert kinds["ScaledObject"].startswith("keda.sh/")
    assert kinds["ServiceMonitor"].startswith("monitoring.coreos.com/")
    assert kinds["PrometheusRule"].startswith("monitoring.coreos.com/")
    assert kinds["HorizontalPodAutoscaler"] == kinds["PodDisruptionBudget"] == "kubernetes 1.37"


@pytest.mark.parametrize("case", CASES)
def test_the_deployment_is_what_the_server_expects(case, tmp_path, monkeypatch):
    objects = render(case)
    deployment = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = server_container(objects)
    config = server_config(objects)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}

    # Config file and variables name real settings; the variables the image sets are overridden.
    assert set(config) <= set(ServerSettings.model_fields), set(config) - set(ServerSettings.model_fields)
    for name in env:
        if name.startswith(ENV_PREFIX):
            assert name.removeprefix(ENV_PREFIX).lower() in ServerSettings.model_fields, name
    image_env = re.findall(r"(CALSURR_\w+)=", (ROOT / "Dockerfile").read_text())
    assert set(image_env) <= set(env), "the image's ENV would beat the config file"

    # The settings the server ends up with (variables over the file, as `calsurr serve` reads them) match the
    # ports, mounts and probes of the pod.
    config_path = container["args"][container["args"].index("--config") + 1]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert Path(config_path).parent.as_posix() == mounts["config"]["mountPath"]
    security_files = {k: config.pop(k) for k in ("tls_cert", "tls_key", "tls_client_ca", "auth_tokens") if k in config}
    config_file = tmp_path / "calsurr.yaml"
    config_file.write_text(yaml.safe_dump(config))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    repo = tmp_path / "models"
    repo.mkdir()
    monkeypatch.setenv("CALSURR_REPO", str(repo))  # the mount path, here a folder that exists
    settings = ServerSettings.load(config_file)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.host == "0.0.0.0"
    assert (settings.port, settings.metrics_port) == (ports["grpc"], ports["metrics"])
    assert settings.metrics
    assert mounts["models"]["mountPath"] == env["CALSURR_REPO"] and mounts["models"]["readOnly"]
    for path in security_files.values():
        assert any(Path(path).parent.as_posix() == m["mountPath"] for m in mounts.values()), path

    service = find(objects, "Service", deployment["metadata"]["name"])
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert service_ports["grpc"]["targetPort"] == "grpc" and service_ports["metrics"]["targetPort"] == "metrics"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    # Probes: grpc.health.v1 on the gRPC port with the service names the server registers (or the TCP port
    # under TLS, which the kubelet's gRPC probe cannot speak).
    probes = {kind: container[f"{kind}Probe"] for kind in ("startup", "liveness", "readiness")}
    if security_files.get("tls_cert"):
        assert all(p["tcpSocket"]["port"] == "grpc" for p in probes.values())
    else:
        assert {kind: p["grpc"]["port"] for kind, p in probes.items()} == dict.fromkeys(probes, ports["grpc"])
        assert probes["startup"]["grpc"]["service"] == probes["liveness"]["grpc"]["service"] == ""
        readiness = probes["readiness"]["grpc"]["service"]
        assert readiness in ("", INFERENCE_SERVICE, CARD_SERVICE) or VALUES_CASES[case]["probes"]["readinessService"]

    # Non-root as the image's user, read-only root filesystem, no API token.
    uid = int(re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == uid
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("case", CASES)
def test_termination_grace_outlasts_the_prestop_sleep_and_the_drain(case):
    """SuperSONIC's preStop (`sh -c touch /tmp/shutdown; sleep 60` as separate words) sleeps not at all, and its
    grace equals the intended sleep. Here: endpoints drop the pod during the preStop sleep, then SIGTERM, then the
    server finishes what it accepted within grace_seconds; the kubelet's SIGKILL comes only after both."""
    objects = render(case)
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    pre_stop = server_container(objects)["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        sleep = pre_stop["sleep"]["seconds"]
    else:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep" and len(command) == 2, command  # one argv, no shell to misquote
        sleep = float(command[1])
    grace = server_config(objects).get("grace_seconds", ServerSettings.model_fields["grace_seconds"].default)
    assert sleep > 0
    assert pod["terminationGracePeriodSeconds"] > sleep + grace
    assert pod["terminationGracePeriodSeconds"] >= sleep + math.ceil(grace) + 1


def test_replicas_are_left_to_the_autoscaler_when_one_is_on():
    assert find(render("defaults"), "Deployment")["spec"]["replicas"] == 2
    for case in ("small", "gpu"):
        assert "replicas" not in find(render(case), "Deployment")["spec"]
    assert find(render("small"), "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == RELEASE


def test_keda_and_the_hpa_together_are_refused():
    h = helm()
    with h.Chart.load(CHART) as chart, pytest.raises(h.HelmError, match="enable keda or hpa, not both"):
        chart.render({"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}}, name=RELEASE)


def test_the_scaled_object_asks_prometheus_for_this_releases_queue_time():
    scaled = find(render("gpu"), "ScaledObject")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "Value"
    query = trigger["metadata"]["query"]
    assert f'namespace="{NAMESPACE}", service="{RELEASE}"' in query
    assert "calsurr_queue_duration_seconds_sum" in query and "calsurr_queue_duration_seconds_count" in query
    threshold = VALUES_CASES["gpu"]["autoscaling"]["keda"]["queueSecondsThreshold"]
    assert float(trigger["metadata"]["threshold"]) == threshold
    assert scaled["spec"]["scaleTargetRef"]["name"] == find(render("gpu"), "Deployment")["metadata"]["name"]


def test_the_service_monitor_scrapes_the_metrics_port_of_one_service():
    objects = render("small")
    monitor = find(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    services = [o for o in objects if o["kind"] == "Service"]
    assert len(services) == 2  # the ClusterIP one and the headless one

    def selected(service):
        labels = service["metadata"]["labels"]
        excluded = [e["key"] for e in monitor["spec"]["selector"]["matchExpressions"]]
        match = monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        return match and not any(key in labels for key in excluded)

    assert [s["metadata"]["name"] for s in services if selected(s)] == [RELEASE]


def test_the_prometheus_rule_holds_the_rules_file_whatever_the_queue_size():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "calsurr-rules.yaml").read_text())
    assert find(render("small"), "PrometheusRule")["spec"]["groups"] == rules["groups"]
    larger = find(render("keda-model-readiness-tokens"), "PrometheusRule")["spec"]["groups"]  # max_queue_size 4096
    assert larger == rules["groups"]
    fill = [r for g in larger for r in g["rules"] if r.get("record") == "calsurr:queue_fill:ratio"]
    assert len(fill) == 1 and "calsurr_queue_capacity_requests" in fill[0]["expr"]


def test_the_chart_files_are_links_to_the_tested_rules_and_dashboard():
    for name, target in (
        ("calsurr-rules.yaml", DEPLOY / "prometheus" / "calsurr-rules.yaml"),
        ("calsurr-dashboard.json", DEPLOY / "grafana" / "calsurr-dashboard.json"),
    ):
        link = CHART / "files" / name
        assert link.is_symlink() and link.resolve() == target.resolve()
    configmap = find(render("small"), "ConfigMap", f"{RELEASE}-dashboard")
    dashboard = json.loads(configmap["data"]["calsurr-dashboard.json"])
    assert dashboard == json.loads((DEPLOY / "grafana" / "calsurr-dashboard.json").read_text())


def test_the_token_secret_holds_the_lines_and_is_mounted_where_the_config_points():
    objects = render("keda-model-readiness-tokens")
    secret = find(objects, "Secret")
    assert secret["stringData"]["tokens"].split() == ["infer", "sha256:" + "ab" * 32]
    assert server_config(objects)["auth_tokens"] == "/etc/calsurr/auth/tokens"
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "tokens")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["defaultMode"] & 0o040, "uid 10001 reads it through fsGroup"


def test_the_init_container_fetches_a_repository_from_a_uri(tmp_path):
    """The default init container of modelRepository.source=uri, run here on a tar.gz of a repository."""
    source = tmp_path / "repository"
    (source / "gg_gg" / "1").mkdir(parents=True)
    (source / "gg_gg" / "1" / "model.onnx").write_bytes(b"\x08\x07onnx bytes")
    (source / "gg_gg" / "1" / "card.json").write_text('{"name": "gg_gg"}')
    archive = tmp_path / "repository.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source, arcname=".")
    archive.write_bytes(buffer.getvalue())

    objects = render("gpu")
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    script = find(objects, "ConfigMap", RELEASE)["data"]["fetch_repository.py"]
    assert init["command"][1].endswith("/fetch_repository.py")
    env = {e["name"]: e["value"] for e in init["env"]}
    target = tmp_path / "models"
    target.mkdir()
    env |= {"MODEL_URI": archive.as_uri(), "MODEL_DIR": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "models: ['gg_gg']" in done.stdout
    assert (target / "gg_gg" / "1" / "model.onnx").read_bytes() == b"\x08\x07onnx bytes"


@pytest.mark.slow
def test_the_helm_test_pod_asks_a_real_server_for_its_health(tiny_repository):
    """`helm test`'s command, run here against a server on loopback in place of the Service's address."""
    from calsurr.service.server import BackgroundServer

    pod = find(render("defaults"), "Pod", f"{RELEASE}-test-health")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["command"]
    grpc_port = server_container(render("defaults"))["ports"][0]["containerPort"]
    assert command[3] == f"{RELEASE}.{NAMESPACE}.svc:{grpc_port}"
    with BackgroundServer(ServerSettings(repo=tiny_repository, port=0, metrics_port=0)) as server:
        local = [sys.executable if c == "python" else c for c in command]
        local[3] = server.address
        assert subprocess.run(local, timeout=30).returncode == 0
        local[4] = "no_such_model"
        assert subprocess.run(local, timeout=30).returncode == 1
    assert all(o["kind"] != "Pod" for o in render("gpu")), "plaintext health check: no test pod under TLS"

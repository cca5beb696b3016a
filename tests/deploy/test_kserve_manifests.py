"""deploy/kserve: the ServingRuntime, ClusterServingRuntime and InferenceService validate against KServe's CRD
schemas, their containers against Kubernetes' Container, and they run `calsurr serve` as KServe expects."""

from __future__ import annotations

import pytest
import typer.main
import yaml

from calsurr.service.config import ServerSettings
from tests.deploy.conftest import DEPLOY, validate_definition, validate_object

KSERVE = DEPLOY / "kserve"
# KServe's protocol names (pkg/constants/constants.go, v0.20.0): the CRD types them as plain strings.
KSERVE_PROTOCOLS = {"v1", "v2", "grpc-v1", "grpc-v2"}
MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts storageUri


def manifest(name: str) -> dict:
    return yaml.safe_load((KSERVE / name).read_text())


RUNTIME = manifest("servingruntime.yaml")
SERVICE = manifest("inferenceservice.yaml")


@pytest.mark.parametrize("name", ["servingruntime.yaml", "clusterservingruntime.yaml", "inferenceservice.yaml"])
def test_each_manifest_validates_against_its_crd_schema(name):
    obj = manifest(name)
    assert validate_object(obj).startswith("serving.kserve.io/")
    if "containers" in obj["spec"]:
        for container in obj["spec"]["containers"]:
            validate_definition(container, "io.k8s.api.core.v1.Container")
    else:
        model = dict(obj["spec"]["predictor"]["model"])
        for field in ("modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri", "storage"):
            model.pop(field, None)
        validate_definition({"name": "kserve-container", **model}, "io.k8s.api.core.v1.Container")


def test_the_namespaced_and_cluster_runtimes_are_the_same():
    cluster = manifest("clusterservingruntime.yaml")
    assert (RUNTIME["kind"], cluster["kind"]) == ("ServingRuntime", "ClusterServingRuntime")
    assert cluster["spec"] == RUNTIME["spec"] and cluster["metadata"]["name"] == RUNTIME["metadata"]["name"]


def test_the_runtime_speaks_the_open_inference_protocol_over_grpc_on_a_port_kserve_recognises():
    spec = RUNTIME["spec"]
    assert {"v2", "grpc-v2"} <= set(spec["protocolVersions"]) <= KSERVE_PROTOCOLS
    container = spec["containers"][0]
    assert container["name"] == "kserve-container"
    (port,) = container["ports"]  # Knative exposes one port
    assert "h2c" in port["name"] or "grpc" in port["name"]  # KServe's isGrpcPort: kubernetes.io/h2c
    args = dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])
    assert int(args["port"]) == port["containerPort"]
    assert args["repo"] == MODEL_DIR and args["host"] == "0.0.0.0"
    assert spec["annotations"]["prometheus.kserve.io/port"] == args["metrics-port"]


def test_the_runtime_args_are_options_of_calsurr_serve_and_its_env_a_setting():
    """Parsed by the real `calsurr serve` command (click), so a renamed option breaks this test, not a cluster."""
    from calsurr.cli import app

    serve = typer.main.get_command(app).commands["serve"]
    container = RUNTIME["spec"]["containers"][0]
    context = serve.make_context("serve", list(container["args"]), resilient_parsing=False)
    assert context.params["repo"].as_posix() == MODEL_DIR
    assert context.params["grace_seconds"] == 10
    with pytest.raises(Exception, match="No such option"):  # typer's own click raises its UsageError
        serve.make_context("serve", ["--no-such-option=1"])
    for variable in container.get("env", []):
        field = variable["name"].removeprefix("CALSURR_").lower()
        assert field in ServerSettings.model_fields, variable["name"]


def test_the_inference_service_uses_the_runtime_and_drains_before_it_is_killed():
    predictor = SERVICE["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == RUNTIME["metadata"]["name"]
    assert model["protocolVersion"] in RUNTIME["spec"]["protocolVersions"]
    formats = {(f["name"], f.get("version")) for f in RUNTIME["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    assert model["storageUri"].startswith(("s3://", "gs://", "pvc://", "https://", "hf://", "oci://"))
    container = RUNTIME["spec"]["containers"][0]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = float(next(a for a in container["args"] if a.startswith("--grace-seconds=")).split("=")[1])
    assert predictor["terminationGracePeriodSeconds"] > sleep + grace

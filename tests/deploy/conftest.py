"""Deployment checks without a cluster: the chart rendered by a real Helm (helm-python-sdk embeds Helm v4's Go
library), objects validated against the Kubernetes schemas (kubernetes-validate) and the vendored CRD schemas."""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import yaml

from tests.conftest import missing_tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "calsurr"
EXAMPLES = DEPLOY / "helm" / "examples"
SCHEMAS = DEPLOY / "schemas"
KUBERNETES_VERSION = "1.37"  # the newest schemas kubernetes-validate 1.37.0 ships; the chart needs >= 1.30
RELEASE, NAMESPACE = "calsurr", "physics"
# Custom kinds and their vendored schemas (deploy/schemas/README.md says where each comes from).
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh/scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com/prometheusrule_v1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "serving.kserve.io/servingruntime_v1alpha1.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "serving.kserve.io/clusterservingruntime_v1alpha1.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io/inferenceservice_v1beta1.json",
}
# Values files the chart must render: its defaults and the examples, plus switches no example turns on.
VALUES_CASES = {
    "defaults": {},
    "small": yaml.safe_load((EXAMPLES / "small.yaml").read_text()),
    "gpu": yaml.safe_load((EXAMPLES / "gpu.yaml").read_text()),
    "keda-model-readiness-tokens": {
        "autoscaling": {"keda": {"enabled": True}},
        "probes": {"readinessService": "gg_gg"},
        "auth": {"enabled": True, "tokens": ["infer sha256:" + "ab" * 32]},
        "lifecycle": {"preStopAction": "exec", "preStopSleepSeconds": 7},
        "config": {"grace_seconds": 12.5, "max_queue_size": 4096},
        "prometheusRule": {"enabled": True},
        "podDisruptionBudget": {"maxUnavailable": None, "minAvailable": 1},
    },
}


def helm():
    import helm_python

    helm_python.disable_logging()
    return helm_python


@cache
def _render(case: str) -> tuple[dict, ...]:
    h = helm()
    with h.Chart.load(CHART) as chart:
        values = chart.merge_values(VALUES_CASES[case])
        chart.validate_schema(values)
        manifests = chart.render(VALUES_CASES[case], name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for name, text in sorted(manifests.items()):
        if name.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return tuple(objects)


def render(case: str) -> list[dict]:
    """The chart's objects for a values case (fresh copies: tests may change them)."""
    return json.loads(json.dumps(_render(case)))


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in matches]}"
    return matches[0]


@cache
def custom_schema(path: str) -> dict:
    return json.loads((SCHEMAS / path).read_text(encoding="utf-8"))


@cache
def kubernetes_definitions():
    """kubernetes-validate's strict definitions as a `referencing` registry, to validate a part of an object."""
    import importlib.resources

    from referencing import Registry, Resource

    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / "v1.37.0-local-strict"
    definitions = json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))
    return Registry().with_resource(definitions["$id"], Resource.from_contents(definitions)), definitions["$id"]


def validate_definition(instance: object, definition: str) -> None:
    """Validate against one Kubernetes definition, e.g. io.k8s.api.core.v1.Container (strict: no unknown field)."""
    import jsonschema

    registry, base = kubernetes_definitions()
    schema = {"$ref": f"{base}#/$defs/{definition}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)


def validate_object(obj: dict) -> str:
    """Validate one object: built-in kinds strictly with kubernetes-validate, custom kinds with their vendored
    schema (and their metadata with Kubernetes' ObjectMeta). Returns which schema it was checked against."""
    import jsonschema
    import kubernetes_validate

    key = (obj["apiVersion"], obj["kind"])
    if key in CUSTOM_KINDS:
        jsonschema.Draft202012Validator(custom_schema(CUSTOM_KINDS[key])).validate(obj)
        validate_definition(obj["metadata"], "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        return CUSTOM_KINDS[key]
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    return f"kubernetes {KUBERNETES_VERSION}"


def require_tool(name: str, package: str) -> str:
    """The tool's path; a missing one fails the test, naming the Debian package (scripts/install_ops_tools.sh)."""
    return shutil.which(name) or missing_tool(
        name, f"install Debian's '{package}' package (scripts/install_ops_tools.sh)"
    )

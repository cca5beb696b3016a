"""deploy/schemas: the vendored CRD schemas are intact, valid JSON Schema, strict, and regenerate from CRDs."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import jsonschema
import pytest

from tests.deploy.conftest import CUSTOM_KINDS, SCHEMAS


def test_every_schema_is_listed_with_its_checksum_and_source():
    sums = dict(reversed(line.split()) for line in (SCHEMAS / "SHA256SUMS").read_text().splitlines() if line.strip())
    files = sorted(p.relative_to(SCHEMAS).as_posix() for p in SCHEMAS.glob("*/*.json"))
    assert sorted(sums) == files == sorted(CUSTOM_KINDS.values())
    readme = (SCHEMAS / "README.md").read_text()
    for name, digest in sums.items():
        assert hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest() == digest, f"{name} changed"
        assert f"`{name}`" in readme, f"README.md does not say where {name} comes from"


@pytest.mark.parametrize("path", sorted(CUSTOM_KINDS.values()))
def test_each_schema_is_valid_json_schema_for_its_kind(path):
    schema = json.loads((SCHEMAS / path).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    (api_version, kind) = next(k for k, v in CUSTOM_KINDS.items() if v == path)
    assert schema["properties"]["apiVersion"]["enum"] == [api_version]
    assert schema["properties"]["kind"]["enum"] == [kind]


def test_the_schemas_are_strict_a_misspelt_field_is_an_error():
    schema = json.loads((SCHEMAS / CUSTOM_KINDS[("keda.sh/v1alpha1", "ScaledObject")]).read_text())
    good = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [{"type": "cpu", "metadata": {"value": "50"}}]},
    }
    jsonschema.validate(good, schema)
    for bad in (
        {**good, "spec": {**good["spec"], "maxReplicas": 3}},  # maxReplicaCount
        {**good, "spec": {"triggers": good["spec"]["triggers"]}},  # scaleTargetRef is required
        {**good, "kind": "ScaledJob"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_the_converter_maps_the_kubernetes_extensions():
    spec = importlib.util.spec_from_file_location("vendor_crds", SCHEMAS / "vendor_crds.py")
    vendor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vendor)
    crd = {
        "kind": "CustomResourceDefinition",
        "spec": {
            "group": "example.org",
            "names": {"kind": "Thing"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "dropped",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "port": {"x-kubernetes-int-or-string": True},
                                        "note": {"type": "string", "nullable": True},
                                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    },
                                }
                            },
                        }
                    },
                },
                {"name": "v0", "served": False, "schema": {"openAPIV3Schema": {}}},
            ],
        },
    }
    (path, schema), *rest = vendor.crd_schemas(crd).items()
    assert path == "example.org/thing_v1.json" and rest == []
    thing = {"apiVersion": "example.org/v1", "kind": "Thing", "spec": {"port": "grpc", "note": None, "free": {"a": 1}}}
    jsonschema.validate(thing, schema)
    jsonschema.validate({**thing, "spec": {"port": 8001}}, schema)
    assert "description" not in schema
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**thing, "spec": {"prot": 1}}, schema)

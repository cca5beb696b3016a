"""Convert CustomResourceDefinitions to the JSON schemas in this folder (one per kind and version).

    python deploy/schemas/vendor_crds.py CRD.yaml [CRD.yaml ...] --out deploy/schemas

A CRD's `openAPIV3Schema` is OpenAPI 3.0 with Kubernetes extensions; the output is plain JSON Schema (draft
2020-12) that `jsonschema` checks, written as `<group>/<kind>_<version>.json` (the layout of the CRDs-catalog
and of kubeconform), converted as openapi2jsonschema does in its strict mode:

- `x-kubernetes-int-or-string` becomes `anyOf: [integer, string]`, `nullable` adds `null` to the type;
- an object that lists `properties` and neither `additionalProperties` nor `x-kubernetes-preserve-unknown-fields`
  gets `additionalProperties: false`, so a misspelt field is an error, as the API server's strict decoding makes it;
- `apiVersion` and `kind` must be the CRD's own; RE2 inline flags move to the front of a pattern (Python's `re`);
- descriptions and the other `x-kubernetes-*` keys are dropped: they do not constrain (CEL rules in
  `x-kubernetes-validations` would, but no Python evaluator of Kubernetes' CEL is at hand; the README says so).

The sources (repository, tag, commit, path, sha256 of the YAML) are listed in README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

DROPPED_KEYS = ("description", "example", "externalDocs")


def python_pattern(pattern: str) -> str:
    """Go's RE2 takes flags anywhere ('^(?i)(abort|warn)?$'); Python's `re` (jsonschema's) only in front."""
    for flag in ("(?i)", "(?s)", "(?m)"):
        if flag in pattern and not pattern.startswith(flag):
            pattern = flag + pattern.replace(flag, "", 1)
    return pattern


def convert(node: Any) -> Any:
    """One OpenAPI v3 schema node (recursively) as strict JSON Schema."""
    if isinstance(node, list):
        return [convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED_KEYS or key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties", "definitions", "$defs"):
            out[key] = {name: convert(child) for name, child in value.items()}
        elif key == "pattern":
            out[key] = python_pattern(value)
        else:
            out[key] = convert(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
    open_object = node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node
    if "properties" in node and not open_object:
        out["additionalProperties"] = False
    return out


def crd_schemas(crd: dict) -> dict[str, dict]:
    """`{relative path: schema}` for every served version of one CRD."""
    if crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"expects a CustomResourceDefinition, got kind {crd.get('kind')!r}")
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schemas = {}
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = convert(version["schema"]["openAPIV3Schema"])
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        properties["kind"] = {"type": "string", "enum": [kind]}
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"{kind} {group}/{version['name']}",
            **schema,
        }
        schemas[f"{group}/{kind.lower()}_{version['name']}.json"] = schema
    return schemas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crds", nargs="+", type=Path, help="CRD YAML files (several documents allowed)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder for <group>/<kind>_<v>.json")
    args = parser.parse_args(argv)
    for path in args.crds:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not document:
                continue
            for relative, schema in crd_schemas(document).items():
                target = args.out / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
                print(f"{path} -> {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
